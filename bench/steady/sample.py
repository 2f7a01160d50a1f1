"""One window of the soak, read from a monitoring connection of its own:
our rows (what was offered, completed, waits, is overdue) and PostgreSQL's
statistics views (size, dead tuples, vacuum and analyze runs). Nothing is
read from the worker's memory.

Every count below is answered by one of the table's indexes
(`jobs_job_enqueued`, `jobs_job_status` on status + finished_at, the
partial `jobs_job_claim_by_key`), so sampling adds no sequential scan of its own.
"""

import os
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import psycopg

# A window ends this long before the sample is taken, so that finished jobs
# still waiting in a worker's acknowledgement batch are counted in it.
WINDOW_LAG = timedelta(seconds=1)
DONE = ["SUCCESSFUL", "CANCELLED"]  # pruned after JOB_CLEANUP_AGE
FINISHED = [*DONE, "FAILED"]  # FAILED: after JOB_FAILED_CLEANUP_AGE

WINDOW_SQL = """
SELECT
    (SELECT count(*) FROM jobs_job
     WHERE enqueued_at > %(t0)s AND enqueued_at <= %(t1)s),
    (SELECT count(*) FROM jobs_job
     WHERE status = ANY(%(finished)s) AND finished_at > %(t0)s
       AND finished_at <= %(t1)s),
    (SELECT count(*) FROM jobs_job WHERE status = 'READY' AND run_after <= now())
"""
# The wait of each job whose (latest) run started in the window: the start of
# that run minus the time it became due. For these no-ops, run once and never
# delayed, that is started_at - enqueued_at, counted from the stamp taken
# before the INSERT; and counted from when the producer's transaction had
# committed (`bench_commit`), as no worker can see a job before: a slow
# commit is the producer's wait, not the queue's.
PICKUP_SQL = """
SELECT count(*),
    percentile_disc(0.5) WITHIN GROUP (ORDER BY wait),
    percentile_disc(0.99) WITHIN GROUP (ORDER BY wait),
    percentile_disc(0.5) WITHIN GROUP (ORDER BY visible_wait),
    percentile_disc(0.99) WITHIN GROUP (ORDER BY visible_wait)
FROM (
    SELECT extract(epoch FROM last_attempted_at - run_after) * 1000 AS wait,
        extract(epoch FROM greatest(last_attempted_at - commit.committed_at,
            interval '0')) * 1000 AS visible_wait
    FROM jobs_job LEFT JOIN bench_commit AS commit ON commit.stamp = run_after
    WHERE (status = ANY(%(finished)s) AND finished_at > %(t0)s
           OR status = 'RUNNING')
      AND last_attempted_at > %(t0)s AND last_attempted_at <= %(t1)s
) AS started
"""
# Overdue: finished longer ago than retention + one maintenance interval
# (pruning had a full chance at them). Retained: still within retention.
RETENTION_SQL = """
SELECT
    (SELECT count(*) FROM jobs_job
     WHERE status = ANY(%(done)s) AND finished_at < now() - %(done_overdue)s)
    + (SELECT count(*) FROM jobs_job
       WHERE status = 'FAILED' AND finished_at < now() - %(failed_overdue)s),
    (SELECT count(*) FROM jobs_job
     WHERE status = ANY(%(done)s) AND finished_at >= now() - %(done_kept)s)
    + (SELECT count(*) FROM jobs_job
       WHERE status = 'FAILED' AND finished_at >= now() - %(failed_kept)s)
"""
STATS_SQL = """
SELECT pg_total_relation_size('jobs_job'), pg_indexes_size('jobs_job'),
    n_live_tup, n_dead_tup,
    vacuum_count + autovacuum_count, analyze_count + autoanalyze_count,
    seq_scan, seq_tup_read, coalesce(idx_scan, 0), n_tup_upd, n_tup_hot_upd,
    n_tup_del
FROM pg_stat_user_tables WHERE relname = 'jobs_job'
"""
STATS_FIELDS = (
    "total_bytes",
    "index_bytes",
    "live_tuples",
    "dead_tuples",
    "vacuums",
    "analyzes",
    "seq_scans",
    "seq_rows_read",
    "index_scans",
    "updates",
    "hot_updates",
    "deletes",
)
# How old (in transactions) the oldest snapshot any session holds is: what
# pins the vacuum horizon.
HORIZON_SQL = "SELECT max(age(backend_xmin)) FROM pg_stat_activity"


