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
import threading
import time
from dataclasses import dataclass
from itertools import count

from django.db import DatabaseError, close_old_connections, connections
from django.tasks import task_backends

from .. import conf, heartbeat, maintenance
from ..core import execution, recording, transitions
from ..exceptions import WorkerInterrupted
from ..log import log_event
from ..maintenance.rescue import rescue_from_dead_neighbours
from ..notify.listen import Listener
from .acks import Acks
from .claims import Claims, Pace
from .exchange import Exchange
from .leases import Leases

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
        self.stopping = False  # first signal: finish active jobs, claim nothing
        self.aborting = False  # second signal: put active jobs back, exit now
        self._thread_names = count(0)
        self._next_maintenance = 0.0
        # Only the loop's thread starts threads or changes these lists.
        self.threads = []  # the job threads serving the exchange
        self.abandoned = []  # job threads whose run the loop ended
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
        for _ in range(self.concurrency):
            self._start_thread()
        self.leases.register()
        rescue_from_dead_neighbours(self.worker_id)
        try:
            self._loop()
        finally:
            self.leases.unregister()
            listener.stop()
            self.exchange.close()
            threads = list(self.threads)  # not the abandoned ones
            if not self.aborting:
                for thread in threads:
                    thread.join()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        logger.info(
            "worker %s stopped after %d jobs", self.worker_id, self.stats.finished
        )
        return self.exit_code

    def _start_thread(self):
        thread = threading.Thread(
            target=self._serve, name=f"job_{next(self._thread_names)}", daemon=True
        )
        self.threads.append(thread)
        thread.start()

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

    # --- The job threads --------------------------------------------------

    def _serve(self):
        """A job thread: run claimed jobs, highest priority first, until the
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
        self._enforce_timeouts(now)
        self.claims.release_held_too_long(now)

    def _enforce_timeouts(self, now):
        for running in self.exchange.runs():
            running.interrupt_if_late(now)
            if running.overdue(now):
                self._abandon(running)

    def _abandon(self, running):
        """End a run that outlived its timeout and grace: the hard limit.

        Its job is recorded as timed out (retried or FAILED, by its retry
        policy) under the run's lease token, so the run itself can never
        record anything after. Its thread, which cannot be stopped, is left
        to finish on its own and exit; a new thread takes its place. With
        more such threads alive than JOB_CONCURRENCY the worker claims no
        more, finishes its active jobs and exits 1, for its supervisor to
        start a fresh process.
        """
        if not self.exchange.end_run(running):
            return  # it finished meanwhile
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
            self.stopping = True
            self.exit_code = 1
            return
        self._start_thread()

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
