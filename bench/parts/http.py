"""The big table: on a database of `--health-rows` finished jobs, `/health`,
`/metrics` (a staff session; the tally holds the last hour's rows), the
per-task table and the admin job list (plain, each filter, each search)
through Django's test client as a superuser; one worker draining `--jobs`
no-ops; and the slowest pickup while `prunejobs` deletes `PRUNED_ROWS` old
rows beside it.
"""

import time
from datetime import UTC, datetime

from tests.services import wait_for

from ..client import ADMIN_LIST
from ..log import log
from ..report import at_least, at_most, percentile
from ..services import ROOT, Process
from ..systems import Ours
from .base import Part

PAGES = (
    "health",
    "health_uncached",
    "metrics",
    "admin_tasks",
    "admin_tasks_uncached",
    *ADMIN_LIST,
)
FIGURES = [f"http.{page}.{q}" for page in PAGES for q in ("p50", "p99")]
P99_TARGETS = {"health": 50, "health_uncached": 50, "metrics": 50}
P99_TARGETS |= dict.fromkeys(ADMIN_LIST, 300)
# The per-task table groups a day of finished rows (all `--health-rows` of
# them: they are 50 ms apart) when its cache is cold: no target, a figure.
P99_TARGETS |= {"admin_tasks": 300, "admin_tasks_uncached": None}
DRAIN = "http.full_table.drain.ours_db.noop.1w"  # against an empty table's
PRUNING = ["http.pruning.pickup_p50", "http.pruning.pickup_max"]  # ms
PRUNED_ROWS = 1_000_000
# Every filled row is within this retention; the rows `_pickup_while_pruning`
# adds are past it.
RETENTION = {"JOB_CLEANUP_AGE": str(30 * 86_400_000)}

# `--health-rows` finished jobs, 50 ms apart up to now, 1% of them failed and
# one in 10,000 of a rarer task, each with its own argument (a URL naming
# its number, for the argument search), in one statement. Column list as in
# jobs/migrations/0001_initial.py, plus the NOT NULL columns added since
# without a database default (0012's concurrency_key).
FILL_SQL = """
INSERT INTO jobs_job (
    id, task_path, queue_name, priority, status, args, kwargs, return_value,
    errors, worker_ids, attempts, max_attempts, enqueued_at, run_after,
    started_at, last_attempted_at, finished_at, progress, progress_message,
    lease_token, lease_expires_at, cancel_requested, concurrency_key)
SELECT gen_random_uuid(),
    CASE WHEN i %% 10000 = 7 THEN 'bench.djtasks.rare' ELSE 'bench.djtasks.noop' END,
    'default', 0,
    CASE WHEN i %% 100 = 0 THEN 'FAILED' ELSE 'SUCCESSFUL' END,
    jsonb_build_array('https://example.org/r' || i || '.git'), '{}', NULL,
    CASE WHEN i %% 100 = 0 THEN '[{"exception_class_path": "builtins.ValueError",
        "message": "bench", "traceback": "ValueError: bench\\n", "attempt": 3,
        "worker_id": "bench:1:abcdef", "failed_at": "2026-01-01T00:00:00+00:00"}]'
        ELSE '[]' END::jsonb,
    '["bench:1:abcdef"]', 1, 3, t, t, t + interval '1 ms', t + interval '1 ms',
    t + interval '2 ms', NULL, '', '', NULL, false, ''
FROM (
    SELECT i, now() - i * interval '50 ms' AS t
    FROM generate_series(1, %(rows)s) AS i
) AS s
"""


# `PRUNED_ROWS` finished jobs 31 days old: past `RETENTION`.
PAST_RETENTION_SQL = FILL_SQL.replace("now() - i", "now() - interval '31 days' - i")