@dataclass
class Sample:
    """What one window looked like. Counts are jobs; times in ms."""

    elapsed: float  # seconds since the soak started, at the window's end
    seconds: float  # the window's length
    window_start: datetime
    window_end: datetime
    load_average: float
    offered: int  # enqueued in the window
    completed: int  # finished in the window
    backlog: int  # READY and due, when sampled
    started: int  # jobs whose run started in the window
    pickup_p50_ms: float | None
    pickup_p99_ms: float | None
    # The same, from when the enqueue had committed (`PICKUP_SQL`).
    visible_p50_ms: float | None
    visible_p99_ms: float | None
    overdue: int
    retained: int
    horizon_age: int | None
    sample_ms: float  # how long these reads took: the monitor's own cost
    total_bytes: int
    index_bytes: int
    live_tuples: int
    dead_tuples: int
    vacuums: int
    analyzes: int
    seq_scans: int
    seq_rows_read: int
    index_scans: int
    updates: int
    hot_updates: int
    deletes: int

    def as_json(self):
        return asdict(self)


@dataclass(frozen=True)
class Retention:
    """The retention rules the worker runs with, to tell overdue rows."""

    done_ms: int
    failed_ms: int
    maintenance_seconds: float

    def params(self):
        grace = timedelta(seconds=self.maintenance_seconds)
        done = timedelta(milliseconds=self.done_ms)
        failed = timedelta(milliseconds=self.failed_ms)
        return {
            "done": DONE,
            "done_kept": done,
            "failed_kept": failed,
            "done_overdue": done + grace,
            "failed_overdue": failed + grace,
        }


def retention_of(done_ms):
    """The worker's retention: `done_ms`, and the rest from the environment
    or `jobs.conf.DEFAULTS`, as the worker reads them."""
    from jobs.conf import DEFAULTS

    def setting(name):
        return type(DEFAULTS[name])(os.environ.get(name, DEFAULTS[name]))

    return Retention(
        done_ms,
        setting("JOB_FAILED_CLEANUP_AGE"),
        setting("JOB_MAINTENANCE_SECONDS"),
    )


class Monitor:
    """The soak's own connection, in autocommit: it holds no snapshot."""

    def __init__(self, url, retention):
        self.connection = psycopg.connect(url, autocommit=True)
        self.retention = retention.params()

    def close(self):
        self.connection.close()

    def now(self):
        """The database's clock, less the window lag: where a window ends."""
        return self._one("SELECT now() - %(lag)s", {"lag": WINDOW_LAG})[0]

    def any_jobs(self):
        """Whether the producer's first jobs are in."""
        return self._one("SELECT EXISTS (SELECT FROM jobs_job)")[0]

    def setting(self, name):
        """A server setting as the cluster runs with it (`SHOW`)."""
        return self._one(f"SHOW {name}")[0]

    def sample(self, t0, elapsed):
        """Read the window (t0, now - lag] and the table's state now."""
        began = time.perf_counter()
        t1 = self.now()
        window = {"t0": t0, "t1": t1, "finished": FINISHED}
        offered, completed, backlog = self._one(WINDOW_SQL, window)
        started, p50, p99, visible_p50, visible_p99 = self._one(PICKUP_SQL, window)
        overdue, retained = self._one(RETENTION_SQL, self.retention)
        stats = dict(zip(STATS_FIELDS, self._one(STATS_SQL), strict=True))
        return Sample(
            elapsed=elapsed,
            seconds=(t1 - t0).total_seconds(),
            window_start=t0,
            window_end=t1,
            load_average=os.getloadavg()[0],
            offered=offered,
            completed=completed,
            backlog=backlog,
            started=started,
            pickup_p50_ms=none_or_float(p50),
            pickup_p99_ms=none_or_float(p99),
            visible_p50_ms=none_or_float(visible_p50),
            visible_p99_ms=none_or_float(visible_p99),
            overdue=overdue,
            retained=retained,
            horizon_age=self._one(HORIZON_SQL)[0],
            sample_ms=(time.perf_counter() - began) * 1000,
            **stats,
        )

    def _one(self, sql, params=None):
        return self.connection.execute(sql, params).fetchone()


def none_or_float(value):
    return None if value is None else float(value)
