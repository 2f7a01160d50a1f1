"""The database worker: claim due rows in batches, run them in threads.

One main thread owns the loop and every write the worker itself makes
(claims, batched completions, lease renewals, maintenance); `concurrency` threads
run task functions, each taking the next claimed job itself as soon as it
is free. The loop is woken only when it has something to do: the claimed
jobs run low, the first run of a batch finishes, a batch is full.
Signals only set flags, the loop acts on them:
first SIGTERM/SIGINT stops claiming and lets active jobs finish; a second one
puts the active jobs back as READY and exits at once.

The parts, by role: `exchange` (what the loop and the threads pass each
other), `claims` (claiming ahead, giving back what waited too long), `pool`
(the job threads, the hard time limit), `acks` (recording in batches),
`leases` (lease renewal, the worker registry), `stopping` (signals, abort).
"""

import logging
import time
from dataclasses import dataclass

from django.db import DatabaseError, close_old_connections
from django.tasks import task_backends

from .. import conf
from ..core import execution
from ..maintenance.rescue import rescue_from_dead_neighbours
from ..maintenance.schedule import Schedule
from ..notify.listen import Listener
from .acks import Acks
from .claims import Claims, Pace
from .exchange import Exchange
from .leases import Leases
from .pool import Pool
from .stopping import StopFlags, put_back_and_exit

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
        self._build_parts()
        self.maintenance = Schedule(self.worker_id, burst)
        self.exit_code = 0

    def _build_parts(self):
        ack_batch = max(self.concurrency, conf.get("JOB_ACK_BATCH"))
        self.exchange = Exchange(self.concurrency, ack_batch)
        self.wake = self.exchange.wake
        self.flags = StopFlags(self.exchange)
        pace = Pace()
        self.claims = Claims(
            self.worker_id,
            self.queues,
            self.exchange,
            self.stats,
            pace,
            self.max_jobs,
            self.burst,
        )
        self.acks = Acks(self.exchange, self.stats, pace, self.claims.slot_freed)
        self.listener = Listener(self.queues, self.wake)
        self.leases = Leases(
            self.worker_id,
            self.queues,
            self.concurrency,
            self.exchange,
            self.acks,
            self.listener,
        )
        self.pool = Pool(self.worker_id, self.exchange, self.backend_alias)

    # --- Lifecycle --------------------------------------------------------

    def run(self):
        """Work until stopped, drained (`burst`) or `max_jobs` ran; return 0."""
        previous = self.flags.install() if self.install_signals else {}
        if not self.burst:  # a burst worker exits when idle: nothing to hear
            self.listener.start()
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
            self.maintenance.stop()
            self.leases.unregister()
            self.listener.stop()
            self.pool.close(wait=not self.flags.aborting)
            self.flags.restore(previous)
            self.flags.announce()
        logger.info(
            "worker %s stopped after %d jobs", self.worker_id, self.stats.finished
        )
        return self.exit_code

    def stop(self):
        """Ask the worker to finish its active jobs and exit (like SIGTERM)."""
        self.flags.stop()

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
        self.flags.announce()
        self.acks.collect(force=self.flags.stopping or not self.exchange.waiting())
        if self.flags.aborting:
            self._abort()
        if self.flags.stopping and self.exchange.waiting():
            self.claims.release()
        if self.exchange.idle() and (
            self.flags.stopping or self.claims.reached_max_jobs()
        ):
            self.acks.collect(force=True)
            return True
        self._housekeeping()
        claimed, wanted = (0, 0) if self.flags.stopping else self.claims.claim()
        # Maintenance after the claim: the jobs just claimed run meanwhile.
        if not self.flags.stopping and self.maintenance.run_if_due(time.monotonic()):
            return False  # claim again now: a rescue or a schedule made jobs due
        if self.burst and not claimed and self.exchange.idle():
            self.acks.collect(force=True)
            # Claim once more after them: a rescue may have made jobs due.
            return not self.maintenance.finish()
        if wanted and claimed == wanted and self.exchange.waiting() < self.concurrency:
            return False  # the threads empty the buffer and rows are due
        self.wake.wait(self._wait_seconds())
        return False

    def _wait_seconds(self):
        """Return how long to wait: until the next poll, or less for a
        heartbeat, a timeout, a claimed job held too long or finished runs
        waiting to be recorded."""
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
        """Renew leases, enforce time limits, and give back claimed jobs held
        too long."""
        now = time.monotonic()
        self.leases.renew_if_due(now)
        if self.pool.enforce_timeouts(now):
            self.flags.stopping = True  # claim no more, exit 1 once jobs finish
            self.exit_code = 1
        self.claims.release_held_too_long(now)

    def _abort(self):
        """Put the active jobs back as READY and leave the process now."""
        self.claims.release()
        put_back_and_exit(self.worker_id, [r.job for r in self.exchange.runs()])