class Http(Part):
    """Time our pages in-process on a database full of finished jobs."""

    name = "http"

    def define(self):
        for page in PAGES:
            self.report.define(f"http.{page}.p50", "ms")
            target = P99_TARGETS[page]
            targets = [at_most(target)] if target is not None else []
            self.report.define(f"http.{page}.p99", "ms", targets=targets)
        empty = "drain.ours_db.noop.1w"
        self.report.define(DRAIN, "jobs/s", empty, [at_least(0.9, True)])
        self.report.define(PRUNING[0], "ms", "pickup.ours_db.p50")
        self.report.define(PRUNING[1], "ms", "pickup.ours_db.p99", [at_most(100)])

    def prepare(self):
        try:
            self._fill()
        except Exception as e:  # the other parts still run
            log(f"could not fill the pages' database: {e}")
            self.report.error(FIGURES, f"{type(e).__name__}: {e}")
            return False
        return True

    def _fill(self):
        harness = self.harness
        self.health = Ours(harness, f"{self.options.db_prefix}_health")
        harness.databases.append(self.health.database)
        rows = self.options.health_rows
        log(f"filling {self.health.database} with {rows:,} finished jobs")
        self.health.setup()
        started = time.monotonic()
        with harness.postgres.connect(self.health.database) as conn:
            conn.execute(FILL_SQL, {"rows": rows})
            conn.execute("ANALYZE jobs_job")
        log(f"filled in {time.monotonic() - started:.1f}s")

    def run(self):
        try:
            self._measure()
        except Exception as e:  # one broken run must not lose the other parts
            self.report.error(FIGURES, f"{type(e).__name__}: {e}")
        self.harness.measure([DRAIN], self._drain)
        self.harness.measure(PRUNING, self._pickup_while_pruning)

    def _worker(self, label, burst, **env):
        command = [*self.health.db_worker(burst=burst)]
        env = self.health.worker_env() | RETENTION | env
        return Process(command, env, self.harness.log_path(label))

    def _query(self, sql, *params):
        with self.harness.postgres.connect(self.health.database) as conn:
            return conn.execute(sql, params).fetchall()

    def _drain(self):
        """Drain `--jobs` no-ops with one burst worker beside the full table."""
        jobs = self.options.jobs
        ((since,),) = self._query("SELECT now()")
        self.health.client("prefill", jobs=jobs, task="noop")
        worker = self._worker("full-table-drain", burst=True)
        code = worker.wait(timeout=120 + jobs / 5)
        worker.close()
        if code != 0:
            raise RuntimeError(f"worker exited {code}; log: {worker.log_path}")
        ((count, seconds),) = self._query(
            "SELECT count(*), extract(epoch FROM max(finished_at) - min(started_at))"
            " FROM jobs_job WHERE enqueued_at >= %s AND status = 'SUCCESSFUL'",
            since,
        )
        if count != jobs:
            raise RuntimeError(f"{count} of {jobs} jobs finished (full table)")
        return jobs / float(seconds)

    def _pickup_while_pruning(self):
        """Pace jobs into an idle worker while `prunejobs` deletes
        `PRUNED_ROWS` rows past retention; return the pickup p50 and the
        slowest pickup of the jobs enqueued while it ran."""
        # Its own maintenance waits: the pruning measured is `prunejobs`'.
        worker = self._worker("pruning-worker", False, JOB_MAINTENANCE_SECONDS="3600")
        try:
            ready = "SELECT count(*) FROM jobs_workerprocess"
            wait_for(lambda: self._query(ready)[0][0] >= 1, 60, "the worker to start")
            with self.harness.postgres.connect(self.health.database) as conn:
                conn.execute(PAST_RETENTION_SQL, {"rows": PRUNED_ROWS})
            command = [self.health.python, ROOT / "manage.py", "prunejobs"]
            env = self.health.worker_env() | RETENTION
            started = datetime.now(UTC)
            pruner = Process(command, env, self.harness.log_path("prunejobs"))
            while pruner.popen.poll() is None:
                self.health.client("pace", rate=self.options.rate, seconds=2)
            ended = datetime.now(UTC)
            pruner.close()
            if pruner.popen.returncode != 0:
                raise RuntimeError(f"prunejobs failed; log: {pruner.log_path}")
            unfinished = (
                "SELECT count(*) FROM jobs_job WHERE status IN ('READY', 'RUNNING')"
            )
            wait_for(lambda: self._query(unfinished)[0][0] == 0, 60, "the jobs")
        finally:
            worker.terminate()
        rows = self._query(
            "SELECT extract(epoch FROM started_at - enqueued_at) * 1000 FROM jobs_job"
            " WHERE enqueued_at BETWEEN %s AND %s",
            started,
            ended,
        )
        latencies = [float(ms) for (ms,) in rows]
        log(f"pruned {PRUNED_ROWS:,} rows in {(ended - started).total_seconds():.1f}s")
        self.report.detail(PRUNING[1], jobs=len(latencies), pruned=PRUNED_ROWS)
        return percentile(latencies, 0.5), max(latencies)

    def _measure(self):
        result = self.health.client("http", requests=self.options.requests)
        values = []
        for page in PAGES:
            timing = result[page]
            if not timing["available"]:
                for name in (f"http.{page}.p50", f"http.{page}.p99"):
                    self.report.note(name, f"not available ({timing['status']})")
                continue
            ms = [s * 1000 for s in timing["seconds"]]
            values += [
                (f"http.{page}.p50", percentile(ms, 0.5)),
                (f"http.{page}.p99", percentile(ms, 0.99)),
            ]
        for name, value in values:
            self.report.add(name, value)
        log(", ".join(f"{n}={v:.4g}" for n, v in values))
