"""Our RQ queues: priority bands, JSON only, and a dequeue that records
unrecorded successes before it waits and claims at each pop
(`claim_at_pop`)."""

import threading
from functools import cache

from rq.exceptions import StopRequested
from rq.serializers import JSONSerializer
from rq.utils import as_text, get_version

from ..conf import BAND_SUFFIXES, rq_queue_names
from .claim_at_pop import claims
from .timeouts import JobsDeathPenalty
from .unrecorded import record_unrecorded, unrecorded

# Set once the worker is asked to stop (`JobsWorkerMixin.request_stop`).
stop_requested = threading.Event()


def with_bands(queues):
    """Expand each queue to its priority bands, highest first, read as JSON."""
    bands = tuple(suffix for suffix in BAND_SUFFIXES if suffix)
    expanded = {}
    for queue in queues:
        names = [queue.name] if queue.name.endswith(bands) else None
        for name in names or rq_queue_names(queue.name):
            expanded.setdefault(name, json_queue(queue, name))
    return list(expanded.values())


def json_queue(queue, name):
    """Return the RQ queue `name` like `queue`, reading jobs as JSON.

    Our RQ jobs are JSON, never pickle: whoever can write to Redis must not
    be able to run code on the workers by planting a pickled job.
    """
    return type(queue)(
        name,
        connection=queue.connection,
        job_class=queue.job_class,
        serializer=JSONSerializer,
        death_penalty_class=JobsDeathPenalty,
    )


@cache
def recording(queue_class):
    """Return `queue_class` made to record unrecorded successes before the
    worker waits for a job (a job waiting now records them with its claim),
    and to take a job from the first band holding one in one round trip."""

    class RecordingQueue(queue_class):
        @classmethod
        def dequeue_any(cls, queues, timeout, *args, **kwargs):
            try:
                return cls.dequeue_recording(queues, timeout, *args, **kwargs)
            except BaseException:  # RQ will not hand over what was popped
                claims.give_back()
                raise

        @classmethod
        def dequeue_recording(cls, queues, timeout, *args, **kwargs):
            if timeout is None or not unrecorded.outcomes:
                return cls.wait_any(queues, timeout, *args, **kwargs)
            found = None
            try:
                found = super().dequeue_any(queues, None, *args, **kwargs)
            finally:
                if found is None:  # nothing waiting, or Redis is down
                    record_unrecorded()
            return found or cls.wait_any(queues, timeout, *args, **kwargs)

        @classmethod
        def wait_any(cls, queues, timeout, *args, **kwargs):
            # A worker asked to stop never starts waiting for a job, even if
            # the StopRequested that RQ raised was swallowed where it landed.
            if timeout is not None and stop_requested.is_set():
                raise StopRequested()
            return super().dequeue_any(queues, timeout, *args, **kwargs)

        @classmethod
        def lpop(cls, queue_keys, timeout, connection=None):
            claims.give_back()  # RQ pops again: it did not hand that over
            popped = cls.pop_first(queue_keys, timeout, connection)
            if popped is not None:
                claims.popped(as_text(popped[1]))
            return popped

        @classmethod
        def pop_first(cls, queue_keys, timeout, connection):
            # Without waiting, RQ pops each band in turn: a round trip per
            # empty band before the job, on every job. LMPOP pops the first
            # band holding one in one.
            blocking_or_one = timeout is not None or len(queue_keys) < 2
            if blocking_or_one or get_version(connection) < (7, 0, 0):
                return super().lpop(queue_keys, timeout, connection=connection)
            popped = connection.lmpop(len(queue_keys), *queue_keys, direction="LEFT")
            if popped is None:
                return None
            queue_key, (job_id,) = popped
            return queue_key, job_id

    RecordingQueue.__name__ = RecordingQueue.__qualname__ = (
        f"Recording{queue_class.__name__}"
    )
    return RecordingQueue
