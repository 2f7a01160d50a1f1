"""NOTIFY the queues of committed jobs from a thread of the process's own."""

import atexit
import logging
import os
import threading
from time import monotonic

from django.db import connections

from .listen import CHANNEL, NOTIFY_UNFLUSHED

logger = logging.getLogger("jobs.notify")

# The NOTIFYs a process sends for its enqueues: at most one per COOLDOWN
# seconds on average, after a burst of BURST (a token bucket). An enqueue
# that finds a token NOTIFYs in its own transaction (`may_ring`); the jobs
# enqueued while none is left are announced by the notifier's thread, at
# most 2 x COOLDOWN later, unless a later enqueue's own NOTIFY stands for
# them first. Below that rate every enqueue NOTIFYs at once; above it one
# NOTIFY stands for many enqueues. Each NOTIFY costs a lock of the whole
# server at commit, so the rate is the lowest that still NOTIFYs at once
# for an enqueue every 20 ms.
COOLDOWN = 0.02
BURST = 10


class Notifier:
    """NOTIFY the queues of committed jobs from a thread of the process's own.

    Enqueue then costs the caller its INSERT only. The thread sends, on a
    connection of its own, one statement for the queues submitted since its
    last, except those that an enqueue's own NOTIFY has covered since
    (`rang`). Each submit comes after its commit, and the NOTIFY that covers
    it is sent or committed after that, so a listener hears one after the
    rows are visible. A process that dies before a NOTIFY loses nothing: the
    row is READY, and workers find it when they next poll.
    """

    def __init__(self):
        self._reset()
        os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.flush, timeout=5)

    def _reset(self):
        # A forked child starts empty: what the parent had pending is the
        # parent's thread's to send, and its connection is the parent's.
        lock = threading.Lock()
        self.changed = threading.Condition(lock)  # the thread waits on it
        self.settled = threading.Condition(lock)  # `flush` waits on it
        self.napping = False  # the thread waits with a timeout: leave it be
        # (database alias, queue name): the numbers of its first and last
        # submit not announced yet; submits are numbered from 1.
        self.pending = {}
        self.submitted = 0
        self.sending = False  # the thread is sending what it took from pending
        self.tokens, self.counted_at = BURST, monotonic()  # the bucket
        self.thread = None
        self.connections = {}

    def may_ring(self):
        """Whether an enqueue may NOTIFY in its own transaction now (a token
        is left), and then call `rang` as it commits."""
        return self._tokens(monotonic()) >= 1

    def rang(self, queue_name, db, covered):
        """An enqueue's transaction NOTIFIed `queue_name` as it committed,
        after the first `covered` submits: they need no other NOTIFY."""
        with self.changed:
            self._spend(monotonic())
            first_last = self.pending.get((db, queue_name))
            if first_last and first_last[1] <= covered:
                del self.pending[db, queue_name]
                self.settled.notify_all()

    def _tokens(self, now):
        return min(BURST, self.tokens + (now - self.counted_at) / COOLDOWN)

    def _spend(self, now):
        self.tokens, self.counted_at = self._tokens(now) - 1, now

    def submit(self, queue_names, db):
        with self.changed:
            self.submitted += 1
            for queue_name in queue_names:
                first, _ = self.pending.get((db, queue_name), (self.submitted, 0))
                self.pending[db, queue_name] = (first, self.submitted)
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="job-notifier", daemon=True
                )
                self.thread.start()
            if not self.napping:  # a napping thread finds them as it wakes
                self.changed.notify()

    def _run(self):
        while True:
            with self.changed:
                self.changed.wait_for(lambda: self.pending)
                # At once with two tokens left; 2 x COOLDOWN with none.
                now = monotonic()
                early = (2 - self._tokens(now)) * COOLDOWN
                if early > 0:
                    # Later submits join this NOTIFY, unless an enqueue's own
                    # covers them all meanwhile.
                    self.napping = True
                    self.changed.wait(early)
                    self.napping = False
                    continue
                pending, self.pending = self.pending, {}
                self.sending = True
                self._spend(now)
            queues = {}
            for db, queue_name in pending:
                queues.setdefault(db, set()).add(queue_name)
            for db, queue_names in queues.items():
                self._notify(db, queue_names)
            with self.changed:
                self.sending = False
                self.settled.notify_all()

    def _notify(self, db, queue_names):
        import psycopg

        try:
            connection = self.connections.get(db) or self._connect(db)
            connection.execute(NOTIFY_UNFLUSHED, [CHANNEL, sorted(queue_names)])
        except psycopg.Error as e:
            self._disconnect(db)
            logger.warning(
                "NOTIFY after commit failed (%s); workers find the jobs when they poll",
                e,
            )
        except Exception:  # a bug: the thread must live on
            self._disconnect(db)
            logger.exception("NOTIFY after commit failed")

    def _connect(self, db):
        """Open an autocommit psycopg connection to database `db`. It prepares
        nothing: a pooler may stand in between."""
        import psycopg

        params = connections[db].get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params["prepare_threshold"] = None
        connection = psycopg.connect(**params, autocommit=True)
        self.connections[db] = connection
        return connection

    def _disconnect(self, db):
        connection = self.connections.pop(db, None)
        if connection is not None:
            connection.close()

    def flush(self, timeout=None):
        """Wait until every submit so far is notified; True if it was."""
        with self.changed:
            target = self.submitted
            return self.settled.wait_for(
                lambda: (
                    not self.sending
                    and all(first > target for first, _ in self.pending.values())
                ),
                timeout,
            )


notifier = Notifier()
