"""LISTEN/NOTIFY on PostgreSQL: the channel, its NOTIFY, and the listener
that wakes an idle database worker."""

import logging
import threading

from django.db import connections

from .. import conf
from ..models import Job

logger = logging.getLogger("jobs.notify")


CHANNEL = "reporadar_jobs"


def notify(queue_names, db):
    with connections[db].cursor() as cursor:
        for queue_name in sorted(queue_names):
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, queue_name])


class Listener:
    """Wake the worker when PostgreSQL announces a new row (LISTEN/NOTIFY).

    On other databases it does nothing and the worker polls.
    """

    def __init__(self, queues, wake):
        self.queues = set(queues)
        self.wake = wake
        self.connection = connections[Job.objects.db]
        self._stopped = threading.Event()
        self._thread = None

    def start(self):
        if self.connection.vendor != "postgresql":
            return
        self._thread = threading.Thread(
            target=self._listen_forever, name="job-listener", daemon=True
        )
        self._thread.start()

    def stop(self):
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _listen_forever(self):
        import psycopg

        params = self.connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        while not self._stopped.is_set():
            try:
                with psycopg.connect(**params, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.wake.set()  # anything enqueued while we were away
                    while not self._stopped.is_set():
                        for notify in conn.notifies(timeout=0.25):
                            if notify.payload in self.queues:
                                self.wake.set()
            except psycopg.Error as e:
                logger.warning("LISTEN connection lost (%s); polling meanwhile", e)
                self._stopped.wait(conf.get("JOB_POLL_SECONDS"))
