"""The RQ path: the backend contract on the stock `manage.py rqworker` with our
worker class, and how a job reaches Redis: pushed after commit, to its
priority band, in order, before the process that enqueued it exits.

What the worker processes do with it: `test_rqworker_processes.py`; how few
round trips they make: `test_rqworker_round_trips.py`.
"""

import signal
import subprocess
import sys
from contextlib import contextmanager

import pytest
from django.db import transaction
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer

from jobs.models import Job, JobStatus
from jobs.notify import pusher, rq_push
from tests.testapp import tasks
from tests.testapp.models import Run

from .contract import BackendContract
from .helpers import ROOT, command_environment, drain_rq, status_of, wait_for

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
