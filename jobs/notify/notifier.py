"""NOTIFY the queues of committed jobs from a thread of the process's own."""

import atexit
import logging
import os
import threading
from time import monotonic

from django.db import connections

from .listen import CHANNEL, NOTIFY_UNFLUSHED

logger = logging.getLogger("jobs.notify")

# A process's enqueues NOTIFY in their own transactions at most once per
# this many seconds (`quiet`). The jobs enqueued meanwhile are announced by
# the notifier's thread, which waits twice as long after the last NOTIFY, so
# that the next enqueue's own can stand for them. Under load one NOTIFY
# stands for the enqueues of its window; after a quiet one, an enqueue
# NOTIFYs at once.
COOLDOWN = 0.01


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
        self.changed = threading.Condition()
        # (database alias, queue name): the numbers of its first and last
        # submit not announced yet; submits are numbered from 1.
        self.pending = {}
        self.submitted = 0
        self.sending = False  # the thread is sending what it took from pending
        self.last_rung = float("-inf")  # monotonic time of the last NOTIFY
        self.thread = None
        self.connections = {}

    def quiet(self):
        """Whether this process sent no NOTIFY for `COOLDOWN`: an enqueue
        may then NOTIFY in its own transaction."""
        return monotonic() - self.last_rung >= COOLDOWN

    def rang(self, queue_name, db, covered):
        """An enqueue's transaction NOTIFIed `queue_name` as it committed,
        after the first `covered` submits: they need no other NOTIFY."""
        with self.changed:
            self.last_rung = monotonic()
            first_last = self.pending.get((db, queue_name))
            if first_last and first_last[1] <= covered:
                del self.pending[db, queue_name]
                self.changed.notify_all()

    def submit(self, queue_names, db):
        with self.changed:
            idle = not self.pending  # else the thread is told already
            self.submitted += 1
            for queue_name in queue_names:
                first, _ = self.pending.get((db, queue_name), (self.submitted, 0))
                self.pending[db, queue_name] = (first, self.submitted)
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="job-notifier", daemon=True
                )
                self.thread.start()
            if idle:
                self.changed.notify_all()

    def _run(self):
        while True:
            with self.changed:
                self.changed.wait_for(lambda: self.pending)
                early = self.last_rung + 2 * COOLDOWN - monotonic()
                if early > 0:
                    self.changed.wait(early)  # later submits join this NOTIFY
                    continue  # unless an enqueue's own covered them meanwhile
                pending, self.pending = self.pending, {}
                self.sending = True
                self.last_rung = monotonic()
            queues = {}
            for db, queue_name in pending:
                queues.setdefault(db, set()).add(queue_name)
            for db, queue_names in queues.items():
                self._notify(db, queue_names)
            with self.changed:
                self.sending = False
                self.changed.notify_all()

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
            return self.changed.wait_for(
                lambda: (
                    not self.sending
                    and all(first > target for first, _ in self.pending.values())
                ),
                timeout,
            )


notifier = Notifier()
