"""The job threads, and the hard time limit on their runs."""

import logging
import threading
from itertools import count

from django.db import close_old_connections, connections

from .. import conf
from ..core import execution, recording

logger = logging.getLogger("jobs.worker")


class Pool:
    """Threads that each take the next claimed job as soon as they are free.

    Only the loop's thread starts threads or changes the two lists below.
    """

    def __init__(self, worker_id, exchange, backend_alias):
        self.worker_id = worker_id
        self.exchange = exchange
        self.concurrency = exchange.concurrency
        self.backend_alias = backend_alias
        self.threads = []  # the job threads serving the exchange
        self.abandoned = []  # job threads whose run the loop ended
        self._names = count(0)

    def start(self):
        """Start a thread for each job to run at once."""
        for _ in range(self.concurrency):
            self._start_thread()

    def close(self, wait=True):
        """Let the threads exit after their runs; wait for them if `wait`."""
        self.exchange.close()
        threads = list(self.threads)  # not the abandoned ones
        if wait:
            for thread in threads:
                thread.join()

    def _start_thread(self):
        thread = threading.Thread(
            target=self._serve, name=f"job_{next(self._names)}", daemon=True
        )
        self.threads.append(thread)
        thread.start()

    def _serve(self):
        """Run claimed jobs in this thread, highest priority first, until the
        worker closes, or until the loop ended its run (`_abandon`)."""
        try:
            while (running := self.exchange.take()) is not None:
                try:
                    outcome = execution.run(
                        running.job, self.backend_alias, guard=running.deadline_guard
                    )
                finally:
                    close_old_connections()
                if not self.exchange.hand_back(running, outcome):
                    return
        finally:
            connections.close_all()  # this thread's own connections

    def enforce_timeouts(self, now):
        """Interrupt the runs past their deadline and end those past grace.

        Return True when too many threads are stuck for the worker to go on.
        """
        stuck = False
        for running in self.exchange.runs():
            running.interrupt_if_late(now)
            if running.overdue(now):
                stuck = self._abandon(running) or stuck
        return stuck

    def _abandon(self, running):
        """End a run that outlived its timeout and grace: the hard limit.

        Its job is recorded as timed out (retried or FAILED, by its retry
        policy) under the run's lease token, so the run itself can never
        record anything after. Its thread, which cannot be stopped, is left
        to finish on its own and exit; a new thread takes its place. With
        more such threads alive than JOB_CONCURRENCY, return True instead:
        the worker claims no more, finishes its active jobs and exits 1, for
        its supervisor to start a fresh process.
        """
        if not self.exchange.end_run(running):
            return False  # it finished meanwhile
        self.threads.remove(running.thread)
        self.abandoned.append(running.thread)
        recording.record_hard_timeout(
            running.job,
            running.timeout,
            "its thread was abandoned",
            duration=running.timeout + conf.get("JOB_TIMEOUT_GRACE_SECONDS"),
            backend_alias=self.backend_alias,
        )
        self.abandoned = [t for t in self.abandoned if t.is_alive()]
        if len(self.abandoned) > self.concurrency:
            logger.error(
                "worker %s: %d job threads are stuck past their time limit; "
                "claiming no more and exiting 1 once active jobs finish",
                self.worker_id,
                len(self.abandoned),
            )
            return True
        self._start_thread()
        return False
