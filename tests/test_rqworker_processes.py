"""The real `manage.py rqworker` in subprocesses: each job runs exactly once,
however often it was pushed and however many workers (RQ's or ours) drain
the queue; a success is recorded before the worker waits for more; and
SIGTERM lets the job in hand finish.
"""

import os
import signal
import time
from contextlib import suppress

import pytest
from django.core.management import call_command
from django.db import transaction
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer

from jobs.models import Job, JobStatus, WorkerProcess
from jobs.notify import pusher, rq_push
from jobs.rqworker import queues
from tests.testapp import tasks
from tests.testapp.models import Run

from .helpers import FORKING, SIMPLE, status_of, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


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


def push_as_one_batch(redis_server, results):
    """Push the rows of `results` in one RQ job (nothing else in Redis)."""
    assert pusher.pusher.flush(timeout=10)
    redis_server.flush()
    rows = [Job.objects.get(pk=result.id) for result in results]
    assert rq_push.push(rows) == len(rows)
    assert redis_server.client().llen("rq:queue:default") == 1


def test_forking_rqworker__a_batch_runs_in_one_horse_each_job_once_in_order(
    start_rqworker, redis_server
):
    results = [tasks.record_run.enqueue(f"batched-{i}") for i in range(5)]
    push_as_one_batch(redis_server, results)

    worker = start_rqworker("--burst", "--worker-class", FORKING)
    assert worker.wait(timeout=60) == 0, worker.output()[-3000:]

    rows = Job.objects.filter(pk__in=[result.id for result in results])
    assert {(row.status, row.attempts) for row in rows} == {(JobStatus.SUCCESSFUL, 1)}
    runs = Run.objects.order_by("pk")
    assert [run.key for run in runs] == [f"batched-{i}" for i in range(5)]
    (horse,) = {run.pid for run in runs}
    assert horse != worker.pid


def test_forking_rqworker__a_job_that_ends_its_horse__charged_alone_and_at_once(
    start_rqworker, redis_server
):
    before = tasks.record_run.enqueue("before-the-crash")
    poison = tasks.end_process.enqueue()  # max_attempts=2
    after = tasks.record_run.enqueue("after-the-crash")
    push_as_one_batch(redis_server, [before, poison, after])

    worker = start_rqworker("--worker-class", FORKING)
    wait_for(lambda: status_of(poison) == JobStatus.FAILED, message="both attempts")
    wait_for(lambda: status_of(after) == JobStatus.SUCCESSFUL, message="the rest")

    crashed = Job.objects.get(pk=poison.id)
    assert crashed.attempts == 2
    assert [e["message"] for e in crashed.errors] == [
        "The work horse running this job died."
    ] * 2
    # The job before it was recorded; the one after went back uncharged.
    for result in (before, after):
        job = Job.objects.get(pk=result.id)
        assert (job.status, job.attempts, job.errors) == (JobStatus.SUCCESSFUL, 1, [])
    assert Run.objects.count() == 2
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, worker.output()[-3000:]


def test_forking_rqworker__sigterm_mid_batch__ends_the_job_in_hand_gives_back_rest(
    start_rqworker, redis_server
):
    in_hand = tasks.report_then_wait.enqueue(1.0)
    rest = [tasks.record_run.enqueue(f"given-back-{i}") for i in range(3)]
    push_as_one_batch(redis_server, [in_hand, *rest])
    # Held as long as it takes: only the SIGTERM gives them back.
    hold = {"JOB_PREFETCH_HOLD_SECONDS": "3600"}
    worker = start_rqworker("--worker-class", FORKING, env=hold)
    wait_for(lambda: Job.objects.get(pk=in_hand.id).progress == 50, message="first job")

    worker.signal(signal.SIGTERM)

    assert worker.wait(timeout=30) == 0, worker.output()[-3000:]
    assert status_of(in_hand) == JobStatus.SUCCESSFUL
    given_back = Job.objects.filter(pk__in=[result.id for result in rest])
    assert {(job.status, job.attempts) for job in given_back} == {(JobStatus.READY, 0)}
    assert not Run.objects.exists()


def test_forking_rqworker__killed_mid_batch__its_horse_starts_no_further_job(
    start_rqworker, redis_server
):
    in_hand = tasks.report_pid_then_wait.enqueue(1.0)
    rest = [tasks.record_run.enqueue(f"orphaned-{i}") for i in range(3)]
    push_as_one_batch(redis_server, [in_hand, *rest])
    hold = {"JOB_PREFETCH_HOLD_SECONDS": "3600"}  # only the death stops it
    worker = start_rqworker("--worker-class", FORKING, env=hold)
    wait_for(lambda: Job.objects.get(pk=in_hand.id).progress == 50, message="job 1")
    horse = int(Job.objects.get(pk=in_hand.id).progress_message)

    os.kill(worker.pid, signal.SIGKILL)

    wait_for(lambda: not running(horse), timeout=60, message="the horse to end")
    # Nothing renews the leases now: the rescuer may give them to another
    # worker, so the orphaned horse must not run them.
    assert not Run.objects.exists()
    left = Job.objects.filter(pk__in=[result.id for result in rest])
    assert set(left.values_list("status", flat=True)) == {JobStatus.RUNNING}


