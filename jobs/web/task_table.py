"""The console's per-task table: for the last hour and the last day, each
task's runs, failures, failure rate, p50/p95/max duration and last failure.

A run is a job that finished SUCCESSFUL or FAILED in the window (cancelled
jobs are left out); its duration is its last attempt's, `finished_at -
last_attempted_at`. Both windows come from one grouped query over the day's
finished rows (the `jobs_job_status` index, status then `finished_at`), the
hour's numbers through `FILTER`. Percentiles: PostgreSQL's `percentile_cont`
in that query; SQLite has none, so there they are computed in Python from
the durations of the newest `SQLITE_SAMPLE` runs of the day, and the table
says so when the day held more. The table is kept in the cache for
JOB_TASK_TABLE_CACHE_SECONDS, so reloads and sorting do not repeat it.
"""

import math
from datetime import timedelta

from django.core.cache import cache
from django.db.models import Aggregate, Count, DurationField, F, Max, Q
from django.db.models.expressions import ExpressionWrapper
from django.utils import timezone

from .. import conf
from ..models import Job, JobStatus, on_postgresql

CACHE_KEY = "jobs:task-table"
RUN_STATUSES = (JobStatus.SUCCESSFUL, JobStatus.FAILED)
# Each window: its name in the table's column keys, and its length.
WINDOWS = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}
QUANTILES = {"p50": 0.5, "p95": 0.95}
# The numbers of each window, in the order of the table's columns.
MEASURES = ("runs", "failures", "rate", "p50", "p95", "max")
SQLITE_SAMPLE = 100_000


class PercentileCont(Aggregate):
    """PostgreSQL's continuous percentile of an ordered set (intervals too)."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    template += "%(filter)s"

    def __init__(self, expression, fraction, **extra):
        super().__init__(expression, fraction=float(fraction), **extra)


def duration():
    """The duration of a finished job's last attempt."""
    return ExpressionWrapper(
        F("finished_at") - F("last_attempted_at"), output_field=DurationField()
    )


def table(now=None):
    """Return the per-task rows, from the cache when it holds them."""
    seconds = conf.get("JOB_TASK_TABLE_CACHE_SECONDS")
    if seconds > 0 and (cached := cache.get(CACHE_KEY)) is not None:
        return cached
    computed = compute(now or timezone.now())
    if seconds > 0:
        cache.set(CACHE_KEY, computed, seconds)
    return computed


def compute(now):
    """Count and time each task's runs of the last hour and the last day."""
    since = {name: now - length for name, length in WINDOWS.items()}
    runs = Job.objects.filter(status__in=RUN_STATUSES, finished_at__gte=since["1d"])
    aggregates = {}
    for name, start in since.items():
        within = Q(finished_at__gte=start)
        failed = within & Q(status=JobStatus.FAILED)
        aggregates[f"runs_{name}"] = Count("pk", filter=within)
        aggregates[f"failures_{name}"] = Count("pk", filter=failed)
        aggregates[f"max_{name}"] = Max(duration(), filter=within)
        if on_postgresql():
            for key, fraction in QUANTILES.items():
                aggregates[f"{key}_{name}"] = PercentileCont(
                    duration(), fraction, filter=within, output_field=DurationField()
                )
    rows = list(runs.values("task_path").annotate(**aggregates).order_by())
    sampled = False if on_postgresql() else add_percentiles(rows, runs, since["1h"])
    errors = last_failures(since["1d"])
    for row in rows:
        for name in WINDOWS:
            failures, total = row[f"failures_{name}"], row[f"runs_{name}"]
            row[f"rate_{name}"] = failures / total if total else None
        row["last_failure"] = errors.get(row["task_path"])
        row["last_failure_at"] = (row["last_failure"] or {}).get("finished_at")
    return {"rows": rows, "generated_at": now, "sampled": sampled}


def add_percentiles(rows, runs, hour_ago):
    """Add p50 and p95 to `rows` from the newest runs' durations (SQLite);
    return whether the day held more runs than were read."""
    durations = {}
    newest = runs.order_by("-finished_at").values_list(
        "task_path", "finished_at", "last_attempted_at"
    )[: SQLITE_SAMPLE + 1]
    newest = list(newest)
    for task_path, finished_at, attempted_at in newest[:SQLITE_SAMPLE]:
        if attempted_at is None:
            continue
        lists = durations.setdefault(task_path, {"1h": [], "1d": []})
        lists["1d"].append(finished_at - attempted_at)
        if finished_at >= hour_ago:
            lists["1h"].append(finished_at - attempted_at)
    for row in rows:
        lists = durations.get(row["task_path"], {"1h": [], "1d": []})
        for name in WINDOWS:
            ordered = sorted(lists[name])
            for key, fraction in QUANTILES.items():
                row[f"{key}_{name}"] = percentile_cont(ordered, fraction)
    return len(newest) > SQLITE_SAMPLE


def percentile_cont(ordered, fraction):
    """Interpolate the `fraction` percentile of sorted values, as PostgreSQL's
    `percentile_cont` does; None for no values."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def last_failures(since):
    """Return, per task, its newest job that failed for good since `since`:
    {task_path: {"job_id", "exception", "message", "finished_at"}}."""
    newest = (
        Job.objects.filter(status=JobStatus.FAILED, finished_at__gte=since)
        .values("task_path")
        .annotate(latest=Max("finished_at"))
        .order_by()
    )
    match = Q()
    for row in newest:
        match |= Q(task_path=row["task_path"], finished_at=row["latest"])
    if not match:
        return {}
    failures = {}
    jobs = Job.objects.filter(match, status=JobStatus.FAILED).only(
        "id", "task_path", "errors", "finished_at"
    )
    for job in jobs.order_by("finished_at"):
        error = job.errors[-1] if job.errors else {}
        failures[job.task_path] = {
            "job_id": job.pk,
            "exception": error.get("exception_class_path", ""),
            "message": error.get("message", ""),
            "finished_at": job.finished_at,
        }
    return failures


def sort(rows, order):
    """Sort the rows by a column key (`runs_1h`, `-p95_1d`, `task_path`, ...);
    rows without a value come last either way. Return (rows, the key used)."""
    key = order.removeprefix("-")
    if key not in column_keys():
        key, order = "task_path", "task_path"
    present = [row for row in rows if row.get(key) is not None]
    absent = [row for row in rows if row.get(key) is None]
    present.sort(key=lambda row: row["task_path"])
    present.sort(key=lambda row: row[key], reverse=order.startswith("-"))
    return present + sorted(absent, key=lambda row: row["task_path"]), order


def column_keys():
    """Every sortable column's key."""
    keys = ["task_path"]
    keys += [f"{measure}_{name}" for name in WINDOWS for measure in MEASURES]
    return [*keys, "last_failure_at"]
