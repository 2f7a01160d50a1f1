"""PgQueuer, Procrastinate and Celery, seen from the harness.

Each runs in the baselines' venv with its own worker command, as its
documentation shows, on the bench's PostgreSQL or private Redis, and reads
back when its jobs started and finished from its own store: PgQueuer's log
table, Procrastinate's events table, the stamps the Celery worker writes to
Redis (`bench.celery_app`).
"""

from datetime import UTC, datetime

from .celery_stamps import STAMPS_KEY
from .services import BASELINE_VENV, baseline_python
from .systems import System, Window, run_json_free

BIN = BASELINE_VENV / "bin"
# PgQueuer's own benchmark (tools/benchmark.py) dequeues in batches of 10,
# also the default of `pgq run`.
PGQ_BATCH_SIZE = 10
# Procrastinate runs one job at a time unless told; ours runs 5 threads
# (JOB_CONCURRENCY), so its worker gets as many.
PROCRASTINATE_CONCURRENCY = 5


class BaselineSystem(System):
    """A baseline in the baselines' venv that pre-fills through its app module."""

    bursts = True  # its worker can stop by itself once the queue is empty

    def __init__(self, harness, database=None):
        super().__init__(harness)
        self.database = database
        self.python = baseline_python()

    def client_env(self):
        env = self.env(**self.connection_env())
        # Celery would set up the Django project it names (its Django fixup).
        env.pop("DJANGO_SETTINGS_MODULE", None)
        return env

    def worker_env(self):
        return self.client_env()

    def connection_env(self):
        return {"DATABASE_URL": self.harness.postgres.database_url(self.database)}

    def finished(self):
        return self.window().count

    def _query(self, sql):
        with self.harness.postgres.connect(self.database) as conn:
            return conn.execute(sql).fetchall()

    def _setup(self, command):
        self.harness.postgres.create(self.database)
        log = self.harness.log_path(f"schema-{self.name}")
        run_json_free(command, self.client_env(), log)


class PgQueuer(BaselineSystem):
    """`pgq run bench.pgq_app:create` on asyncpg; `--mode drain` stops it."""

    name = "pgqueuer"

    def _dsn(self):
        return ["--pg-dsn", self.harness.postgres.database_url(self.database)]

    def setup(self):
        self._setup([BIN / "pgq", *self._dsn(), "install"])

    def reset(self):
        with self.harness.postgres.connect(self.database) as conn:
            conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")

    def worker(self, burst=True):
        mode = "drain" if burst else "continuous"
        command = [BIN / "pgq", *self._dsn(), "run", "bench.pgq_app:create"]
        return [*command, "--batch-size", PGQ_BATCH_SIZE, "--mode", mode]

    def window(self):
        # A job's log rows: `picked` when the dequeue claims it, `successful`
        # when its completion is flushed, each on the database's clock.
        (row,) = self._query(
            "SELECT count(*) FILTER (WHERE status = 'successful'),"
            " min(created) FILTER (WHERE status = 'picked'),"
            " max(created) FILTER (WHERE status = 'successful') FROM pgqueuer_log"
        )
        return Window(*row)


class Procrastinate(BaselineSystem):
    """`procrastinate worker --one-shot` (stops once it has caught up)."""

    name = "procrastinate"
    app = "bench.procrastinate_app.app"

    def setup(self):
        self._setup([BIN / "procrastinate", "--app", self.app, "schema", "--apply"])

    def reset(self):
        with self.harness.postgres.connect(self.database) as conn:
            conn.execute("TRUNCATE procrastinate_jobs CASCADE")

    def worker(self, burst=True):
        command = [BIN / "procrastinate", "--app", self.app, "worker"]
        command += ["--queues", "default"]
        command += ["--concurrency", PROCRASTINATE_CONCURRENCY]
        return [*command, "--one-shot"] if burst else command

    def window(self):
        # Its jobs' triggers write `started` and `succeeded` events.
        (row,) = self._query(
            "SELECT count(*) FILTER (WHERE type = 'succeeded'),"
            " min(at) FILTER (WHERE type = 'started'),"
            " max(at) FILTER (WHERE type = 'succeeded') FROM procrastinate_events"
        )
        return Window(*row)


class Celery(BaselineSystem):
    """`celery worker --pool=solo -c 1` on the Redis broker, results off.

    Celery's worker has no burst mode: the harness stops it (SIGTERM, a warm
    shutdown) once the stamps say all jobs finished."""

    name = "celery"
    bursts = False

    def connection_env(self):
        return {"REDIS_URL": self.harness.redis.url}

    def setup(self):
        pass

    def reset(self):
        self.harness.redis.flush()

    def worker(self, burst=False):
        command = [BIN / "celery", "-A", "bench.celery_app", "worker"]
        return [*command, "--pool=solo", "-c", "1"]

    def window(self):
        stamps = self.harness.redis.client().hgetall(STAMPS_KEY)
        if not stamps:
            return Window(0, None, None)
        first, last = (float(stamps[key]) for key in (b"first", b"last"))
        return Window(int(stamps[b"count"]), stamp(first), stamp(last))


def stamp(seconds):
    return datetime.fromtimestamp(seconds, UTC)
