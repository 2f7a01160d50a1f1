"""The queue dashboard's numbers and its chart, computed on the server."""

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Count, F, Sum
from django.db.models.functions import TruncHour, TruncMinute
from django.utils import timezone

from ..models import (
    BUCKETS,
    Job,
    JobStatus,
    QueueDepth,
    QueuePause,
    WorkerProcess,
    bucket_filters,
)

# The chart's ranges: (length, the Trunc its query groups by, one bar),
# about 60 bars each; a 24-minute bar adds up 24 minutes of the query's.
RANGES = {
    "1h": (timedelta(hours=1), TruncMinute, timedelta(minutes=1)),
    "24h": (timedelta(hours=24), TruncMinute, timedelta(minutes=24)),
    "7d": (timedelta(days=7), TruncHour, timedelta(hours=3)),
}
DEFAULT_RANGE = "1h"
MAX_CHART_ROWS = 1_000_000  # finished rows one chart reads, at most
CHART_WIDTH, CHART_HEIGHT = 600, 160


def snapshot(now=None, range_name=DEFAULT_RANGE):
    """Return everything the dashboard shows, as of `now`, its chart over
    `range_name` (a key of RANGES; another: the default)."""
    now = now or timezone.now()
    range_name = range_name if range_name in RANGES else DEFAULT_RANGE
    queues = queue_rows(now)
    waiting = sum(queue["counts"][BUCKETS.index("waiting")] for queue in queues)
    return {
        "queues": queues,
        "buckets": list(BUCKETS),
        "workers": live_workers(now),
        "chart": chart(now, range_name, waiting),
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


def per_interval(now, span):
    """Count jobs completed and failed, and attempts retried, in each bar of
    the range `span`: one grouped query on `finished_at` (the status index),
    reading at most MAX_CHART_ROWS rows; older bars count none past them.

    Retried: the failed attempts before a job's last (`attempts` - 1),
    counted in the bar where the job finished.
    """
    length, trunc, bar = span
    start = trunc_to(now - length + bar, bar)
    count = round(length / bar)
    finished = Job.objects.filter(
        status__in=[JobStatus.SUCCESSFUL, JobStatus.FAILED], finished_at__gte=start
    )
    cutoff = row_bound(finished)
    if cutoff is not None:
        finished = finished.filter(finished_at__gte=cutoff)
    rows = (
        finished.annotate(moment=trunc("finished_at"))
        .values("moment", "status")
        .annotate(n=Count("pk"), retried=Sum(F("attempts") - 1))
        .order_by()
    )
    bars = [
        {"start": start + i * bar, "completed": 0, "failed": 0, "retried": 0}
        for i in range(count)
    ]
    for row in rows:
        index = int((row["moment"] - start) / bar)
        if not 0 <= index < count:
            continue
        key = "completed" if row["status"] == JobStatus.SUCCESSFUL else "failed"
        bars[index][key] += row["n"]
        bars[index]["retried"] += row["retried"] or 0
    return bars, cutoff


def trunc_to(moment, bar):
    """Round `moment` down to a whole multiple of `bar` since the epoch."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + (moment - epoch) // bar * bar


def row_bound(finished):
    """Return the finish time of the MAX_CHART_ROWS-th newest row, or None
    when the range holds fewer (the common case costs one walk of the index
    up to that many entries, no sort)."""
    beyond = finished.order_by().values_list("pk", flat=True)
    if not list(beyond[MAX_CHART_ROWS : MAX_CHART_ROWS + 1]):
        return None
    newest = finished.order_by("-finished_at").values_list("finished_at", flat=True)
    return newest[MAX_CHART_ROWS - 1]


def depth_per_interval(now, span):
    """The most jobs waiting in each bar of the range `span`, from the
    maintenance's samples (`maintenance.depth`, one a minute); None for a
    bar without one."""
    length, _, bar = span
    start = trunc_to(now - length + bar, bar)
    count = round(length / bar)
    depths = [None] * count
    samples = QueueDepth.objects.filter(minute__gte=start).values_list(
        "minute", "waiting"
    )
    for minute, waiting in samples:
        index = int((minute - start) / bar)
        if 0 <= index < count:
            depths[index] = max(depths[index] or 0, waiting)
    return depths


def depth_line(depths, slot):
    """The queue depth as SVG polyline points over the bars' centres, on a
    scale of its own (its peak at the top); bars without a sample are left
    out."""
    peak = max((d for d in depths if d is not None), default=0) or 1
    points = [
        f"{i * slot + slot / 2:.1f},{CHART_HEIGHT - d / peak * CHART_HEIGHT:.1f}"
        for i, d in enumerate(depths)
        if d is not None
    ]
    return " ".join(points), peak


def chart(now, range_name=DEFAULT_RANGE, waiting=0):
    """Lay out stacked bars (completed, failed, retried) per interval of the
    range, and the queue depth as a line, as SVG shapes."""
    bars, cutoff = per_interval(now, RANGES[range_name])
    depths = depth_per_interval(now, RANGES[range_name])
    totals = [b["completed"] + b["failed"] + b["retried"] for b in bars]
    peak = max(totals, default=0) or 1
    slot = CHART_WIDTH / len(bars)
    label = "%H:%M" if RANGES[range_name][2] < timedelta(hours=1) else "%a %H:%M"
    depth_points, depth_peak = depth_line(depths, slot)
    shapes = []
    for i, bar in enumerate(bars):
        bottom = CHART_HEIGHT
        segments = []
        for key in ("completed", "failed", "retried"):
            height = bar[key] / peak * CHART_HEIGHT
            bottom -= height
            segments.append({"key": key, "y": round(bottom, 1), "h": round(height, 1)})
        shapes.append(
            {
                "x": round(i * slot + 1, 1),
                "width": round(max(slot - 2, 1), 1),
                "segments": segments,
                "label": f"{bar['start']:{label}} UTC: {bar['completed']} completed,"
                f" {bar['failed']} failed, {bar['retried']} retried"
                + ("" if depths[i] is None else f", up to {depths[i]} waiting"),
            }
        )
    return {
        "bars": shapes,
        "peak": peak,
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "range": range_name,
        "ranges": list(RANGES),
        "bar_minutes": int(RANGES[range_name][2].total_seconds() // 60),
        "cutoff": cutoff,
        "max_rows": MAX_CHART_ROWS,
        "waiting": waiting,
        "depth_points": depth_points,
        "depth_peak": depth_peak,
        **{
            key: sum(b[key] for b in bars) for key in ("completed", "failed", "retried")
        },
    }
