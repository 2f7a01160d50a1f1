"""Job settings with their defaults, read when used (never at import time)."""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULTS = {
    "JOB_CONCURRENCY": 5,
    "JOB_MAX_ATTEMPTS": 3,
    "JOB_BACKOFF_BASE_SECONDS": 1.0,
    "JOB_BACKOFF_MAX_SECONDS": 3600.0,
    "JOB_LEASE_SECONDS": 60.0,
    # A run still going this long after its timeout is ended by the worker
    # itself (the hard limit): recorded as timed out, its thread abandoned.
    "JOB_TIMEOUT_GRACE_SECONDS": 5.0,
    "JOB_POLL_SECONDS": 1.0,
    "JOB_PREFETCH": 200,  # most jobs a database worker claims beyond its free threads
    # A job claimed ahead (a database worker's, or in a forking rqworker's batch)
    # that did not start for this long goes back.
    "JOB_PREFETCH_HOLD_SECONDS": 1.0,
    "JOB_ACK_BATCH": 50,  # finished jobs recorded in one statement
    "JOB_ACK_SECONDS": 0.005,  # longest a finished job waits to be recorded
    "JOB_MAINTENANCE_SECONDS": 10.0,
    # PostgreSQL: the maintenance leader vacuums the job table once its dead
    # rows pass this many plus a tenth of its live rows (0: leave it to
    # autovacuum).
    "JOB_VACUUM_DEAD_ROWS": 20_000,
    # A schedule with `catch_up: False` skips a time not enqueued this soon.
    "JOB_SCHEDULE_GRACE_SECONDS": 60.0,
    "JOB_REDISPATCH_GRACE_SECONDS": 15.0,
    "JOB_REDIS_RETRY_SECONDS": 5.0,
    # Push to RQ from a thread after commit, not in the committing thread.
    "JOB_REDIS_PUSH_IN_BACKGROUND": True,
    # PostgreSQL: NOTIFY enqueued jobs from a thread after commit, not in the
    # committing thread.
    "JOB_NOTIFY_IN_BACKGROUND": True,
    # Prepare the hot statements on PostgreSQL: "auto" where they are safe (a
    # direct connection, or a pooler that renames them per client), "1"
    # always (an error where they are not safe), "0" never.
    "JOB_PREPARED_STATEMENTS": "auto",
    # A direct PostgreSQL URL for LISTEN only, when DATABASE_URL goes through
    # a pooler in transaction mode ("": LISTEN on DATABASE_URL).
    "JOB_LISTEN_DATABASE_URL": "",
    # Most due jobs one RQ job carries (one fork and RQ's bookkeeping each).
    "JOB_RQ_BATCH": 50,
    # RQ jobs a forking rqworker's work horse runs before a new one replaces
    # it (1: a new horse for every RQ job).
    "JOB_HORSE_MAX_JOBS": 1000,
    "JOB_RQ_RESULT_TTL": 60,  # seconds RQ keeps a finished RQ job (not the row)
    "JOB_CLEANUP_AGE": 86_400_000,  # ms: finished jobs are pruned after a day
    "JOB_FAILED_CLEANUP_AGE": 604_800_000,  # ms: failed jobs are kept a week
    "JOB_QUEUE_ENABLED": True,
    "JOB_HEALTH_MAX_WAITING": 1000,
    "JOB_HEALTH_MAX_WAIT_SECONDS": 300.0,
    "JOB_HEALTH_MAX_FAILURE_RATE": 0.2,
    "JOB_HEALTH_FAILURE_WINDOW_SECONDS": 900.0,
    "JOB_HEALTH_MIN_FAILURE_SAMPLE": 20,
    "JOB_HEALTH_CACHE_SECONDS": 5.0,
    "JOB_TASK_TABLE_CACHE_SECONDS": 30.0,  # the console's per-task table
    "JOB_HEALTH_EXACT_COUNT": 10_000,  # finished rows counted exactly, per status
    # /metrics: off (404) while empty; else `Authorization: Bearer <token>`.
    "JOB_METRICS_TOKEN": "",
    # The tally counts rows finished this long before the database's clock,
    # so a recording still being committed is counted on the next turn.
    "JOB_METRICS_LAG_SECONDS": 5.0,
    # The console's retry or cancel of every matching job: jobs per batch (one
    # short transaction each), and the most it does in the request itself;
    # more are done by a job in the background (`jobs.web.bulk`).
    "JOB_BULK_BATCH": 1000,
    "JOB_BULK_INLINE_MAX": 1000,
}


def get(name):
    """Return the setting `name`, or its default."""
    return getattr(settings, name, DEFAULTS[name])


def redis_enabled():
    """Say whether REDIS_URL is set. Only then are jobs pushed to RQ, and only
    then does a worker load Redis's and RQ's modules."""
    return bool(settings.REDIS_URL)


def prepared_statements():
    """Return JOB_PREPARED_STATEMENTS as "auto", True or False."""
    value = get("JOB_PREPARED_STATEMENTS")
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"", "auto"}:
        return "auto"
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(
        f"JOB_PREPARED_STATEMENTS must be auto, 1 or 0, not {value!r}."
    )


# RQ has no numeric priority: each of our queues has three RQ queues, and our
# workers listen to them in this order, so a higher band always goes first.
BAND_SUFFIXES = (".high", "", ".low")


def rq_queue_names(queue_name):
    """Return the RQ queues of one of our queues, highest band first."""
    return [f"{queue_name}{suffix}" for suffix in BAND_SUFFIXES]


def rq_queues(redis_url, queue_names):
    """Return django-rq's RQ_QUEUES for our queues: three bands each, their
    jobs JSON (never pickle), as `notify.rq_push` pushes them."""
    return {
        name: {"URL": redis_url, "SERIALIZER": "rq.serializers.JSONSerializer"}
        for queue_name in queue_names
        for name in rq_queue_names(queue_name)
    }


def check_database(using="default"):
    """Connect to the database now, or raise SystemExit saying it is unreachable.

    Workers call this at start: a worker without its database can do nothing,
    so it exits non-zero with a clear message (no URL, no password).
    """
    from django.db import DatabaseError, connections

    try:
        connections[using].ensure_connection()
    except DatabaseError as e:
        vendor = connections[using].vendor
        raise SystemExit(
            f"The {vendor} database is unreachable ({type(e).__name__}); "
            "check DATABASE_URL and that the database is up."
        ) from None
