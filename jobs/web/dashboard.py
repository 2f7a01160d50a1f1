"""The queue dashboard's numbers and its chart, computed on the server."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Count
from django.db.models.functions import TruncMinute
from django.utils import timezone

from ..models import BUCKETS, Job, JobStatus, QueuePause, WorkerProcess, bucket_filters

CHART_MINUTES = 60
CHART_WIDTH, CHART_HEIGHT = 600, 160


def snapshot(now=None):
    """Return everything the dashboard shows, as of `now`."""
    now = now or timezone.now()
    return {
        "queues": queue_rows(now),
        "buckets": list(BUCKETS),
        "workers": live_workers(now),
        "chart": chart(now),
        "generated_at": now,
    }


def queue_rows(now):
    """Count jobs per queue and bucket, and say which are paused; configured
    and paused queues show even when empty."""
    counts = {
        row["queue_name"]: row
        for row in Job.objects.values("queue_name")
        .annotate(
            **{
                name: Count("pk", filter=condition)
                for name, condition in bucket_filters(now).items()
            }
        )
        .order_by()
    }
    paused = {pause.queue_name: pause for pause in QueuePause.objects.all()}
    names = sorted({*getattr(settings, "JOB_QUEUES", ["default"]), *counts, *paused})
    empty = dict.fromkeys(BUCKETS, 0)
    return [
        {
            "name": name,
            "counts": [counts.get(name, empty)[b] for b in BUCKETS],
            "paused": paused.get(name),
        }
        for name in names
    ]


def live_workers(now):
    """Return the live workers, each with the jobs it runs now."""
    running = {}
    for job in Job.objects.filter(status=JobStatus.RUNNING).only(
        "id", "task_path", "worker_ids", "progress"
    ):
        if job.worker_ids:
            running.setdefault(job.worker_ids[-1], []).append(job)
    workers = list(WorkerProcess.objects.alive(now).order_by("hostname", "pid"))
    for worker in workers:
        worker.current_jobs = running.get(worker.id, [])
        worker.beat_age = (now - worker.last_heartbeat_at).total_seconds()
    return workers


def per_minute(now):
    """Count jobs completed and failed in each of the last CHART_MINUTES."""
    start = (now - timedelta(minutes=CHART_MINUTES - 1)).replace(
        second=0, microsecond=0
    )
    rows = (
        Job.objects.filter(
            status__in=[JobStatus.SUCCESSFUL, JobStatus.FAILED],
            finished_at__gte=start,
        )
        .annotate(minute=TruncMinute("finished_at"))
        .values("minute", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    minutes = [start + timedelta(minutes=i) for i in range(CHART_MINUTES)]
    counts = {m: {"completed": 0, "failed": 0} for m in minutes}
    for row in rows:
        key = "completed" if row["status"] == JobStatus.SUCCESSFUL else "failed"
        if row["minute"] in counts:
            counts[row["minute"]][key] += row["n"]
    return [(m, counts[m]["completed"], counts[m]["failed"]) for m in minutes]


def chart(now):
    """Lay out stacked bars (completed below failed) per minute, as SVG shapes."""
    minutes = per_minute(now)
    peak = max((done + failed for _, done, failed in minutes), default=0) or 1
    slot = CHART_WIDTH / CHART_MINUTES
    bars = []
    for i, (minute, done, failed) in enumerate(minutes):
        done_h = done / peak * CHART_HEIGHT
        failed_h = failed / peak * CHART_HEIGHT
        bars.append(
            {
                "x": round(i * slot + 1, 1),
                "width": round(slot - 2, 1),
                "done_y": round(CHART_HEIGHT - done_h, 1),
                "done_h": round(done_h, 1),
                "failed_y": round(CHART_HEIGHT - done_h - failed_h, 1),
                "failed_h": round(failed_h, 1),
                "label": f"{minute:%H:%M} UTC: {done} completed, {failed} failed",
            }
        )
    return {
        "bars": bars,
        "peak": peak,
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "completed": sum(done for _, done, _ in minutes),
        "failed": sum(failed for _, _, failed in minutes),
    }
