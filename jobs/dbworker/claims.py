"""Claiming due jobs for the threads, ahead of them by the pace of runs."""

import logging
import time
from itertools import count

from .. import conf
from ..core import hot_path, transitions

logger = logging.getLogger("jobs.worker")


class Pace:
    """Follow how long runs take lately (a moving average)."""

    def __init__(self):
        self.seconds = None  # None: none ran yet
        self.runs = 0

    def keep(self, duration):
        """Count one more run that took `duration` seconds."""
        duration = max(duration, 1e-6)
        self.runs += 1
        self.seconds = (
            duration if self.seconds is None else 0.8 * self.seconds + 0.2 * duration
        )


class Claims:
    """Claim due jobs in batches and offer them to the threads.

    Claiming ahead (JOB_PREFETCH) means one claim statement serves many
    short jobs. A worker claims ahead only the jobs its threads start within
    JOB_PREFETCH_HOLD_SECONDS at the pace of recent runs (`_ahead`): none
    behind long jobs. A job claimed ahead that no thread took within that
    time goes back (`release_held_too_long`), so a short job never waits
    long behind a busy worker while another is idle.
    """

    def __init__(self, worker_id, queues, exchange, stats, pace, max_jobs, burst):
        self.worker_id = worker_id
        self.queues = queues
        self.exchange = exchange
        self.stats = stats  # counts the claimed jobs
        self.pace = pace
        self.max_jobs = max_jobs
        self.prefetch = conf.get("JOB_PREFETCH")
        self._tokens = count(1)
        self._held_too_long_after = None  # the run count when jobs went back
        self.burst = burst  # a burst worker looks for keyed jobs before it exits
        self._keyed_at = 0.0  # monotonic time keyed jobs are looked for next

    def claim(self):
        """Claim a batch: the free threads, plus jobs to start soon after.

        Return how many jobs were claimed and how many were wanted.
        """
        free, buffered = self.exchange.free_and_waiting()
        if buffered >= self.exchange.concurrency:
            return 0, 0
        wanted = free + self._ahead() - buffered
        if self.max_jobs is not None:
            wanted = min(wanted, self.max_jobs - self.stats.claimed)
        if wanted <= 0:
            return 0, 0
        # Keyed jobs first, for the threads free now (at least one, so a
        # stream of jobs without a key cannot starve them), and taken first:
        # one claimed ahead would hold a slot of its key while it waits.
        room = min(wanted, max(free - buffered, 1))
        keyed = self._claim_keyed(room)
        claimed_at = time.monotonic()
        self.exchange.put(keyed, claimed_at, first=True)
        jobs = []
        if len(keyed) < wanted:
            jobs = hot_path.claim(
                self.queues, wanted - len(keyed), self.worker_id, self._token()
            )
            self.exchange.put(jobs, claimed_at)
        if self.burst and not keyed and not jobs:
            # A burst worker exits when nothing is claimable: keyed jobs too.
            keyed = self._claim_keyed(room, now=True)
            self.exchange.put(keyed, time.monotonic(), first=True)
        self.stats.claimed += len(keyed) + len(jobs)
        return len(keyed) + len(jobs), wanted

    def _token(self):
        return f"{self.worker_id}:{next(self._tokens)}"

    def _claim_keyed(self, room, now=False):
        """Claim up to `room` jobs with a concurrency key, when keyed jobs may
        be claimable (or `now`): never in a loop while their keys are full
        (`slot_freed`)."""
        at = time.monotonic()
        if room <= 0 or (at < self._keyed_at and not now):
            return []
        jobs = hot_path.claim_keyed(self.queues, room, self.worker_id, self._token())
        logger.debug("keyed claim: %d of %d", len(jobs), room)
        # All it asked for: more may wait. Fewer: every due keyed job was
        # taken or waits for a slot; look again when one of ours frees a
        # slot, or after a poll interval for slots freed elsewhere.
        full = len(jobs) == room
        self._keyed_at = at if full else at + conf.get("JOB_POLL_SECONDS")
        return jobs

    def slot_freed(self):
        """A job with a concurrency key left RUNNING here: claim keyed jobs
        at the next turn."""
        self._keyed_at = 0.0

    def _ahead(self):
        """Count the jobs to claim beyond the free threads: as many as the
        threads start within JOB_PREFETCH_HOLD_SECONDS at the pace of recent
        runs, at most JOB_PREFETCH; none before the first run, and none
        after jobs claimed ahead went back unstarted until another run ends
        (the threads are slower than their pace says)."""
        if self.pace.seconds is None or self._held_too_long_after == self.pace.runs:
            return 0
        hold = conf.get("JOB_PREFETCH_HOLD_SECONDS")
        soon = self.exchange.concurrency * hold / self.pace.seconds
        return min(self.prefetch, int(soon))

    def reached_max_jobs(self):
        """Say whether the worker claimed all the jobs it may run."""
        return self.max_jobs is not None and self.stats.claimed >= self.max_jobs

    def release(self, claimed_by=None):
        """Release the claimed jobs no thread took (only those claimed by
        monotonic time `claimed_by`, if given): back to READY, uncounted."""
        jobs = self.exchange.unclaim(claimed_by)
        released = transitions.release(jobs)
        self.stats.claimed -= len(jobs)
        if released:
            logger.info("released %d claimed jobs that had not started", released)

    def release_held_too_long(self, now):
        """Release the jobs claimed JOB_PREFETCH_HOLD_SECONDS ago or more."""
        hold = conf.get("JOB_PREFETCH_HOLD_SECONDS")
        oldest = self.exchange.oldest_claim()
        if oldest is not None and now - oldest >= hold:
            self.release(claimed_by=now - hold)
            self._held_too_long_after = self.pace.runs

    def hold_ends(self):
        """Return when the oldest claimed job not taken must go back, or None."""
        oldest = self.exchange.oldest_claim()
        if oldest is None:
            return None
        return oldest + conf.get("JOB_PREFETCH_HOLD_SECONDS")
