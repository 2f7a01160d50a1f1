"""Stopping the worker: signals set flags, the loop acts on them."""

import logging
import os
import signal
from collections import deque

from .. import worker_registry
from ..core import transitions
from ..exceptions import WorkerInterrupted
from ..log import log_event

logger = logging.getLogger("jobs.worker")


class StopFlags:
    """What the worker was told: finish and exit, or put back and exit now.

    The first SIGTERM/SIGINT (or `stop`) stops claiming and lets the active
    jobs finish; a second one puts the active jobs back as READY and exits
    at once.
    """

    def __init__(self, exchange):
        self.exchange = exchange
        self.stopping = False  # first signal: finish active jobs, claim nothing
        self.aborting = False  # second signal: put active jobs back, exit now
        self.heard = deque()  # (signal name, was stopping): for `announce`

    def stop(self):
        """Ask the worker to finish its active jobs and exit (like SIGTERM)."""
        self.stopping = True
        self.exchange.wake.set()

    def install(self):
        """Handle SIGTERM and SIGINT; return the handlers they replace."""
        return {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }

    @staticmethod
    def restore(previous):
        """Put back the signal handlers `install` replaced."""
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum, frame):
        # Rule: a handler only sets flags and the wakeup, which take no lock;
        # the loop says what it heard (`announce`). A handler that logged
        # could meet the lock of a log line the loop was writing.
        self.heard.append((signal.Signals(signum).name, self.stopping))
        if self.stopping:
            self.aborting = True
        self.stopping = True
        self.exchange.wake.set()

    def announce(self):
        """Log the signals heard since the last turn (the loop calls this)."""
        while self.heard:
            name, again = self.heard.popleft()
            if again:
                logger.warning("%s again: putting active jobs back, exiting now", name)
            else:
                logger.info(
                    "%s: finishing %d active jobs, claiming no more (again to abort)",
                    name,
                    self.exchange.active(),
                )


def put_back_and_exit(worker_id, jobs):
    """Put the running `jobs` back as READY and leave the process now."""
    put_back = transitions.put_back(
        jobs,
        WorkerInterrupted("The worker was stopped while this job ran."),
        give_up_when_exhausted=False,
    )
    for job in put_back:
        log_event("interrupted", job, level=logging.WARNING)
    worker_registry.unregister(worker_id)
    logger.warning(
        "worker %s aborted: %d active jobs put back",
        worker_id,
        len(put_back),
    )
    logging.shutdown()
    os._exit(1)
