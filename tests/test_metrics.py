"""/metrics: what each metric says, who may read it, and that its counters
stay right with many workers, two maintainers and pruning."""

import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from jobs.core import interventions, pausing
from jobs.maintenance import prune as pruning
from jobs.maintenance import tally
from jobs.models import (
    DURATION_BUCKETS,
    Job,
    JobStatus,
    TallyMark,
    TaskTally,
    WorkerProcess,
)
from tests.testapp import tasks

from .helpers import make_job, make_worker, sessions_waiting_for_a_lock, wait_for

TOKEN = "s3cret-metrics-token"
AUTH = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
RECORD_RUN = "tests.testapp.tasks.record_run"


@pytest.fixture
def token(settings):
    settings.JOB_METRICS_TOKEN = TOKEN
    settings.JOB_METRICS_LAG_SECONDS = 0.0


def scrape(client):
    """GET /metrics with the token; return {(name, labels): value}."""
    response = client.get("/metrics", **AUTH)
    assert response.status_code == 200, response.status_code
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def of_task(task_path, queue="default", **more):
    return tuple(sorted({"task": task_path, "queue": queue, **more}.items()))


def finished_now(status=JobStatus.SUCCESSFUL, **fields):
    now = timezone.now()
    started = {"last_attempted_at": now - timedelta(seconds=0.02)}
    return make_job(status=status, finished_at=now, **{**started, **fields})


# Access


@pytest.mark.django_db
def test_metrics__off_without_a_token(client):
    response = client.get("/metrics")
    assert response.status_code == 404


@pytest.mark.django_db
def test_metrics__refuses_a_missing_or_wrong_token_saying_nothing(client, token):
    missing = client.get("/metrics")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
    basic = client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}")

    assert missing.status_code == 401
    assert wrong.status_code == 403
    assert basic.status_code == 401
    for response in (missing, wrong, basic):
        assert response.content == b""


@pytest.mark.django_db
def test_metrics__token_lets_a_scraper_in(client, token):
    response = client.get("/metrics", **AUTH)
    assert response.status_code == 200
    assert b"jobs_waiting" in response.content
    assert TOKEN.encode() not in response.content


@pytest.mark.django_db
def test_metrics__staff_session_lets_a_person_in_without_a_token(staff_client):
    assert staff_client.get("/metrics").status_code == 200


@pytest.mark.django_db
def test_metrics__a_signed_in_user_who_is_not_staff_is_refused(
    client, django_user_model, token
):
    client.force_login(django_user_model.objects.create_user("someone", password="x"))
    assert client.get("/metrics").status_code == 401


# Gauges


@pytest.mark.django_db
def test_metrics__queue_gauges_count_live_rows(client, token):
    now = timezone.now()
    make_job(run_after=now - timedelta(seconds=120))
    make_job(run_after=now - timedelta(seconds=10))
    make_job(run_after=now + timedelta(hours=1))
    make_job(status=JobStatus.RUNNING)
    make_job(queue_name="other", run_after=now - timedelta(seconds=5))
    finished_now()  # finished rows are in the counters, not here

    samples = scrape(client)

    default, other = (("queue", "default"),), (("queue", "other"),)
    assert samples[("jobs_waiting", default)] == 2
    assert samples[("jobs_delayed", default)] == 1
    assert samples[("jobs_running", default)] == 1
    assert 120 <= samples[("jobs_oldest_waiting_seconds", default)] < 180
    assert samples[("jobs_waiting", other)] == 1
    assert samples[("jobs_running", other)] == 0


@pytest.mark.django_db
def test_metrics__paused_queue_gauge(client, token, settings):
    settings.JOB_QUEUES = ["default", "other"]
    pausing.pause("other")

    samples = scrape(client)

    assert samples[("jobs_queue_paused", (("queue", "other"),))] == 1
    assert samples[("jobs_queue_paused", (("queue", "default"),))] == 0
    pausing.resume("other")
    assert scrape(client)[("jobs_queue_paused", (("queue", "other"),))] == 0


