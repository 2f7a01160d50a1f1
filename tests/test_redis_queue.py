"""The RQ path: the backend contract on the stock `manage.py rqworker` with our
worker class, and how a job reaches Redis: pushed after commit, to its
priority band, in order, before the process that enqueued it exits.

What the worker processes do with it: `test_rqworker_processes.py`; how few
round trips they make: `test_rqworker_round_trips.py`.
"""

import signal
import subprocess
import sys
import uuid
from contextlib import contextmanager

import pytest
from django.db import transaction
from django.tasks import TaskResultStatus
from django.tasks.signals import task_finished, task_started
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer

from jobs import conf
from jobs.models import Job, JobStatus
from jobs.notify import pusher, rq_push
from tests.testapp import tasks
from tests.testapp.models import Run

from .contract import BackendContract
from .helpers import (
    FORKING,
    ROOT,
    SIMPLE,
    command_environment,
    drain_rq,
    status_of,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


def fetch_rq_job(redis_server, rq_id):
    client = redis_server.client()
    return RQJob.fetch(rq_id, connection=client, serializer=JSONSerializer)


class RedisPath(BackendContract):
    """Jobs reach `manage.py rqworker` through Redis; the background worker
    runs the worker class from settings."""

    worker_class = SIMPLE

    @pytest.fixture(autouse=True)
    def _redis(self, redis_dispatch, start_rqworker):
        self.start_rqworker = start_rqworker

    def drain(self, queues=None):
        drain_rq(*(queues or ()), worker_class=self.worker_class)

    @contextmanager
    def background_worker(self):
        worker = self.start_rqworker()
        try:
            yield worker
        finally:
            worker.signal(signal.SIGTERM)
            worker.wait(timeout=20)


class TestForkingRqworker(RedisPath):
    """The contract on the default worker class, RQ's forking worker: each
    RQ job's rows run in a work horse it forks."""

    worker_class = FORKING

    def test_signals__started_and_finished_are_sent(self):
        seen = []

        def on(name):
            return lambda sender, task_result, **kwargs: seen.append(name)

        task_started.connect(started := on("started"))
        task_finished.connect(finished := on("finished"))
        try:
            result = tasks.add.enqueue(1, 2)
            self.drain()
        finally:
            task_started.disconnect(started)
            task_finished.disconnect(finished)

        # `task_started` is sent in the work horse, another process; the
        # worker records the success and sends `task_finished`.
        assert seen == ["finished"]
        assert tasks.add.get_result(result.id).status == TaskResultStatus.SUCCESSFUL


class TestRedisQueue(RedisPath):
    """The contract on the non-forking worker class, run in this process,
    and how jobs reach Redis."""

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

    def test_enqueue_many__pushes_batches_of_rows_in_order_after_commit(
        self, redis_server
    ):
        size = conf.get("JOB_RQ_BATCH")
        with transaction.atomic():
            results = tasks.add.enqueue_many(
                [((i, i), {}) for i in range(2 * size + 1)]
            )
            assert redis_server.client().llen("rq:queue:default") == 0

        assert pusher.pusher.flush(timeout=10)
        ids = [result.id for result in results]
        batches = [ids[:size], ids[size : 2 * size], ids[2 * size :]]
        queued = redis_server.client().lrange("rq:queue:default", 0, -1)
        assert queued == [f"{batch[0]}-0".encode() for batch in batches]
        # JSON: the arguments read back as a list.
        assert [fetch_rq_job(redis_server, q.decode()).args for q in queued] == batches

    def test_enqueue_many__an_rq_job_names_its_rows_and_their_task(self, redis_server):
        results = tasks.add.enqueue_many([((i, i), {}) for i in range(3)])
        assert pusher.pusher.flush(timeout=10)

        rq_job = fetch_rq_job(redis_server, f"{results[0].id}-0")
        assert rq_job.args == [result.id for result in results]
        assert (
            rq_job.description == f"{tasks.add.module_path} {results[0].id} and 2 more"
        )
        assert rq_job.func_name == rq_push.RQ_FUNCTION
        assert (rq_job.origin, rq_job.get_status()) == ("default", "queued")
        assert rq_job.timeout == -1 and rq_job.result_ttl == conf.get(
            "JOB_RQ_RESULT_TTL"
        )

        drain_rq()
        done = Job.objects.filter(pk__in=[result.id for result in results])
        assert sorted(done.values_list("status", "return_value")) == [
            (JobStatus.SUCCESSFUL, 0),
            (JobStatus.SUCCESSFUL, 2),
            (JobStatus.SUCCESSFUL, 4),
        ]

    def test_push__a_job_with_a_timeout_or_a_key_has_an_rq_job_of_its_own(
        self, redis_server
    ):
        first, second = tasks.add.enqueue(1, 1), tasks.add.enqueue(2, 2)
        timed = tasks.add.using(timeout=30).enqueue(3, 3)
        keyed = tasks.per_customer.enqueue(customer_id=1, name="k", seconds=0)
        last = tasks.add.enqueue(4, 4)
        assert pusher.pusher.flush(timeout=10)
        redis_server.flush()
        ids = [first.id, second.id, timed.id, keyed.id, last.id]
        rows = sorted(
            Job.objects.filter(pk__in=ids), key=lambda job: ids.index(str(job.pk))
        )

        assert rq_push.push(rows) == 5

        queued = redis_server.client().lrange("rq:queue:default", 0, -1)
        carried = [fetch_rq_job(redis_server, q.decode()).args for q in queued]
        assert carried == [[first.id, second.id], [timed.id], [keyed.id], [last.id]]
        assert fetch_rq_job(redis_server, f"{timed.id}-0").timeout == 30

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


def test_push__a_later_rq_job_is_rqs_first_hash_with_its_own_job_fields(
    settings, redis_server, monkeypatch
):
    monkeypatch.setattr(rq_push, "templates", {})  # as in a new process
    settings.REDIS_URL = ""  # enqueued without a push
    first = tasks.add.enqueue(1, 1)
    later = tasks.add.using(timeout=30).enqueue(2, 2)
    rows = {str(job.pk): job for job in Job.objects.all()}
    settings.REDIS_URL = redis_server.url

    assert rq_push.push([rows[first.id]]) == 1  # RQ enqueues it
    assert rq_push.push([rows[later.id]]) == 1  # a copy of what RQ saved

    client = redis_server.client()
    own = {b"data", b"description", b"timeout", b"created_at", b"enqueued_at"}
    shared = [
        {
            k: v
            for k, v in client.hgetall(f"rq:job:{r.id}-0").items()
            if v and k not in own
        }
        for r in (first, later)
    ]
    assert shared[0] == shared[1] and b"status" in shared[0]
    copy = fetch_rq_job(redis_server, f"{later.id}-0")
    assert (copy.func_name, copy.args, copy.timeout) == (
        rq_push.RQ_FUNCTION,
        [later.id],
        30,
    )
    assert copy.description == f"{tasks.add.module_path} {later.id}"
    assert copy.enqueued_at >= fetch_rq_job(redis_server, f"{first.id}-0").enqueued_at
    queued = client.lrange("rq:queue:default", 0, -1)
    assert queued == [f"{r.id}-0".encode() for r in (first, later)]
    assert client.smembers("rq:queues") == {b"rq:queue:default"}


def test_push__copies_and_rqs_own_enqueue_share_one_pipeline(
    settings, redis_server, monkeypatch
):
    monkeypatch.setattr(rq_push, "templates", {})  # as in a new process
    settings.REDIS_URL = ""  # enqueued without a push
    seen = tasks.record_run.enqueue("a queue seen before")
    copied = tasks.record_run.enqueue("copied")
    first_of_its_queue = tasks.record_on_other_queue.enqueue("RQ's own")
    rows = {str(job.pk): job for job in Job.objects.all()}
    settings.REDIS_URL = redis_server.url
    assert rq_push.push([rows[seen.id]]) == 1

    # A copy for "default", then RQ's own enqueue for "other", in one push.
    assert rq_push.push([rows[copied.id], rows[first_of_its_queue.id]]) == 2

    client = redis_server.client()
    assert client.llen("rq:queue:default") == 2
    assert client.lrange("rq:queue:other", 0, -1) == [
        f"{first_of_its_queue.id}-0".encode()
    ]


def test_rq_job_id__names_its_first_row_and_no_other_id_does():
    row = "0703ed80-7f3e-40e3-bc40-20ab94528b67"
    assert rq_push.first_row_of(f"{row}-0") == row
    assert rq_push.first_row_of(f"{row}-12") == row
    others = [
        str(uuid.uuid4()),  # RQ's own ids
        row,
        f"{row}-x",
        f"{row.replace('-', '')}-0",
        f"{{{row}}}-0",
        f"{row.upper()}-0",
        "-0",
        "",
    ]
    assert [rq_push.first_row_of(other) for other in others] == [None] * len(others)
