"""What both our RQ worker classes add to RQ's: priority bands, JSON only,
RQ's scheduler (for delays and retries), our maintenance, fewer round trips,
and a claim at each pop (`claim_at_pop`)."""

import time
from contextlib import suppress

from django.db import DatabaseError
from rq.exceptions import DeserializationError
from rq.job import JobStatus as RQJobStatus
from rq.serializers import JSONSerializer
from rq.utils import now as rq_now
from rq.worker import WorkerStatus

from .. import conf, worker_registry
from ..notify import link, rq_push
from .claim_at_pop import claims
from .claiming import worker_id
from .maintainer import Maintainer
from .outages import RedisOutageMixin
from .queues import recording, stop_requested, with_bands
from .timeouts import JobsDeathPenalty
from .unrecorded import record_unrecorded, unrecorded


class JobsWorkerMixin(RedisOutageMixin):
    """What both our worker classes add to RQ's; list it before RQ's class."""

    # RQ renews its worker key three times per job, two round trips each:
    # a fifth of a no-op job's time. The key lives `worker_ttl` + 60 s
    # (8 minutes), so once a second is plenty.
    heartbeat_every = 1.0
    heartbeat_sent = float("-inf")
    death_penalty_class = JobsDeathPenalty

    def __init__(self, queues, *args, **kwargs):
        # JSON, never pickle, whatever `--serializer` says (see `json_queue`).
        kwargs["serializer"] = JSONSerializer
        super().__init__(with_bands(queues), *args, **kwargs)
        self.queue_class = recording(self.queue_class)
        # A work horse connects to Redis anew (RQ's clients are per process).
        for client in {self.connection, *(queue.connection for queue in self.queues)}:
            link.share_driver_info(client)

    # A scheduler process that died (Redis went away under it) is started
    # again within this many seconds.
    scheduler_check_every = 5.0
    scheduler_checked = float("-inf")

    def request_stop(self, signum, frame):
        # RQ stops an idle worker by raising StopRequested wherever the
        # signal lands: code there that swallows exceptions (a log handler's
        # `handleError`) lost it, and the worker waited for jobs on. The flag
        # stays set: the dequeue raises it again before it waits.
        stop_requested.set()
        super().request_stop(signum, frame)

    def heartbeat(self, timeout=None, pipeline=None):
        if timeout is None and pipeline is None:
            if not self.time_for("heartbeat_sent", self.heartbeat_every):
                return
            with self.redis_may_fail("heartbeat"):  # the next dequeue waits
                super().heartbeat()
            return
        super().heartbeat(timeout, pipeline)

    def revive_scheduler(self):
        """Start RQ's scheduler process again if it died (its maintainer
        calls this); stock RQ waits for its next maintenance, 10 minutes.
        Not once the worker stops: it stopped the scheduler itself, and a
        new one would outlive it."""
        if self._stop_requested:
            return
        if not self.time_for("scheduler_checked", self.scheduler_check_every):
            return
        process = getattr(self.scheduler, "_process", None)
        if process is not None and not process.is_alive():
            self.log.warning("RQ scheduler process died; starting it again")
            self.scheduler.acquire_locks(auto_start=True)

    def time_for(self, last, every):
        """True, and now is the time of `last`, if `every` seconds passed since."""
        now = time.monotonic()
        if now - getattr(self, last) < every:
            return False
        setattr(self, last, now)
        return True

    # RQ asks Redis whether `rq suspend` was run before every job, a round
    # trip each: once a second is soon enough.
    suspension_check_every = 1.0
    suspension_checked = float("-inf")

    def check_for_suspension(self, burst):
        if not self.time_for("suspension_checked", self.suspension_check_every):
            return
        with self.redis_may_fail("suspension check"):
            super().check_for_suspension(burst)

    def set_state(self, state, pipeline=None):
        # RQ marks the worker idle after each job and again before it takes
        # the next: the second write, a round trip, changes nothing.
        if pipeline is None and state == WorkerStatus.IDLE == self._state:
            return
        super().set_state(state, pipeline)

    def abandon(self):
        """Tidy up before the process ends at once (`Watchdog.expire`):
        stop RQ's scheduler process and leave the worker registry."""
        with suppress(Exception):  # best effort: the process ends anyway
            if self.scheduler is not None:
                self.stop_scheduler()
        with suppress(DatabaseError):
            worker_registry.unregister(worker_id())

    def handle_execution_ended(self, job, queue, heartbeat_ttl):
        # RQ writes a job's heartbeat once more as it ends, a round trip of
        # its own. After a success of ours, the job hash RQ saves next
        # carries it.
        if not ours(job) or job.get_status(refresh=False) == RQJobStatus.FAILED:
            return super().handle_execution_ended(job, queue, heartbeat_ttl)
        job.ended_at = job.last_heartbeat = rq_now()

    def work(self, *args, **kwargs):
        # The connection opened here is the one the first claim uses: a work
        # horse never uses it (it makes its own, `main_work_horse`), nor does
        # RQ's scheduler process.
        conf.check_database()
        stop_requested.clear()  # a worker before it in this process stopped
        worker_id()  # named before the work horses fork, so they share it
        # Delayed jobs and retries are pushed with `enqueue_at`: RQ's scheduler
        # moves them to their queue when due.
        kwargs["with_scheduler"] = True
        maintainer = None if kwargs.get("burst") else Maintainer(self)
        if maintainer:
            maintainer.start()
        unrecorded.deferring = True
        claims.worker = self
        try:
            return super().work(*args, **kwargs)
        finally:
            claims.worker = None
            claims.give_back()  # claimed at a pop RQ did not hand over
            record_unrecorded()
            unrecorded.deferring = False
            if maintainer:
                maintainer.stop()
                # A scheduler it started again as the worker stopped goes too.
                if self.scheduler is not None:
                    self.stop_scheduler()


def ours(job):
    """Say whether `job` is an RQ job of ours (False: not, or unreadable)."""
    try:
        return job.func_name == rq_push.RQ_FUNCTION
    except DeserializationError:  # not JSON: never unpickled, see `json_queue`
        return False
