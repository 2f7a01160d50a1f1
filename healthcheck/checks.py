"""Our django-health-check checks: the database, Redis and the job queue.

Each check is a django-health-check 4.x dataclass whose `run()` raises
ServiceUnavailable (the part is down) or ServiceWarning (it works, but worse
than it should). Besides pass or fail, which the stock views and
`manage.py health_check` show, a check leaves a `message` and `details` on
itself for the /health JSON. Messages are fixed sentences that name at most an
exception class: never a URL, a password or a traceback.
"""

import dataclasses
from datetime import timedelta
from typing import ClassVar

from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import DatabaseError, connections
from django.db.models import Count, Q
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from django.utils import timezone
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable, ServiceWarning

from jobs import conf
from jobs.models import BUCKETS, Job, QueuePause, WorkerProcess
from jobs.notify import link

CACHE_KEY = "healthcheck:queue-snapshot"


@dataclasses.dataclass
class Check(HealthCheck):
    """A check that also leaves a message and details for /health."""

    name: ClassVar[str]
    # True: this part failing makes the whole service unhealthy (HTTP 503).
    critical: ClassVar[bool] = False

    message: str = dataclasses.field(default="", init=False, repr=False)
    details: dict | None = dataclasses.field(default=None, init=False, repr=False)


@dataclasses.dataclass
class Database(Check):
    """Check that the database answers a query; nothing works without it."""

    name: ClassVar[str] = "database"
    critical: ClassVar[bool] = True
    alias: str = "default"

    async def run(self):
        # In the request's thread, on the request's connection.
        await sync_to_async(self.ping)()

    def ping(self):
        try:
            with connections[self.alias].cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except DatabaseError as e:
            raise ServiceUnavailable(
                f"The database did not answer ({type(e).__name__})."
            ) from e
        self.message = "The database answered."


@dataclasses.dataclass
class Redis(Check):
    """Check that Redis answers when `REDIS_URL` is set; jobs never need it."""

    name: ClassVar[str] = "redis"

    def run(self):
        if not conf.redis_enabled():
            self.message = "Redis is not configured (REDIS_URL is unset)."
            self.details = {"configured": False}
            return
        self.details = {"configured": True}
        try:
            link.redis_link().client.ping()
        except Exception as e:  # a Redis error or a malformed URL: never fatal
            raise ServiceWarning(
                f"Redis did not answer ({type(e).__name__}); jobs run on the "
                "database queue until it is back."
            ) from e
        self.message = "Redis answered."


@dataclasses.dataclass
class Queue(Check):
    """Report the job queue's counts; warn when it falls behind or fails."""

    name: ClassVar[str] = "queue"

    async def run(self):
        await sync_to_async(self.measure)()

    def measure(self):
        backend = "redis" if conf.redis_enabled() else "database"
        enabled = conf.get("JOB_QUEUE_ENABLED")
        self.details = {"enabled": enabled, "backend": backend}
        if not enabled:
            self.details.update(dict.fromkeys(BUCKETS, 0), workers=0)
            self.message = "Background jobs are disabled (JOB_QUEUE_ENABLED is off)."
            return
        load_backend()
        try:
            snapshot = queue_snapshot()
        except DatabaseError as e:
            raise ServiceUnavailable(
                f"Queue statistics are unavailable ({type(e).__name__})."
            ) from e
        self.details.update(snapshot)
        if reasons := degraded_reasons(snapshot):
            self.message = f"Queue degraded: {'; '.join(reasons)}."
            raise ServiceWarning(self.message)
        self.message = (
            HEALTHY_MESSAGES[backend] + polling_note(snapshot) + paused_note(snapshot)
        )


HEALTHY_MESSAGES = {
    "redis": "Jobs are stored in the database and pushed to Redis for rqworker.",
    "database": "Jobs run on the database queue (jobworker); Redis is not used.",
}


def polling_note(snapshot):
    """Say that workers poll because NOTIFY does not reach them. Jobs still
    run, only up to `JOB_POLL_SECONDS` later: a detail, not a degradation."""
    polling = snapshot["workers_polling"]
    if not polling:
        return ""
    return (
        f" {polling} of {snapshot['workers']} workers poll every "
        f"{conf.get('JOB_POLL_SECONDS'):g} s: notifications do not reach them "
        "(behind a pooler in transaction mode, set JOB_LISTEN_DATABASE_URL)."
    )