@pytest.mark.django_db
def test_metrics__workers_alive_per_kind_and_queue(client, token):
    make_worker(id="a:1:x", kind="database", queues=["default"])
    make_worker(id="b:2:x", kind="database", queues=["default", "other"])
    make_worker(id="c:3:x", kind="rq", queues=["other"])
    make_worker(
        id="d:4:x",
        kind="rq",
        queues=["default"],
        last_heartbeat_at=timezone.now() - timedelta(hours=1),  # long silent
    )

    samples = scrape(client)

    assert samples[("jobs_workers_alive", (("kind", "jobworker"),))] == 2
    assert samples[("jobs_workers_alive", (("kind", "rqworker"),))] == 1
    assert samples[("jobs_queue_workers_alive", (("queue", "default"),))] == 2
    assert samples[("jobs_queue_workers_alive", (("queue", "other"),))] == 2


@pytest.mark.django_db
def test_metrics__redis_reachable_gauge(client, token, redis_dispatch, redis_server):
    assert scrape(client)[("jobs_redis_up", ())] == 1

    redis_server.stop()

    samples = scrape(client)
    assert samples[("jobs_redis_up", ())] == 0
    assert str(redis_server.port) not in repr(samples)


@pytest.mark.django_db
def test_metrics__no_redis_gauge_without_redis_url(client, token, settings):
    settings.REDIS_URL = ""
    assert ("jobs_redis_up", ()) not in scrape(client)


@pytest.mark.django_db
def test_metrics__last_maintenance_run(client, token):
    assert ("jobs_maintenance_last_run_timestamp_seconds", ()) not in scrape(client)
    tally.advance_tally()

    ran = scrape(client)[("jobs_maintenance_last_run_timestamp_seconds", ())]

    assert abs(ran - timezone.now().timestamp()) < 60


# Counters: the tally


@pytest.mark.django_db
def test_tally__counts_rows_finished_after_its_mark_once(client, token):
    tally.advance_tally()  # the first turn sets the mark: rows before are history
    finished_now()
    finished_now(JobStatus.FAILED, errors=[{"attempt": 1}], attempts=1)
    finished_now(JobStatus.CANCELLED, last_attempted_at=None)

    assert tally.advance_tally() == 3
    assert tally.advance_tally() == 0

    samples = scrape(client)
    assert samples[("jobs_succeeded_total", of_task("tests.testapp.tasks.noop"))] == 1
    assert samples[("jobs_failed_total", of_task("tests.testapp.tasks.noop"))] == 1
    assert samples[("jobs_cancelled_total", of_task("tests.testapp.tasks.noop"))] == 1
    noop = of_task("tests.testapp.tasks.noop")
    assert samples[("jobs_run_duration_seconds_count", noop)] == 2  # not cancelled


@pytest.mark.django_db
def test_tally__leaves_rows_inside_the_lag_for_the_next_turn(settings):
    tally.advance_tally()
    settings.JOB_METRICS_LAG_SECONDS = 3600.0
    finished_now()
    tally.advance_tally()  # its mark would go back: nothing moves
    assert not TaskTally.objects.exists()

    settings.JOB_METRICS_LAG_SECONDS = 0.0
    assert tally.advance_tally() == 1


@pytest.mark.django_db
def test_tally__waits_for_the_rows_of_a_worker_whose_clock_is_behind(settings):
    # A registered worker's clock is 10 s behind the database's: the rows it
    # finishes say 10 s earlier than the database's clock when they commit.
    settings.JOB_METRICS_LAG_SECONDS = 1.0
    WorkerProcess.objects.create(
        id="h:1:a", kind="database", hostname="h", pid=1, clock_ahead=-timedelta(10)
    )
    tally.advance_tally()
    eight_ago = timezone.now() - timedelta(seconds=8)
    make_job(
        status=JobStatus.SUCCESSFUL,
        last_attempted_at=eight_ago - timedelta(seconds=0.02),
        finished_at=eight_ago,
    )

    assert tally.advance_tally() == 0  # its finish time is not behind the mark
    WorkerProcess.objects.all().delete()  # the worker is gone
    assert tally.advance_tally() == 1  # counted, not skipped