def running(pid):
    """Say whether process `pid` runs (not ended, nor a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_forking_rqworker__a_batch_held_too_long__gives_back_the_jobs_not_started(
    start_rqworker, redis_server
):
    # The first job outlasts JOB_PREFETCH_HOLD_SECONDS (1 s): the horse
    # starts no other, and the rest go back to the queue uncharged.
    long = tasks.report_pid_then_wait.enqueue(1.5)
    rest = [tasks.record_run.enqueue(f"given-back-{i}") for i in range(2)]
    push_as_one_batch(redis_server, [long, *rest])

    worker = start_rqworker("--worker-class", FORKING)
    wait_for(lambda: status_of(rest[-1]) == JobStatus.SUCCESSFUL, message="the rest")

    # Given back, they were pushed again: an RQ job of their own carried them.
    client = redis_server.client()
    assert RQJob.exists(f"{rest[0].id}-0", connection=client)
    given_back = Job.objects.filter(pk__in=[result.id for result in rest])
    assert {(j.status, j.attempts) for j in given_back} == {(JobStatus.SUCCESSFUL, 1)}
    assert status_of(long) == JobStatus.SUCCESSFUL
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, worker.output()[-3000:]


def test_forking_rqworker__keeps_its_work_horse_for_the_next_rq_jobs(start_rqworker):
    worker = start_rqworker("--worker-class", FORKING)
    first = tasks.record_run.enqueue("first")
    wait_for(lambda: status_of(first) == JobStatus.SUCCESSFUL, message="first job")
    second = tasks.record_run.enqueue("second")  # an RQ job of its own
    wait_for(lambda: status_of(second) == JobStatus.SUCCESSFUL, message="second job")

    (horse,) = set(Run.objects.values_list("pid", flat=True))
    assert horse != worker.pid and running(horse)
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, worker.output()[-3000:]
    wait_for(lambda: not running(horse), message="the horse to end with its worker")


def test_forking_rqworker__a_new_horse_after_job_horse_max_jobs(start_rqworker):
    worker = start_rqworker("--worker-class", FORKING, env={"JOB_HORSE_MAX_JOBS": "2"})
    for key in ("one", "two", "three"):
        result = tasks.record_run.enqueue(key)  # each an RQ job of its own
        wait_for(lambda r=result: status_of(r) == JobStatus.SUCCESSFUL, message=key)

    pids = dict(Run.objects.values_list("key", "pid"))
    assert pids["one"] == pids["two"] != pids["three"]
    assert worker.pid not in pids.values()
    assert not running(pids["one"])  # the spent horse ended
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, worker.output()[-3000:]


def test_forking_rqworker__after_a_horse_dies_the_next_job_gets_a_new_one(
    start_rqworker,
):
    worker = start_rqworker("--worker-class", FORKING)
    before = tasks.record_run.enqueue("before")
    wait_for(lambda: status_of(before) == JobStatus.SUCCESSFUL, message="before")
    poison = tasks.end_process.using(max_attempts=1).enqueue()
    wait_for(lambda: status_of(poison) == JobStatus.FAILED, message="the crash")
    after = tasks.record_run.enqueue("after")
    wait_for(lambda: status_of(after) == JobStatus.SUCCESSFUL, message="after")

    pids = dict(Run.objects.values_list("key", "pid"))
    assert pids["before"] != pids["after"]
    assert not running(pids["before"]) and running(pids["after"])
    assert Job.objects.get(pk=poison.id).errors[0]["message"] == (
        "The work horse running this job died."
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, worker.output()[-3000:]


def test_sigterm_swallowed_where_it_lands_while_idle__the_worker_still_stops(
    redis_dispatch, monkeypatch
):
    result = tasks.add.enqueue(2, 3)
    assert pusher.pusher.flush(timeout=10)
    record = queues.record_unrecorded

    def record_then_sigterm_into_code_that_swallows_it():
        record()
        # As a log handler's `handleError` swallows what lands in it.
        with suppress(Exception):
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(
        queues, "record_unrecorded", record_then_sigterm_into_code_that_swallows_it
    )
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # Not --burst: only the SIGTERM ends it.
        call_command("rqworker", "default", "--worker-class", SIMPLE, verbosity=0)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    assert status_of(result) == JobStatus.SUCCESSFUL
