"""The RQ path: the stock `manage.py rqworker` with our worker class."""

import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
import redis.utils
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django_rq import get_queue
from rq.exceptions import StopRequested
from rq.job import Job as RQJob
from rq.job import JobStatus as RQJobStatus
from rq.serializers import JSONSerializer
from rq.suspension import suspend
from rq.worker import WorkerStatus

from jobs.models import Job, JobStatus, WorkerProcess
from jobs.notify import pusher, rq_push
from jobs.rqworker.workers import JobsSimpleWorker, JobsWorker
from tests.testapp import tasks
from tests.testapp.models import Run

from .contract import BackendContract
from .helpers import ROOT, SIMPLE, calls, command_environment, drain_rq, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


class TestRedisQueue(BackendContract):
    @pytest.fixture(autouse=True)
    def _redis(self, redis_dispatch, start_rqworker):
        self.start_rqworker = start_rqworker

    def drain(self, queues=None):
        drain_rq(*(queues or ()))

    @contextmanager
    def background_worker(self):
        worker = self.start_rqworker()
        try:
            yield worker
        finally:
            worker.signal(signal.SIGTERM)
            worker.wait(timeout=20)

    def test_enqueue__pushes_the_job_id_to_its_priority_band(self, redis_server):
        normal = tasks.add.enqueue(1, 2)
        high = tasks.add.using(priority=50).enqueue(1, 2)
        low = tasks.add.using(priority=-1).enqueue(1, 2)

        assert pusher.pusher.flush(timeout=10)
        client = redis_server.client()
        assert client.lrange("rq:queue:default", 0, -1) == [f"{normal.id}-0".encode()]
        assert client.lrange("rq:queue:default.high", 0, -1) == [
            f"{high.id}-0".encode()
        ]
        assert client.lrange("rq:queue:default.low", 0, -1) == [f"{low.id}-0".encode()]

    def test_enqueue_many__pushes_every_job_after_commit(self, redis_server):
        with transaction.atomic():
            results = tasks.add.enqueue_many([((i, i), {}) for i in range(100)])
            assert redis_server.client().llen("rq:queue:default") == 0

        assert pusher.pusher.flush(timeout=10)
        queued = redis_server.client().lrange("rq:queue:default", 0, -1)
        assert queued == [f"{result.id}-0".encode() for result in results]

    def test_enqueue_many__every_rq_job_names_its_own_row(self, redis_server):
        results = tasks.add.enqueue_many([((i, i), {}) for i in range(3)])
        assert pusher.pusher.flush(timeout=10)

        client = redis_server.client()
        rq_jobs = [
            RQJob.fetch(f"{result.id}-0", connection=client, serializer=JSONSerializer)
            for result in results
        ]
        # JSON: the arguments read back as a list.
        assert [rq_job.args for rq_job in rq_jobs] == [[r.id] for r in results]
        assert [rq_job.description for rq_job in rq_jobs] == [
            f"{tasks.add.module_path} {result.id}" for result in results
        ]
        for rq_job in rq_jobs:
            assert rq_job.func_name == rq_push.RQ_FUNCTION
            assert (rq_job.origin, rq_job.get_status()) == ("default", "queued")
            assert (rq_job.timeout, rq_job.result_ttl) == (
                rq_jobs[0].timeout,
                rq_jobs[0].result_ttl,
            )

        drain_rq()
        done = Job.objects.filter(pk__in=[result.id for result in results])
        assert sorted(done.values_list("status", "return_value")) == [
            (JobStatus.SUCCESSFUL, 0),
            (JobStatus.SUCCESSFUL, 2),
            (JobStatus.SUCCESSFUL, 4),
        ]

    def test_enqueue__rolled_back_pushes_nothing(self, redis_server):
        with pytest.raises(ZeroDivisionError), transaction.atomic():
            tasks.add.enqueue(1, 2)
            1 / 0  # noqa: B018

        tasks.add.using(queue_name="other").enqueue(1, 2)  # pushed after
        assert pusher.pusher.flush(timeout=10)
        assert redis_server.client().llen("rq:queue:other") == 1
        assert redis_server.client().llen("rq:queue:default") == 0

    def test_duplicate_push__runs_once(self):
        result = tasks.record_run.enqueue("pushed-thrice")
        job = Job.objects.get(pk=result.id)
        assert rq_push.push([job]) == 1
        assert rq_push.push([job]) == 1

        drain_rq()

        job.refresh_from_db()
        assert (job.status, job.attempts) == (JobStatus.SUCCESSFUL, 1)
        assert Run.objects.filter(key="pushed-thrice").count() == 1


