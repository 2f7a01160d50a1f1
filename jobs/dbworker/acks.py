"""Recording finished runs in batches (acks), for one write per batch."""

import time

from .. import conf
from ..core import recording


class Acks:
    """Record finished runs in batches of JOB_ACK_BATCH or JOB_ACK_SECONDS.

    A lone finished job waits at most JOB_ACK_SECONDS for company; the
    worker never waits with threads idle for want of a write.
    """

    def __init__(self, exchange, stats, pace, slot_freed):
        self.exchange = exchange
        self.slot_freed = slot_freed  # told when a keyed job was recorded
        self.stats = stats  # counts the recorded runs
        self.pace = pace  # told how long each run took
        self._unrecorded = []  # Outcomes collected, not yet written

    def collect(self, force=False):
        """Collect the finished runs; record them if a batch is due or `force`."""
        finished = self.exchange.collect()
        for outcome in finished:
            self.pace.keep(outcome.duration)
        self._unrecorded += finished
        if not self._unrecorded:
            return
        first_done = self._unrecorded[0].finished
        due = time.monotonic() - first_done >= conf.get("JOB_ACK_SECONDS")
        full = len(self._unrecorded) >= self.exchange.ack_batch
        if not (force or due or full):
            return
        recording.finish(self._unrecorded)
        if any(o.job.concurrency_key for o in self._unrecorded):
            self.slot_freed()
        self.stats.finished += len(self._unrecorded)
        self._unrecorded = []

    def arm(self):
        """Return when the first finished run not recorded must be, or None.

        The loop's wait ends by then; from here on a thread handing back a
        run wakes the loop only if that wait would not end in time for it.
        """
        first = self.exchange.arm(self._unrecorded)
        if first is None:
            return None
        return first.finished + conf.get("JOB_ACK_SECONDS")

    def jobs(self):
        """Return the jobs of the runs collected and not recorded yet."""
        return [o.job for o in self._unrecorded]
