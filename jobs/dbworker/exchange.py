"""What the loop and the job threads pass each other, under one lock."""

import threading
from collections import deque

from .runs import Running
from .wakeup import Wakeup


class Exchange:
    """Claimed jobs out to the job threads, finished runs back to the loop.

    The buffer, the runs, the finished outcomes and the flags are read and
    written under `available`'s lock; only `waiting` and `active` glance at
    them without it. The threads wake the loop only when it has something
    to do: the claimed jobs run low, or a finished run would wait too long
    to be recorded.
    """

    def __init__(self, concurrency, ack_batch):
        self.concurrency = concurrency
        self.ack_batch = ack_batch
        self.wake = Wakeup()  # the loop's: ends its wait
        self.available = threading.Condition()
        self.buffer = deque()  # (monotonic claim time, job): not yet taken
        self.running = {}  # job pk -> Running: taken by a thread, not handed back
        self.finished = []  # Outcomes from the threads, not collected
        self.ack_armed = False  # the loop's wait ends in time for `finished`
        self.refill_asked = False  # a thread said the buffer runs low
        self.closing = False  # the threads exit once the buffer is empty

    # --- The job threads' side --------------------------------------------

    def take(self):
        """Wait for a claimed job and take it; None once the worker closes
        (a loop that ends leaves nothing claimed to take, unless it crashed:
        then the rescuer puts those jobs back)."""
        with self.available:
            while not self.buffer and not self.closing:
                self.available.wait()
            if self.closing:
                return None
            _, job = self.buffer.popleft()
            running = Running(job, self.wake, threading.current_thread())
            self.running[job.pk] = running
            # Ask the loop for more once, when fewer are left than threads.
            refill = len(self.buffer) < self.concurrency and not self.refill_asked
            self.refill_asked = self.refill_asked or refill
        if refill:
            self.wake.set()
        return running

    def hand_back(self, running, outcome):
        """Give a finished run to the loop, waking it only when its wait
        would not end in time to record the run. Return False, dropping the
        outcome, when the loop had already ended the run (`end_run`)."""
        with self.available:
            if running.abandoned:
                return False
            del self.running[running.job.pk]
            self.finished.append(outcome)
            # Once per batch: the flag stays set until the loop's next turn,
            # and each write of it costs this thread its turn at the GIL.
            wake = not self.ack_armed or len(self.finished) == self.ack_batch
            self.ack_armed = True
        if wake:
            self.wake.set()
        return True

    # --- The loop's side --------------------------------------------------

    def put(self, jobs, claimed_at, first=False):
        """Offer newly claimed `jobs` to the threads (`first`: before the
        jobs claimed earlier)."""
        with self.available:
            entries = [(claimed_at, job) for job in jobs]
            if first:
                self.buffer.extendleft(reversed(entries))
            else:
                self.buffer.extend(entries)
            self.refill_asked = False
            self.available.notify(len(jobs))

    def unclaim(self, claimed_by=None):
        """Withdraw the claimed jobs no thread took (only those claimed by
        monotonic time `claimed_by`, if given) and return them."""

        def goes(claimed_at):
            return claimed_by is None or claimed_at <= claimed_by

        with self.available:
            entries = list(self.buffer)
            self.buffer = deque(e for e in entries if not goes(e[0]))
        return [job for claimed_at, job in entries if goes(claimed_at)]

    def free_and_waiting(self):
        """Count the threads without a run, and the claimed jobs not taken."""
        with self.available:
            return self.concurrency - len(self.running), len(self.buffer)

    def oldest_claim(self):
        """Return when the longest waiting claimed job was claimed, or None."""
        with self.available:
            return self.buffer[0][0] if self.buffer else None

    def collect(self):
        """Take the finished runs the threads handed back."""
        with self.available:
            finished, self.finished = self.finished, []
        return finished

    def arm(self, unrecorded):
        """Return the first finished run not recorded yet, or None.

        From here on a thread handing back a run wakes the loop only if
        the loop's wait would not end in time to record it.
        """
        with self.available:
            first = (unrecorded or self.finished or [None])[0]
            self.ack_armed = first is not None
        return first

    def held_jobs(self):
        """Return the jobs claimed, running or finished and not collected."""
        with self.available:
            held = [r.job for r in self.running.values()]
            held += [o.job for o in self.finished]
            held += [job for _, job in self.buffer]
        return held

    def runs(self):
        """Return the runs the threads took and the loop has not collected."""
        with self.available:
            return list(self.running.values())

    def idle(self):
        """Say whether no claimed job waits or runs (all runs collected)."""
        with self.available:
            return not self.buffer and not self.running

    def waiting(self):
        """Count the claimed jobs not taken yet, at a glance (no lock)."""
        return len(self.buffer)

    def active(self):
        """Count the runs the threads took, at a glance (no lock)."""
        return len(self.running)

    def end_run(self, running):
        """Take `running` from its thread for good, so that its outcome is
        dropped; return False if it was handed back already."""
        with self.available:
            if self.running.get(running.job.pk) is not running:
                return False
            del self.running[running.job.pk]
            running.abandoned = True
        return True

    def close(self):
        """Let the threads exit once they finish their runs."""
        with self.available:
            self.closing = True
            self.available.notify_all()
