"""Push committed jobs to RQ from a thread of the process's own."""

import atexit
import logging
import os
import threading
from contextlib import suppress
from queue import Empty, SimpleQueue

from .rq_push import push

logger = logging.getLogger("jobs.notify")


class Pusher:
    """Push committed jobs to RQ from a thread of the process's own.

    Enqueue then costs the caller its INSERT only: it never waits for
    Redis, and a slow or dead Redis cannot slow a request. The thread pushes
    whatever has committed since its last push in one pipeline. A process
    that dies before a push loses nothing: the row is READY, and the
    re-dispatcher pushes it after JOB_REDISPATCH_GRACE_SECONDS.
    """

    def __init__(self):
        self._reset()
        os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.flush, timeout=5)

    def _reset(self):
        # A forked child starts empty: what the parent had pending is the
        # parent's thread's to push.
        self.pending = SimpleQueue()
        self.unfinished = 0
        self.done = threading.Condition()
        self.thread = None

    def submit(self, jobs):
        with self.done:
            self.unfinished += 1
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="job-pusher", daemon=True
                )
                self.thread.start()
        self.pending.put(jobs)

    def _run(self):
        while True:
            batches = [self.pending.get()]
            with suppress(Empty):
                while True:
                    batches.append(self.pending.get_nowait())
            try:
                push([job for batch in batches for job in batch])
            except Exception:  # push logs Redis errors; this is a bug
                logger.exception("pushing jobs to RQ failed; they stay READY")
            finally:
                with self.done:
                    self.unfinished -= len(batches)
                    self.done.notify_all()

    def flush(self, timeout=None):
        """Wait until every job submitted so far is pushed; True if it was."""
        with self.done:
            return self.done.wait_for(lambda: self.unfinished == 0, timeout)


pusher = Pusher()
