"""Pausing and resuming queues.

A paused queue keeps accepting jobs; workers of both kinds start none of
them until it is resumed, and its running jobs finish. The pause is a row
(`QueuePause`), which the claim statements test (`hot_path`), so it holds
across restarts and hosts. On PostgreSQL a pause waits for the claims in
flight to end: once `pause` returns, no job of the queue starts.
"""

import logging
from itertools import batched

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Count
from django.utils import timezone

from ..conf import BAND_SUFFIXES, redis_enabled
from ..exceptions import UnknownQueue
from ..expressions import DatabaseNow
from ..models import Job, QueuePause, on_postgresql
from ..notify.listen import notify

logger = logging.getLogger("jobs")

# Longest a pause waits for claims in flight; claims that start meanwhile
# wait for it, so it must stay short.
PAUSE_LOCK_TIMEOUT = "2s"


def pause(queue_name, by=""):
    """Pause `queue_name`; return (its pause, whether this call paused it).

    `by` says who paused it. Pausing a paused queue changes nothing.
    """
    check_known(queue_name)
    with transaction.atomic(using=QueuePause.objects.db):
        wait_for_claims_in_flight()
        created = not QueuePause.objects.filter(pk=queue_name).exists()
        if created:
            QueuePause.objects.create(
                queue_name=queue_name, paused_at=DatabaseNow(), paused_by=by[:150]
            )
    if created:
        logger.warning("queue %s paused by %s", queue_name, by or "someone")
    return QueuePause.objects.get(pk=queue_name), created


def wait_for_claims_in_flight():
    """On PostgreSQL, lock the pause table until this transaction ends.

    Every claim reads the table, so the lock waits for the claims that
    started before (which may have missed the pause), and claims that start
    after it wait for the commit and then see the pause.
    """
    if not on_postgresql():
        return  # SQLite: one writer at a time, the claim's UPDATE tests it
    with connections[QueuePause.objects.db].cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{PAUSE_LOCK_TIMEOUT}'")
        cursor.execute(
            f"LOCK TABLE {QueuePause._meta.db_table} IN ACCESS EXCLUSIVE MODE"
        )


def resume(queue_name):
    """Resume `queue_name`; return whether it was paused.

    Its due jobs are announced again: NOTIFY wakes the database workers, and
    with Redis the jobs whose RQ job ended while paused are pushed again.
    """
    deleted, _ = QueuePause.objects.filter(pk=queue_name).delete()
    if not deleted:
        check_known(queue_name)
        return False
    logger.warning("queue %s resumed", queue_name)
    ring_waiting(queue_name)
    return True


def ring_waiting(queue_name, page_size=1000):
    """Tell workers that the due jobs of `queue_name` wait, highest first."""
    if on_postgresql():
        notify({queue_name}, Job.objects.db)
    if not redis_enabled():
        return
    import redis  # Redis's modules load only with REDIS_URL

    from ..notify import rq_push

    due = Job.objects.due(timezone.now()).filter(queue_name=queue_name)
    rows = due.order_by("-priority", "run_after").iterator(chunk_size=page_size)
    try:
        for page in batched(rows, page_size, strict=False):
            rq_push.push(rq_push.missing_from_redis(list(page)))
    except redis.RedisError as e:
        logger.warning(
            "could not push the jobs of queue %s to Redis (%s); the re-dispatcher will",
            queue_name,
            type(e).__name__,
        )


def paused_queues():
    """Return {queue name: its pause}."""
    return {pause.queue_name: pause for pause in QueuePause.objects.all()}


def configured_queues():
    """Return the queues settings name: JOB_QUEUES and those of RQ_QUEUES."""
    names = set(getattr(settings, "JOB_QUEUES", ["default"]))
    for rq_name in getattr(settings, "RQ_QUEUES", {}):
        names.add(base_queue(rq_name))
    return names


def base_queue(rq_name):
    """Return our queue of an RQ queue (`default.high` -> `default`)."""
    for suffix in BAND_SUFFIXES:
        if suffix and rq_name.endswith(suffix):
            return rq_name.removesuffix(suffix)
    return rq_name


def overview():
    """Return each queue present (configured, with waiting or delayed jobs,
    or paused) as (name, its pause or None, its waiting jobs), by name."""
    waiting = dict(
        Job.objects.due(timezone.now())
        .values_list("queue_name")
        .annotate(n=Count("pk"))
        .order_by()
    )
    with_jobs = set(Job.objects.ready().values_list("queue_name", flat=True).distinct())
    paused = paused_queues()
    names = sorted(configured_queues() | with_jobs | set(paused))
    return [(name, paused.get(name), waiting.get(name, 0)) for name in names]


def check_known(queue_name):
    """Raise UnknownQueue unless `queue_name` is configured or has jobs waiting."""
    if not isinstance(queue_name, str) or not 0 < len(queue_name) <= 64:
        raise UnknownQueue(f"{queue_name!r} is not a queue name (1 to 64 characters).")
    if queue_name in configured_queues():
        return
    if Job.objects.ready().filter(queue_name=queue_name).exists():
        return
    known = ", ".join(sorted(configured_queues()))
    raise UnknownQueue(
        f"Unknown queue {queue_name!r}: it is not configured (JOB_QUEUES: {known}) "
        "and has no waiting jobs."
    )
