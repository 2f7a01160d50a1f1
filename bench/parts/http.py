"""HTTP: `/health` and the admin job list through Django's test client as a
superuser, on a database of `--health-rows` finished jobs.
"""

import time

from ..client import ADMIN_LIST
from ..log import log
from ..report import at_most, percentile
from ..systems import Ours
from .base import Part

PAGES = ("health", "health_uncached", *ADMIN_LIST)
FIGURES = [f"http.{page}.{q}" for page in PAGES for q in ("p50", "p99")]
P99_TARGETS = {"health": 50, "health_uncached": 50} | dict.fromkeys(ADMIN_LIST, 300)

# `--health-rows` finished jobs, 50 ms apart up to now, 1% of them failed and
# one in 10,000 of a rarer task, in one statement. Column list as in
# jobs/migrations/0001_initial.py.
FILL_SQL = """
INSERT INTO jobs_job (
    id, task_path, queue_name, priority, status, args, kwargs, return_value,
    errors, worker_ids, attempts, max_attempts, enqueued_at, run_after,
    started_at, last_attempted_at, finished_at, progress, progress_message,
    lease_token, lease_expires_at, cancel_requested)
SELECT gen_random_uuid(),
    CASE WHEN i %% 10000 = 7 THEN 'bench.djtasks.rare' ELSE 'bench.djtasks.noop' END,
    'default', 0,
    CASE WHEN i %% 100 = 0 THEN 'FAILED' ELSE 'SUCCESSFUL' END,
    '[]', '{}', NULL,
    CASE WHEN i %% 100 = 0 THEN '[{"exception_class_path": "builtins.ValueError",
        "message": "bench", "traceback": "ValueError: bench\\n", "attempt": 3,
        "worker_id": "bench:1:abcdef", "failed_at": "2026-01-01T00:00:00+00:00"}]'
        ELSE '[]' END::jsonb,
    '["bench:1:abcdef"]', 1, 3, t, t, t + interval '1 ms', t + interval '1 ms',
    t + interval '2 ms', NULL, '', '', NULL, false
FROM (
    SELECT i, now() - i * interval '50 ms' AS t
    FROM generate_series(1, %(rows)s) AS i
) AS s
"""


class Http(Part):
    """Time our pages in-process on a database full of finished jobs."""

    name = "http"

    def define(self):
        for page in PAGES:
            self.report.define(f"http.{page}.p50", "ms")
            p99 = at_most(P99_TARGETS[page])
            self.report.define(f"http.{page}.p99", "ms", targets=[p99])

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