def test_forking_rqworker__job_pushed_twice_runs_once_and_the_horse_skips_it_after(
    start_rqworker, redis_server
):
    result = tasks.record_run.enqueue("forked-twice")
    job = Job.objects.get(pk=result.id)
    assert pusher.pusher.flush(timeout=10)
    assert rq_push.push([job]) == 1  # now in the queue twice

    worker = start_rqworker(
        "--burst", "--worker-class", "jobs.rqworker.workers.JobsWorker"
    )
    assert worker.wait(timeout=60) == 0, worker.output()[-3000:]

    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.SUCCESSFUL, 1)
    assert Run.objects.filter(key="forked-twice").count() == 1
    rq_job = RQJob.fetch(
        f"{job.pk}-0", connection=redis_server.client(), serializer=JSONSerializer
    )
    results = [r.return_value for r in rq_job.results()]
    assert sorted(results) == ["skipped", "succeeded"]


def test_push__keeps_the_order_and_the_timeout_of_each_job(settings, redis_server):
    settings.REDIS_URL = ""  # enqueued without a push
    results = [
        tasks.add.enqueue(1, 1),
        tasks.overrun.enqueue(0),
        tasks.add.enqueue(2, 2),
    ]
    rows = sorted(Job.objects.all(), key=lambda job: job.enqueued_at)
    settings.REDIS_URL = redis_server.url  # pushed in one batch, from here on

    assert rq_push.push(rows) == 3

    client = redis_server.client()
    ids = [f"{result.id}-0" for result in results]
    assert client.lrange("rq:queue:default", 0, -1) == [i.encode() for i in ids]
    timeouts = [
        RQJob.fetch(i, connection=client, serializer=JSONSerializer).timeout
        for i in ids
    ]
    assert timeouts == [-1, 1, -1]  # none, and 0.3 s rounded up


def test_two_rqworkers_drain_2000_jobs__each_runs_exactly_once(start_rqworker):
    with transaction.atomic():
        for i in range(2000):
            tasks.record_run.enqueue(f"job-{i}")

    started = time.monotonic()
    workers = [start_rqworker("--burst", "--worker-class", SIMPLE) for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=300) == 0, worker.output()[-3000:]
    elapsed = time.monotonic() - started

    # Run.key is unique: a second run of any job would have failed that job.
    # (How the jobs split between the workers is up to the scheduler.)
    assert Run.objects.count() == 2000
    assert Job.objects.filter(status=JobStatus.SUCCESSFUL, attempts=1).count() == 2000
    assert set(Run.objects.values_list("pid", flat=True)) <= {w.pid for w in workers}
    print(f"\n2 rqworkers drained 2000 jobs in {elapsed:.2f}s")


def test_rqworker_and_jobworker_together__each_job_once(start_rqworker, start_worker):
    rq_worker = start_rqworker("--worker-class", SIMPLE)
    db_worker = start_worker("--concurrency", "1")
    wait_for(lambda: "Listening on" in rq_worker.output(), message="rqworker")
    wait_for(lambda: "started queues" in db_worker.output(), message="jobworker")

    with transaction.atomic():  # 50 ms jobs, so that both workers likely get some
        for i in range(100):
            tasks.sleep_then_record.enqueue(f"both-{i}", 0.05)

    wait_for(
        lambda: Job.objects.filter(status=JobStatus.SUCCESSFUL).count() == 100,
        timeout=60,
        message="all jobs to succeed",
    )
    assert Run.objects.count() == 100
    assert Job.objects.filter(attempts=1).count() == 100
    pids = set(Run.objects.values_list("pid", flat=True))
    assert pids <= {rq_worker.pid, db_worker.pid}  # the split is the scheduler's


def test_django_rq_dashboard__is_for_staff_only(
    redis_dispatch, client, django_user_model
):
    url = "/admin/django_rq/dashboard/"
    assert client.get(url).status_code == 302  # to the admin login

    client.force_login(django_user_model.objects.create_superuser("s", "", "pw"))

    page = client.get(url)
    assert page.status_code == 200
    assert "default.high" in page.text


