"""How few round trips the RQ worker makes.

To the database: a success is recorded with the next claim. To Redis: the
worker renews its key and asks whether it is suspended at most once a second,
marks itself idle once between jobs, saves a success's last heartbeat with
its outcome, and takes each job from its priority bands in one pop; a forked
work horse connects without reading package metadata. The worker connects to
the database once to start and claim.
"""

import pytest
import redis.utils
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_rq import get_queue
from rq.exceptions import StopRequested
from rq.job import Job as RQJob
from rq.job import JobStatus as RQJobStatus
from rq.serializers import JSONSerializer
from rq.suspension import suspend
from rq.worker import WorkerStatus

from jobs.models import Job, JobStatus
from jobs.notify import pusher
from jobs.rqworker.workers import JobsSimpleWorker, JobsWorker
from tests.testapp import tasks

from .helpers import FORKING, SIMPLE, calls, drain_rq

pytestmark = pytest.mark.django_db(transaction=True)


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


def test_rqworker__claims_its_first_job_on_the_connection_it_opened_to_start(
    postgres_only,  # SQLite's connections close after each job (CONN_MAX_AGE 0)
    redis_dispatch,
    monkeypatch,
):
    result = tasks.add.enqueue(1, 1)
    connection.close()
    connects = []
    connect = connection.connect
    monkeypatch.setattr(connection, "connect", lambda: connects.append(connect()))

    drain_rq()

    assert len(connects) == 1
    assert Job.objects.get(pk=result.id).status == JobStatus.SUCCESSFUL


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
    results = []
    for a in (2, 3):  # pushed one at a time: an RQ job each
        results.append(tasks.add.enqueue(a, a))
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


@pytest.mark.parametrize("worker_class", [FORKING, SIMPLE])
def test_rqworker__claims_an_rq_jobs_first_row_as_it_pops_it(
    redis_dispatch, monkeypatch, worker_class
):
    result = tasks.add.enqueue(2, 3)
    # What the row's status was each time RQ fetched an RQ job's hash.
    seen = []
    fetch = RQJob.fetch.__func__

    def fetch_seeing(cls, job_id, *args, **kwargs):
        seen.append(Job.objects.get(pk=result.id).status)
        return fetch(cls, job_id, *args, **kwargs)

    monkeypatch.setattr(RQJob, "fetch", classmethod(fetch_seeing))

    drain_rq("default", worker_class=worker_class)

    # Claimed before RQ fetched its RQ job: the fetch and RQ's renewal of
    # the worker's key no longer stand between the pop and the claim.
    assert seen[0] == JobStatus.RUNNING
    job = Job.objects.get(pk=result.id)
    assert (job.status, job.return_value, job.attempts) == (JobStatus.SUCCESSFUL, 5, 1)