def paused_note(snapshot):
    """Name the paused queues. A pause is an operator's choice, not a
    degradation: their jobs wait for the resume."""
    paused = snapshot["paused"]
    if not paused:
        return ""
    return (
        f" Paused queues: {', '.join(paused)} ({snapshot['paused_waiting']} "
        "waiting jobs held until resumed)."
    )


def load_backend():
    """Load the task backend, or warn that the job system failed to start."""
    try:
        task_backends[DEFAULT_TASK_BACKEND_ALIAS]  # noqa: B018 (loads it)
    except Exception as e:
        raise ServiceWarning(
            f"The job system failed to initialise ({type(e).__name__}); see the log."
        ) from e


def queue_snapshot():
    """Return the queue's numbers, reused for `JOB_HEALTH_CACHE_SECONDS`."""
    seconds = conf.get("JOB_HEALTH_CACHE_SECONDS")
    if seconds > 0 and (snapshot := cache.get(CACHE_KEY)) is not None:
        return {**snapshot, "cached": True}
    snapshot = measure_queue()
    if seconds > 0:
        cache.set(CACHE_KEY, snapshot, seconds)
    return {**snapshot, "cached": False}


def measure_queue():
    """Count the queue now: every number comes from an index-backed query."""
    now = timezone.now()
    window = conf.get("JOB_HEALTH_FAILURE_WINDOW_SECONDS")
    recent = Job.objects.outcomes_since(now - timedelta(seconds=window))
    paused = sorted(QueuePause.objects.values_list("queue_name", flat=True))
    # The rules for waiting jobs leave out those of paused queues.
    oldest = Job.objects.exclude(queue_name__in=paused).oldest_due_at(now)
    held = Job.objects.due(now).filter(queue_name__in=paused).count() if paused else 0
    workers = WorkerProcess.objects.alive(now).aggregate(
        workers=Count("pk"), workers_polling=Count("pk", filter=Q(hears_notify=False))
    )
    return {
        **Job.objects.stats(now, exact_up_to=conf.get("JOB_HEALTH_EXACT_COUNT")),
        **workers,
        "paused": paused,
        "paused_waiting": held,
        "oldest_wait_seconds": round((now - oldest).total_seconds(), 1)
        if oldest
        else 0,
        "recent": {**recent, "window_seconds": window},
        "failure_rate": failure_rate(recent),
        "measured_at": now.isoformat(),
    }


def failure_rate(recent):
    """Return the share of recent outcomes that failed, None below the sample."""
    total = recent["completed"] + recent["failed"]
    if total < max(conf.get("JOB_HEALTH_MIN_FAILURE_SAMPLE"), 1):
        return None
    return round(recent["failed"] / total, 3)


def degraded_reasons(snapshot):
    """Say why the queue is degraded; an empty list means it is not."""
    max_waiting = conf.get("JOB_HEALTH_MAX_WAITING")
    max_wait = conf.get("JOB_HEALTH_MAX_WAIT_SECONDS")
    max_rate = conf.get("JOB_HEALTH_MAX_FAILURE_RATE")
    rate = snapshot["failure_rate"]
    waiting = snapshot["waiting"] - snapshot["paused_waiting"]  # not paused
    reasons = []
    if waiting > max_waiting:
        reasons.append(f"{waiting} jobs waiting (limit {max_waiting})")
    if snapshot["oldest_wait_seconds"] > max_wait:
        reasons.append(
            f"the oldest waiting job has waited {snapshot['oldest_wait_seconds']:g} s"
            f" (limit {max_wait:g} s)"
        )
    if rate is not None and rate > max_rate:
        window = snapshot["recent"]["window_seconds"]
        reasons.append(
            f"{rate:.0%} of jobs failed in the last {window:g} s (limit {max_rate:.0%})"
        )
    if waiting and not snapshot["workers"]:
        reasons.append(
            "jobs are waiting but no worker has sent a heartbeat in the last "
            f"{conf.get('JOB_LEASE_SECONDS'):g} s"
        )
    return reasons


# The checks /health, the stock view and `manage.py health_check` run.
CHECKS = (Database, Redis, Queue)