def status_of(result):
    return Job.objects.get(pk=result.id).status


@pytest.mark.parametrize("worker_class", [[], ["--worker-class", SIMPLE]])
def test_sigterm_mid_job__job_finishes_and_worker_exits(start_rqworker, worker_class):
    result = tasks.sleep_then_record.enqueue("graceful", 2)
    worker = start_rqworker(*worker_class)
    wait_for(lambda: status_of(result) == JobStatus.RUNNING, message="claim")
    assert WorkerProcess.objects.get(pid=worker.pid).kind == "rq"

    worker.signal(signal.SIGTERM)

    assert worker.wait(timeout=30) == 0, worker.output()[-3000:]
    assert not WorkerProcess.objects.filter(pid=worker.pid).exists()
    job = Job.objects.get(pk=result.id)
    assert (job.status, job.attempts) == (JobStatus.SUCCESSFUL, 1)
    assert Run.objects.filter(key="graceful").exists()


def job_writes(captured):
    """The statements that claimed jobs or recorded their ends."""
    words = [(q["sql"].split() + [""])[:2] for q in captured.captured_queries]
    return [
        verb
        for verb, table in words
        if verb == "WITH" or (verb == "UPDATE" and table.strip('"') == "jobs_job")
    ]


def test_simple_rqworker__records_each_success_with_the_next_claim(
    postgres_only, redis_dispatch
):
    results = [tasks.add.enqueue(i, i) for i in range(5)]

    with CaptureQueriesContext(connection) as captured:
        drain_rq()

    # Each claim also records the success before it; the last success is
    # recorded when the worker stops: 6 statements for 5 jobs, not 10.
    assert job_writes(captured) == ["WITH"] * 5 + ["UPDATE"]
    jobs = Job.objects.filter(pk__in=[r.id for r in results])
    assert {(job.status, job.return_value) for job in jobs} == {
        (JobStatus.SUCCESSFUL, 2 * i) for i in range(5)
    }


def test_simple_rqworker__records_a_success_before_it_waits_for_more(
    start_rqworker,
):
    worker = start_rqworker("--worker-class", SIMPLE)
    result = tasks.add.enqueue(2, 3)

    # Nothing follows it: the worker records it before it waits.
    wait_for(lambda: status_of(result) == JobStatus.SUCCESSFUL, message="recorded")
    assert Job.objects.get(pk=result.id).return_value == 5
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, worker.output()[-3000:]


def test_rqworker__renews_its_worker_key_at_most_once_a_second(
    redis_dispatch, redis_server
):
    queue = get_queue("default")
    worker = JobsSimpleWorker([queue], connection=queue.connection)
    worker.register_birth()
    client = redis_server.client()
    (before,) = calls(client, "expire")

    for _ in range(10):
        worker.heartbeat()

    (after,) = calls(client, "expire")
    assert after - before == 1
    assert client.ttl(worker.key) > 0


def test_rqworker__asks_whether_it_is_suspended_at_most_once_a_second(
    redis_dispatch, redis_server
):
    client = redis_server.client()
    worker = JobsSimpleWorker([get_queue("default")], connection=client)
    (before,) = calls(client, "exists")

    for _ in range(10):
        worker.check_for_suspension(burst=True)

    assert calls(client, "exists") == [before + 1]
    suspend(client)
    worker.suspension_checked -= worker.suspension_check_every
    with pytest.raises(StopRequested):  # a suspended burst worker stops
        worker.check_for_suspension(burst=True)


def test_work_horse__connects_to_redis_without_reading_package_metadata(
    redis_dispatch, redis_server, monkeypatch
):
    client = redis_server.client()
    worker = JobsWorker([get_queue("default")], connection=client)
    clients = {worker.connection, *(queue.connection for queue in worker.queues)}
    read = []
    monkeypatch.setattr(redis.utils.metadata, "version", read.append)

    for each in clients:
        each.connection_pool.reset()  # what a forked work horse's first call does
        assert each.ping()

    assert read == []


def test_rqworker__marks_itself_idle_once_between_jobs(redis_dispatch, redis_server):
    client = redis_server.client()
    worker = JobsSimpleWorker([get_queue("default")], connection=client)
    worker.register_birth()
    (before,) = calls(client, "hset")

    for state in (WorkerStatus.BUSY, WorkerStatus.IDLE, WorkerStatus.IDLE):
        worker.set_state(state)

    assert calls(client, "hset") == [before + 2]
    assert client.hget(worker.key, "state") == b"idle"