@pytest.mark.django_db(transaction=True)
def test_heartbeat__measures_how_far_a_worker_clock_is_off(postgres_only, start_worker):
    start_worker("--concurrency", "1", faketime="-20s")
    measured = WorkerProcess.objects.filter(clock_ahead__isnull=False)
    wait_for(measured.exists, message="the skewed worker to register")

    (worker,) = measured
    assert -21 < worker.clock_ahead.total_seconds() < -19


@pytest.mark.django_db
def test_prune__deletes_only_rows_the_tally_counted(settings):
    settings.JOB_CLEANUP_AGE = 3_600_000  # an hour
    an_hour_ago = timezone.now() - timedelta(hours=2)
    TallyMark.objects.create(
        name="finished",
        counted_to=an_hour_ago - timedelta(days=1),
        counted_at=an_hour_ago,
    )
    old = make_job(status=JobStatus.SUCCESSFUL, finished_at=an_hour_ago)

    assert pruning.prune() == 0  # past its retention, but not counted yet
    assert Job.objects.filter(pk=old.pk).exists()

    settings.JOB_METRICS_LAG_SECONDS = 0.0
    tally.advance_tally()
    assert pruning.prune() == 1
    assert TaskTally.objects.get().succeeded == 1


@pytest.mark.django_db
def test_prune__deletes_nothing_before_the_tally_first_ran(settings):
    settings.JOB_CLEANUP_AGE = 0
    make_job(status=JobStatus.SUCCESSFUL, finished_at=timezone.now())
    assert pruning.prune() == 0


@pytest.mark.django_db
def test_counters__never_go_down_when_rows_are_pruned(client, token, settings):
    tally.advance_tally()
    for _ in range(3):
        finished_now()
    tally.advance_tally()
    before = scrape(client)

    settings.JOB_CLEANUP_AGE = 0
    assert pruning.prune() == 3
    finished_now()
    tally.advance_tally()
    after = scrape(client)

    noop = of_task("tests.testapp.tasks.noop")
    assert before[("jobs_succeeded_total", noop)] == 3
    assert after[("jobs_succeeded_total", noop)] == 4
    for key, value in before.items():
        if key[0].endswith(("_total", "_bucket", "_count", "_sum")):
            assert after[key] >= value, key


@pytest.mark.django_db
def test_histogram__buckets_of_known_durations(client, token):
    tally.advance_tally()
    for seconds in (0.0005, 0.003, 0.003, 0.2, 2, 7200):
        now = timezone.now()
        make_job(
            status=JobStatus.SUCCESSFUL,
            finished_at=now,
            last_attempted_at=now - timedelta(seconds=seconds),
        )
    tally.advance_tally()

    samples = scrape(client)

    noop = "tests.testapp.tasks.noop"

    def bucket(le):
        return samples[("jobs_run_duration_seconds_bucket", of_task(noop, le=le))]

    assert bucket("0.001") == 1
    assert bucket("0.005") == 3
    assert bucket("0.1") == 3
    assert bucket("0.5") == 4
    assert bucket("5.0") == 5
    assert bucket("3600.0") == 5
    assert bucket("+Inf") == 6
    total = samples[("jobs_run_duration_seconds_sum", of_task(noop))]
    assert total == pytest.approx(7202.2065, abs=0.01)


