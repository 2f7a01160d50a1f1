"""LISTEN/NOTIFY on PostgreSQL: the channel, its NOTIFY, and the listener
that wakes an idle database worker."""

import logging
import threading
import uuid
from urllib.parse import urlsplit

from django.db import DatabaseError, connections

from .. import conf
from ..models import Job

logger = logging.getLogger("jobs.notify")


CHANNEL = "reporadar_jobs"
# Longest wait for the listener's own test NOTIFY; a notification that has
# not come back by then does not reach this connection.
PROBE_SECONDS = 5.0


def notify(queue_names, db):
    with connections[db].cursor() as cursor:
        for queue_name in sorted(queue_names):
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, queue_name])


# NOTIFY in a transaction of its own whose commit waits for no WAL flush: a
# notifying commit holds a lock of the whole server until it ends, so only
# a commit that flushes nothing lets enqueues from many connections commit
# side by side. A notification dies with the server whatever its commit.
NOTIFY_UNFLUSHED = (
    "SELECT set_config('synchronous_commit', 'off', true), pg_notify(%s, queue) "
    "FROM unnest(%s::text[]) AS queue"
)


def notify_committed(queue_names, db):
    """NOTIFY `queue_names` after the caller's transaction committed.

    Runs as Django runs commit hooks, in autocommit: the statement is its
    own transaction. A failure is logged, not raised: the jobs committed,
    and workers find them when they next poll.
    """
    connection = connections[db]
    try:
        if connection.in_atomic_block:  # a hook run inside a later transaction
            notify(queue_names, db)
            return
        with connection.cursor() as cursor:
            cursor.execute(NOTIFY_UNFLUSHED, [CHANNEL, sorted(queue_names)])
    except DatabaseError as e:
        logger.warning(
            "NOTIFY after commit failed (%s); workers find the jobs when they poll",
            e,
        )


class Listener:
    """Wake the worker when PostgreSQL announces a new row (LISTEN/NOTIFY).

    It listens on `JOB_LISTEN_DATABASE_URL` when set (a direct connection,
    when the jobs database is reached through a pooler), else on the jobs
    database's own connection settings. After each LISTEN it sends itself a
    NOTIFY the way enqueuers do, through the jobs database: a pooler in
    transaction mode drops a LISTEN with its transaction, so when that
    notification does not come back the listener says so once and stops,
    and the worker polls every `JOB_POLL_SECONDS`. `hears` is None until
    then, True while notifications arrive, False once they did not.

    On other databases it does nothing and the worker polls.
    """

    def __init__(self, queues, wake):
        self.queues = set(queues)
        self.wake = wake
        self.connection = connections[Job.objects.db]
        self.hears = None
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

        while not self._stopped.is_set():
            try:
                with self._connect(listen_url()) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if not self._hears_itself(conn):
                        self._give_up()
                        return
                    self._say_listening()
                    self.wake.set()  # anything enqueued while we were away
                    while not self._stopped.is_set():
                        for notify in conn.notifies(timeout=0.25):
                            if notify.payload in self.queues:
                                self.wake.set()
            except psycopg.Error as e:
                logger.warning(
                    "LISTEN connection lost (%s); polling meanwhile", without_secrets(e)
                )
                self._stopped.wait(conf.get("JOB_POLL_SECONDS"))

    def _connect(self, url=""):
        """Open an autocommit psycopg connection to `url`, or to the jobs
        database when `url` is empty. It prepares nothing: a pooler may
        stand in between."""
        import psycopg

        if url:
            return psycopg.connect(url, autocommit=True, prepare_threshold=None)
        params = self.connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params["prepare_threshold"] = None
        return psycopg.connect(**params, autocommit=True)

    def _hears_itself(self, conn):
        """NOTIFY through the jobs database; say whether `conn` heard it."""
        probe = f"probe:{uuid.uuid4().hex}"
        with self._connect() as sender:
            sender.execute("SELECT pg_notify(%s, %s)", [CHANNEL, probe])
        for notify in conn.notifies(timeout=PROBE_SECONDS):
            if notify.payload == probe:
                return True
            if notify.payload in self.queues:
                self.wake.set()
        return False

    def _say_listening(self):
        if self.hears is None:
            where = "JOB_LISTEN_DATABASE_URL" if listen_url() else "the jobs database"
            logger.info("listening for new jobs (LISTEN on %s)", where)
        self.hears = True

    def _give_up(self):
        self.hears = False
        self.wake.set()  # the worker reports it
        advice = (
            "check that JOB_LISTEN_DATABASE_URL reaches PostgreSQL directly"
            if listen_url()
            else "behind a pooler in transaction mode, set JOB_LISTEN_DATABASE_URL "
            "to a direct connection"
        )
        logger.warning(
            "notifications do not reach this worker's LISTEN connection: it polls "
            "for new jobs every %gs (JOB_POLL_SECONDS); %s",
            conf.get("JOB_POLL_SECONDS"),
            advice,
        )


def listen_url():
    return conf.get("JOB_LISTEN_DATABASE_URL")


def without_secrets(error):
    """The text of `error`, with the listen URL's password masked."""
    text = str(error)
    password = urlsplit(listen_url()).password if listen_url() else None
    return text.replace(password, "********") if password else text