def test_rqworker__saves_the_last_heartbeat_of_a_success_with_its_outcome(
    redis_dispatch, redis_server
):
    results = [tasks.add.enqueue(2, 2), tasks.add.enqueue(3, 3)]
    assert pusher.pusher.flush(timeout=10)
    client = redis_server.client()
    queue = get_queue("default")
    worker = JobsSimpleWorker([queue], connection=client)
    ending = RQJob.fetch(
        f"{results[0].id}-0", connection=client, serializer=JSONSerializer
    )
    failing = RQJob.fetch(
        f"{results[1].id}-0", connection=client, serializer=JSONSerializer
    )
    failing.set_status(RQJobStatus.FAILED)
    (before,) = calls(client, "hset")

    worker.handle_execution_ended(ending, queue, 60)  # remembered, not written
    assert calls(client, "hset") == [before]
    assert ending.last_heartbeat == ending.ended_at
    worker.handle_execution_ended(failing, queue, 60)  # as RQ does
    assert calls(client, "hset") == [before + 1]

    drain_rq()
    rq_job = RQJob.fetch(
        f"{results[0].id}-0", connection=client, serializer=JSONSerializer
    )
    assert rq_job.get_status() == "finished"
    assert rq_job.last_heartbeat == rq_job.ended_at
    assert Job.objects.get(pk=results[0].id).return_value == 4


def test_rqworker__takes_each_job_from_the_first_band_holding_one_in_one_pop(
    redis_dispatch, redis_server
):
    low = tasks.add.using(priority=-1).enqueue(1, 1)
    normal = tasks.add.enqueue(1, 2)
    high = tasks.add.using(priority=5).enqueue(1, 3)
    assert pusher.pusher.flush(timeout=10)
    client = redis_server.client()
    worker = JobsSimpleWorker([get_queue("default")], connection=client)
    bands = worker.queues

    lpop, lmpop = calls(client, "lpop", "lmpop")
    dequeue = worker.queue_class.dequeue_any
    taken = [
        dequeue(bands, None, connection=client, serializer=worker.serializer)
        for _ in range(4)
    ]

    assert [job.args[0] for job, _ in taken[:3]] == [high.id, normal.id, low.id]
    assert [queue.name for _, queue in taken[:3]] == [q.name for q in bands]
    assert taken[3] is None
    assert calls(client, "lpop", "lmpop") == [lpop, lmpop + 4]


def test_job_enqueued_by_a_job_in_a_work_horse__is_pushed_before_it_exits(
    start_rqworker,
):
    # A long grace: only the horse's own push can run the follow-up soon.
    worker = start_rqworker(env={"JOB_REDISPATCH_GRACE_SECONDS": "300"})
    parent = tasks.enqueue_follow_up.enqueue("follow-up")

    wait_for(lambda: status_of(parent) == JobStatus.SUCCESSFUL, message="parent")
    follow_up = Job.objects.get(pk=Job.objects.get(pk=parent.id).return_value)
    # Recorded as soon as the worker is idle again, well within the grace.
    wait_for(lambda: status_of(follow_up) == JobStatus.SUCCESSFUL, timeout=120)
    assert Run.objects.filter(key="follow-up").count() == 1
    assert "re-dispatched" not in worker.output()


def test_process_that_enqueues_and_exits__pushes_first(redis_dispatch, redis_server):
    enqueue = "from tests.testapp import tasks; print(tasks.add.enqueue(1, 2).id)"
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", enqueue],
        env=command_environment(redis_dispatch),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    job_id = done.stdout.split()[-1]  # after shell's own lines
    assert Job.objects.filter(pk=job_id, status=JobStatus.READY).exists(), done
    queued = redis_server.client().lrange("rq:queue:default", 0, -1)
    assert queued == [f"{job_id}-0".encode()]


def test_push_in_background_off__pushed_at_commit(
    redis_dispatch, redis_server, settings
):
    settings.JOB_REDIS_PUSH_IN_BACKGROUND = False

    result = tasks.add.enqueue(1, 2)

    # No flush: the commit itself pushed it.
    queued = redis_server.client().lrange("rq:queue:default", 0, -1)
    assert queued == [f"{result.id}-0".encode()]