@pytest.mark.django_db(transaction=True)
def test_tally__two_maintainers_at_once_count_each_row_once(postgres_only, settings):
    settings.JOB_METRICS_LAG_SECONDS = 0.0
    tally.advance_tally()
    for _ in range(5):
        finished_now()
    first_counts = threading.Event()
    go_on = threading.Event()
    counting = tally.totals

    def slow_totals(window):
        first_counts.set()
        assert go_on.wait(60)
        return counting(window)

    results = {}

    def maintain(name):
        try:
            results[name] = tally.advance_tally()
        finally:
            connections.close_all()

    tally.totals = slow_totals  # the first maintainer stops inside its transaction
    try:
        first = threading.Thread(target=maintain, args=("first",))
        first.start()
        assert first_counts.wait(60)
        tally.totals = counting
        second = threading.Thread(target=maintain, args=("second",))
        second.start()
        wait_for(sessions_waiting_for_a_lock, message="the second maintainer to wait")
        go_on.set()
        first.join(60)
        second.join(60)
    finally:
        tally.totals = counting
        go_on.set()

    assert results == {"first": 5, "second": 0}
    assert TaskTally.objects.get().succeeded == 5


# Two real workers


@pytest.mark.django_db(transaction=True)
def test_metrics__after_two_workers_run_a_known_set_of_jobs(
    client, token, start_worker
):
    tally.advance_tally()
    results = [tasks.record_run.enqueue(f"ok-{i}") for i in range(3)]
    results += [
        tasks.fail_times.enqueue("twice", 2),  # succeeds on its third attempt
        tasks.always_fail.enqueue(),  # two attempts, then FAILED
        tasks.fail_permanently.enqueue(),  # FAILED at once
    ]
    later = tasks.noop.using(run_after=timezone.now() + timedelta(days=1)).enqueue()
    interventions.cancel_jobs(Job.objects.filter(pk=later.id))
    workers = [start_worker(), start_worker()]
    wait_for(lambda: all_finished(results), timeout=120, message="the jobs to end")
    # One worker kills itself running this; the other rescues its job.
    killer = tasks.die_on_first_attempt.enqueue("rescued")
    wait_for(lambda: all_finished([killer]), timeout=120, message="the rescue")
    assert sum(worker.process.poll() is None for worker in workers) == 1
    tally.advance_tally()

    samples = scrape(client)

    def value(name, task):
        return samples.get((name, of_task(f"tests.testapp.tasks.{task}")), 0)

    assert value("jobs_succeeded_total", "record_run") == 3
    assert value("jobs_succeeded_total", "fail_times") == 1
    assert value("jobs_retried_total", "fail_times") == 2
    assert value("jobs_failed_total", "always_fail") == 1
    assert value("jobs_retried_total", "always_fail") == 1
    assert value("jobs_failed_total", "fail_permanently") == 1
    assert value("jobs_retried_total", "fail_permanently") == 0
    assert value("jobs_cancelled_total", "noop") == 1
    assert value("jobs_succeeded_total", "die_on_first_attempt") == 1
    assert value("jobs_rescued_total", "die_on_first_attempt") == 1
    assert value("jobs_retried_total", "die_on_first_attempt") == 1
    for task in ("record_run", "fail_times", "always_fail", "fail_permanently"):
        assert value("jobs_rescued_total", task) == 0
    assert_histogram_matches_rows(samples)


def all_finished(results):
    ids = [result.id for result in results]
    return Job.objects.filter(pk__in=ids, status__in=FINAL).count() == len(ids)


FINAL = (JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.CANCELLED)


def assert_histogram_matches_rows(samples):
    """Each task's buckets count its rows' durations (finish - last attempt)."""
    rows = Job.objects.filter(
        status__in=[JobStatus.SUCCESSFUL, JobStatus.FAILED],
        last_attempted_at__isnull=False,
    )
    durations = {}
    for job in rows:
        seconds = (job.finished_at - job.last_attempted_at).total_seconds()
        durations.setdefault(job.task_path, []).append(seconds)
    for task_path, seconds in durations.items():
        for bound in DURATION_BUCKETS:
            key = of_task(task_path, le=str(float(bound)))
            expected = sum(1 for s in seconds if s <= bound)
            assert samples[("jobs_run_duration_seconds_bucket", key)] == expected
        count = samples[("jobs_run_duration_seconds_count", of_task(task_path))]
        assert count == len(seconds)
        total = samples[("jobs_run_duration_seconds_sum", of_task(task_path))]
        assert total == pytest.approx(sum(seconds), abs=1e-3)
