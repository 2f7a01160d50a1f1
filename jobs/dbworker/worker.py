"""The database worker: claim due rows in batches, run them in threads.

One main thread owns the loop and every write the worker itself makes
(claims, batched completions, heartbeats, maintenance); `concurrency` threads
run task functions, each taking the next claimed job itself as soon as it
is free. The loop is woken only when it has something to do: the claimed
jobs run low, the first run of a batch finishes, a batch is full.
Signals only set flags, the loop acts on them:
first SIGTERM/SIGINT stops claiming and lets active jobs finish; a second one
puts the active jobs back as READY and exits at once.
"""

import logging
import os
import signal
import time
from dataclasses import dataclass

from django.db import DatabaseError, close_old_connections
from django.tasks import task_backends

from .. import conf, heartbeat, maintenance
from ..core import execution, transitions
from ..exceptions import WorkerInterrupted
from ..log import log_event
from ..maintenance.rescue import rescue_from_dead_neighbours
from ..notify.listen import Listener
from .acks import Acks
from .claims import Claims, Pace
from .exchange import Exchange
from .leases import Leases
from .pool import Pool

logger = logging.getLogger("jobs.worker")


@dataclass
class WorkerStats:
    claimed: int = 0
    finished: int = 0


class Worker:
    """Run due jobs of `queues` from the database until told to stop."""

    def __init__(
        self,
        queues=None,
        concurrency=None,
        burst=False,
        max_jobs=None,
        backend_alias="default",
        install_signals=True,
    ):
        backend = task_backends[backend_alias]
        self.queues = sorted(queues or backend.queues)
        self.concurrency = concurrency or conf.get("JOB_CONCURRENCY")
        self.burst = burst
        self.max_jobs = max_jobs
        self.backend_alias = backend_alias
        self.install_signals = install_signals
        self.worker_id = execution.new_worker_id()
        self.stats = WorkerStats()
        ack_batch = max(self.concurrency, conf.get("JOB_ACK_BATCH"))
        self.exchange = Exchange(self.concurrency, ack_batch)
        self.wake = self.exchange.wake
        self.pace = Pace()
        self.claims = Claims(
            self.worker_id, self.queues, self.exchange, self.stats, self.pace, max_jobs
        )
        self.acks = Acks(self.exchange, self.stats, self.pace)
        self.leases = Leases(
            self.worker_id, self.queues, self.concurrency, self.exchange, self.acks
        )
        self.pool = Pool(self.worker_id, self.exchange, backend_alias)
        self.stopping = False  # first signal: finish active jobs, claim nothing
        self.aborting = False  # second signal: put active jobs back, exit now
        self._next_maintenance = 0.0
        self.exit_code = 0

    # --- Lifecycle --------------------------------------------------------

    def run(self):
        """Work until stopped, drained (`burst`) or `max_jobs` ran; return 0."""
        previous = self._install_signal_handlers() if self.install_signals else {}
        listener = Listener(self.queues, self.wake)
        if not self.burst:  # a burst worker exits when idle: nothing to hear
            listener.start()
        logger.info(
            "worker %s started queues=%s concurrency=%d burst=%s",
            self.worker_id,
            ",".join(self.queues),
            self.concurrency,
            self.burst,
        )
        self.pool.start()
        self.leases.register()
        rescue_from_dead_neighbours(self.worker_id)
        try:
            self._loop()
        finally:
            self.leases.unregister()
            listener.stop()
            self.pool.close(wait=not self.aborting)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        logger.info(
            "worker %s stopped after %d jobs", self.worker_id, self.stats.finished
        )
        return self.exit_code

    def stop(self):
        """Ask the worker to finish its active jobs and exit (like SIGTERM)."""
        self.stopping = True
        self.wake.set()

    def _install_signal_handlers(self):
        """Handle SIGTERM and SIGINT; return the handlers they replace."""
        return {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }

    def _on_signal(self, signum, frame):
        name = signal.Signals(signum).name
        if self.stopping:
            logger.warning("%s again: putting active jobs back, exiting now", name)
            self.aborting = True
        else:
            logger.info(
                "%s: finishing %d active jobs, claiming no more (again to abort)",
                name,
                self.exchange.active(),
            )
            self.stopping = True
        self.wake.set()

    # --- The loop ---------------------------------------------------------

    def _loop(self):
        while True:
            try:
                if self._step():
                    return
            except DatabaseError as e:
                # The database went away (restart, failover): keep the
                # finished runs, wait, and try again with a new connection.
                logger.error("database error, retrying shortly: %s", e)
                close_old_connections()
                self.wake.wait(conf.get("JOB_POLL_SECONDS"))
                self.wake.clear()

    def _step(self):
        """Do one turn of the loop; return True when the worker should exit."""
        self.wake.clear()
        self.acks.collect(force=self.stopping or not self.exchange.waiting())
        if self.aborting:
            self._abort()
        if self.stopping and self.exchange.waiting():
            self.claims.release()
        if self.exchange.idle() and (self.stopping or self.claims.reached_max_jobs()):
            self.acks.collect(force=True)
            return True
        self._housekeeping()
        claimed, wanted = (0, 0) if self.stopping else self.claims.claim()
        if self.burst and not claimed and self.exchange.idle():
            self.acks.collect(force=True)
            return True
        if wanted and claimed == wanted and self.exchange.waiting() < self.concurrency:
            return False  # the threads empty the buffer and rows are due
        self.wake.wait(self._wait_seconds())
        return False

    # --- Waiting ----------------------------------------------------------

    def _wait_seconds(self):
        """Sleep until the next poll, or sooner for a heartbeat, a timeout or
        finished runs waiting to be recorded."""
        now = time.monotonic()
        wake_at = [now + conf.get("JOB_POLL_SECONDS")]
        wake_at += [self.acks.arm(), self.claims.hold_ends()]
        running = self.exchange.runs()
        if running:
            wake_at.append(self.leases.next_renewal)
            for r in running:
                wake_at.extend(r.deadlines())
        return max(0.0, min(t for t in wake_at if t is not None) - now)

    # --- Housekeeping -----------------------------------------------------

    def _housekeeping(self):
        now = time.monotonic()
        self.leases.renew_if_due(now)
        if now >= self._next_maintenance and not self.stopping:
            maintenance.run_due_duties(self.worker_id)
            self._next_maintenance = now + conf.get("JOB_MAINTENANCE_SECONDS")
        if self.pool.enforce_timeouts(now):
            self.stopping = True  # claim no more, exit 1 once jobs finish
            self.exit_code = 1
        self.claims.release_held_too_long(now)

    def _abort(self):
        """Put the active jobs back as READY and leave the process now."""
        self.claims.release()
        jobs = [r.job for r in self.exchange.runs()]
        put_back = transitions.put_back(
            jobs,
            WorkerInterrupted("The worker was stopped while this job ran."),
            give_up_when_exhausted=False,
        )
        for job in put_back:
            log_event("interrupted", job, level=logging.WARNING)
        heartbeat.unregister(self.worker_id)
        logger.warning(
            "worker %s aborted: %d active jobs put back",
            self.worker_id,
            len(put_back),
        )
        logging.shutdown()
        os._exit(1)
