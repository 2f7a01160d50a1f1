"""/metrics: the job system in the Prometheus text format, for scrapers.

Everything is read from the database at scrape time, so every web process
answers the same whatever worker did the work: gauges from cheap counts of
the live rows (exact up to JOB_HEALTH_EXACT_COUNT, then the planner's
estimate, as /health counts), counters and the duration histogram from the
running totals the maintenance keeps (`maintenance.tally`), never from the
finished rows themselves. The text is written by `prometheus_client`.
"""

import hmac

from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import choose_encoder

from .. import conf
from ..models import (
    DURATION_BUCKETS,
    OUTCOMES,
    TALLY_MARK,
    Job,
    QueuePause,
    TallyMark,
    TaskTally,
    WorkerProcess,
    bucket_filters,
)
from ..notify import link

# The gauges of each queue: the bucket of `models.bucket_filters` each counts.
QUEUE_GAUGES = {
    "waiting": ("jobs_waiting", "Jobs READY and due, not started yet."),
    "delayed": ("jobs_delayed", "Jobs READY with a run time in the future."),
    "active": ("jobs_running", "Jobs RUNNING now."),
}
OUTCOME_HELP = {
    "succeeded": "Jobs that ended SUCCESSFUL.",
    "failed": "Jobs that ended FAILED (out of attempts, or permanently).",
    "cancelled": "Jobs that ended CANCELLED.",
    "retried": "Failed attempts that were run again (counted when the job ends).",
    "rescued": "Attempts lost with their worker (counted when the job ends).",
}
WORKER_KINDS = {
    WorkerProcess.Kind.DATABASE: "jobworker",
    WorkerProcess.Kind.RQ: "rqworker",
}


class JobsCollector:
    """Collect the job system's metrics from the database at each scrape."""

    def collect(self):
        now = timezone.now()
        workers = list(WorkerProcess.objects.alive(now).values("kind", "queues"))
        tallies = list(TaskTally.objects.order_by("task_path", "queue_name"))
        paused = set(QueuePause.objects.values_list("queue_name", flat=True))
        yield from queue_metrics(now, queue_names(workers, tallies, paused), paused)
        yield from worker_metrics(workers)
        yield from tally_metrics(tallies)
        yield from maintenance_metrics()
        if conf.redis_enabled():
            up = GaugeMetricFamily("jobs_redis_up", "Redis answered a PING (1) or not.")
            up.add_metric([], 1 if redis_answers() else 0)
            yield up


def queue_names(workers, tallies, paused):
    """The queues shown: configured, paused, listened to, or with totals."""
    return sorted(
        {
            *getattr(settings, "JOB_QUEUES", ["default"]),
            *paused,
            *(name for worker in workers for name in worker["queues"]),
            *(tally.queue_name for tally in tallies),
        }
    )


def queue_metrics(now, names, paused):
    exact = conf.get("JOB_HEALTH_EXACT_COUNT")
    filters = bucket_filters(now)
    gauges = {
        bucket: GaugeMetricFamily(name, text, labels=["queue"])
        for bucket, (name, text) in QUEUE_GAUGES.items()
    }
    oldest = GaugeMetricFamily(
        "jobs_oldest_waiting_seconds",
        "Age of the longest-waiting due job (0: none waits).",
        labels=["queue"],
    )
    is_paused = GaugeMetricFamily(
        "jobs_queue_paused", "The queue is paused (1) or not.", labels=["queue"]
    )
    for name in names:
        jobs = Job.objects.filter(queue_name=name)
        for bucket, gauge in gauges.items():
            count, _ = jobs.filter(filters[bucket]).count_or_estimate(exact)
            gauge.add_metric([name], count)
        due_at = jobs.oldest_due_at(now)
        oldest.add_metric([name], (now - due_at).total_seconds() if due_at else 0)
        is_paused.add_metric([name], 1 if name in paused else 0)
    yield from (*gauges.values(), oldest, is_paused)


def worker_metrics(workers):
    by_kind = GaugeMetricFamily(
        "jobs_workers_alive", "Worker processes heartbeating.", labels=["kind"]
    )
    for kind, name in WORKER_KINDS.items():
        by_kind.add_metric([name], sum(1 for w in workers if w["kind"] == kind))
    by_queue = GaugeMetricFamily(
        "jobs_queue_workers_alive",
        "Worker processes heartbeating that take jobs of the queue.",
        labels=["queue"],
    )
    listened = sorted({name for worker in workers for name in worker["queues"]})
    for name in listened:
        by_queue.add_metric([name], sum(1 for w in workers if name in w["queues"]))
    yield from (by_kind, by_queue)


def tally_metrics(tallies):
    labels = ["task", "queue"]
    counters = {
        outcome: CounterMetricFamily(f"jobs_{outcome}", text, labels=labels)
        for outcome, text in OUTCOME_HELP.items()
    }
    durations = HistogramMetricFamily(
        "jobs_run_duration_seconds",
        "Run time of a job's final attempt, from its start to its finish.",
        labels=labels,
    )
    bounds = [str(float(bound)) for bound in DURATION_BUCKETS]
    for tally in tallies:
        values = [tally.task_path, tally.queue_name]
        for outcome in OUTCOMES:
            counters[outcome].add_metric(values, getattr(tally, outcome))
        buckets = [
            *zip(bounds, tally.duration_buckets, strict=True),
            ("+Inf", tally.duration_count),
        ]
        durations.add_metric(values, buckets, sum_value=tally.duration_sum)
    yield from (*counters.values(), durations)


def maintenance_metrics():
    mark = TallyMark.objects.filter(name=TALLY_MARK).first()
    if mark is None:
        return
    ran = GaugeMetricFamily(
        "jobs_maintenance_last_run_timestamp_seconds",
        "When the maintenance last counted finished jobs (Unix time).",
    )
    ran.add_metric([], mark.counted_at.timestamp())
    counted = GaugeMetricFamily(
        "jobs_counted_to_timestamp_seconds",
        "The counters hold every job finished up to this time (Unix time).",
    )
    counted.add_metric([], mark.counted_to.timestamp())
    yield from (ran, counted)


def redis_answers():
    """Say whether Redis answers now; not at all while the link rests after
    a failure (a scrape never waits for a Redis that is down)."""
    redis = link.redis_link()
    if redis.resting():
        return False
    try:
        return bool(redis.client.ping())
    except Exception:  # any error: not reachable, and never a secret in output
        return False


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(JobsCollector())


@require_GET
@never_cache
def metrics(request):
    """Answer a scrape, or refuse it saying nothing (`refusal`)."""
    refused = refusal(request)
    if refused is not None:
        return refused
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(REGISTRY), content_type=content_type)


def refusal(request):
    """Return the empty response refusing `request`, or None to let it in.

    A staff session is let in. Otherwise /metrics does not exist (404) until
    JOB_METRICS_TOKEN is set; then the request must carry it as a bearer
    token, compared in constant time: none is a 401, a wrong one a 403.
    """
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return None
    token = conf.get("JOB_METRICS_TOKEN")
    if not token:
        return HttpResponse(status=404)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return HttpResponse(status=401, headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return HttpResponse(status=403)
    return None
