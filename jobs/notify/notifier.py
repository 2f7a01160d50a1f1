"""NOTIFY the queues of committed jobs from a thread of the process's own."""

import atexit
import logging
import os
import threading

from django.db import connections

from .listen import CHANNEL, NOTIFY_UNFLUSHED

logger = logging.getLogger("jobs.notify")


class Notifier:
    """NOTIFY the queues of committed jobs from a thread of the process's own.

    Enqueue then costs the caller its INSERT only. The thread sends, on a
    connection of its own, one statement for every queue submitted since
    its last: under load one NOTIFY stands for many enqueues. Each submit
    comes after its commit, and each NOTIFY is sent after the submits it
    covers, so a listener hears one after the rows are visible. A process
    that dies before a NOTIFY loses nothing: the row is READY, and workers
    find it when they next poll.
    """

    def __init__(self):
        self._reset()
        os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.flush, timeout=5)

    def _reset(self):
        # A forked child starts empty: what the parent had pending is the
        # parent's thread's to send, and its connection is the parent's.
        self.changed = threading.Condition()
        self.pending = {}  # database alias: queue names
        self.submitted = self.sent = 0
        self.thread = None
        self.connections = {}

    def submit(self, queue_names, db):
        with self.changed:
            idle = not self.pending  # else the thread is told already
            self.pending.setdefault(db, set()).update(queue_names)
            self.submitted += 1
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
                pending, self.pending = self.pending, {}
                covered = self.submitted
            for db, queue_names in pending.items():
                self._notify(db, queue_names)
            with self.changed:
                self.sent = covered
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
            return self.changed.wait_for(lambda: self.sent >= target, timeout)


notifier = Notifier()
