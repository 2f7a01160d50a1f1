"""Concurrency keys with real workers of both kinds: the limit holds across
every worker, a killed worker's slot frees when its job is rescued, and a
job waiting for a slot costs no claims in a loop."""

import signal

import pytest

from jobs.models import Job, JobStatus
from tests.testapp import tasks
from tests.testapp.models import Span

from .helpers import SIMPLE, job_of, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

LONG_LEASE = {"JOB_LEASE_SECONDS": "60"}


def most_at_once(spans):
    """The most runs under way at the same moment, from their start and end."""
    events = sorted(
        [(span.started_at, 1) for span in spans]
        + [(span.finished_at, -1) for span in spans]
    )  # at a tie an end (-1) sorts first: a run that ended as one began
    under_way = peak = 0
    for _, step in events:
        under_way += step
        peak = max(peak, under_way)
    return peak


def test_limit_holds_across_jobworkers_and_an_rqworker__unkeyed_jobs_drain_beside(
    start_worker, start_rqworker, redis_dispatch
):
    keyed = tasks.per_customer.enqueue_many(
        [((), {"customer_id": 7, "name": f"k{i}", "seconds": 0.1}) for i in range(30)]
    )
    plain = tasks.add.enqueue_many([((i, 1), {}) for i in range(100)])

    start_worker("--concurrency", "4", env=redis_dispatch)
    start_rqworker("--worker-class", SIMPLE)
    start_worker("--concurrency", "4", env=redis_dispatch)

    ids = [r.id for r in keyed + plain]
    wait_for(
        lambda: (
            Job.objects.filter(pk__in=ids, status=JobStatus.SUCCESSFUL).count() == 130
        ),
        timeout=120,
        message="all 130 jobs to succeed",
    )
    spans = list(Span.objects.filter(group="7"))
    assert len(spans) == 30
    assert most_at_once(spans) == 2
    assert Job.objects.filter(pk__in=ids, attempts=1).count() == 130


def test_a_killed_workers_slot__frees_when_its_job_is_rescued(start_worker):
    doomed_job = tasks.one_at_a_time.using(max_attempts=1).enqueue(
        name="doomed", seconds=600
    )
    doomed = start_worker(env={**LONG_LEASE, "LOG_LEVEL": "DEBUG"})
    wait_for(lambda: job_of(doomed_job).status == JobStatus.RUNNING, message="claim")
    waiting = tasks.one_at_a_time.enqueue(name="waiting", seconds=0)
    wait_for(lambda: "keyed claim: 0 of" in doomed.output(), message="a full key")

    doomed.signal(signal.SIGKILL)
    doomed.wait()
    start_worker(env=LONG_LEASE)  # rescues its dead neighbour's jobs at once

    wait_for(lambda: job_of(waiting).status == JobStatus.SUCCESSFUL, message="run")
    lost = job_of(doomed_job)
    assert lost.status == JobStatus.FAILED
    assert lost.errors[0]["exception_class_path"] == "jobs.exceptions.WorkerLost"


def test_a_job_waiting_for_a_slot__costs_no_claims_in_a_loop(
    start_worker, start_rqworker, redis_dispatch
):
    # A job holds the only slot of its key; another waits. The jobworker
    # looks for keyed jobs once per poll interval (50 ms here), and the
    # rqworker leaves the waiting job READY without pushing it again, though
    # the re-dispatcher looks for lost jobs every 200 ms.
    env = {**redis_dispatch, "LOG_LEVEL": "DEBUG"}
    holder = tasks.one_at_a_time.enqueue(name="holder", seconds=3)
    db_worker = start_worker("--concurrency", "2", env=env)
    wait_for(lambda: job_of(holder).status == JobStatus.RUNNING, message="claim")
    waiting = tasks.one_at_a_time.enqueue(name="waiting", seconds=0)
    rq_worker = start_rqworker("--worker-class", SIMPLE, env={"LOG_LEVEL": "DEBUG"})

    wait_for(lambda: job_of(waiting).status == JobStatus.SUCCESSFUL, message="run")
    held = Span.objects.get(name="holder")
    ran = Span.objects.get(name="waiting")
    assert ran.started_at >= held.finished_at
    polls = (held.finished_at - held.started_at) / 0.05
    keyed_claims = db_worker.output().count("keyed claim: 0 of")
    assert 0 < keyed_claims <= 2 * polls + 10
    assert "released" not in db_worker.output()
    assert rq_worker.output().count("waits for a free slot") <= 2
