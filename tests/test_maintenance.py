"""Rescue, the maintenance lease, and the fences that keep transitions honest."""

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from jobs import maintenance, worker_registry
from jobs.maintenance import dead_workers, leader, rescue
from jobs.models import JobStatus, LeaderLock, WorkerProcess

from .helpers import in_the_past, make_job

pytestmark = pytest.mark.django_db


def running_job(**fields):
    defaults = {
        "status": JobStatus.RUNNING,
        "attempts": 1,
        "worker_ids": ["gone:1:abc"],
        "lease_token": "gone:1:abc:1",
        "lease_expires_at": in_the_past(),
    }
    return make_job(**{**defaults, **fields})


def test_rescue__puts_a_stalled_job_back_with_a_worker_lost_error():
    job = running_job()

    rescue.rescue_stalled()

    job.refresh_from_db()
    assert job.status == JobStatus.READY
    assert job.run_after <= timezone.now()
    assert job.lease_expires_at is None
    assert job.errors[0]["exception_class_path"] == "jobs.exceptions.WorkerLost"
    assert job.errors[0]["attempt"] == 1
    assert job.errors[0]["worker_id"] == "gone:1:abc"


def test_rescue__fails_a_stalled_job_with_no_attempts_left():
    job = running_job(attempts=3, max_attempts=3)

    rescue.rescue_stalled()

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.finished_at is not None


def test_rescue__leaves_jobs_with_a_live_lease_alone():
    job = running_job(lease_expires_at=timezone.now() + timedelta(seconds=30))

    assert rescue.rescue_stalled() == []

    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING


def test_leader_lock__one_holder_at_a_time_until_it_expires():
    assert leader.take_leader_lock("duty", "a", 60)
    assert not leader.take_leader_lock("duty", "b", 60)
    assert leader.take_leader_lock("duty", "a", 60)  # renewing is fine

    LeaderLock.objects.filter(name="duty").update(expires_at=in_the_past())

    assert leader.take_leader_lock("duty", "b", 60)
    assert LeaderLock.objects.get(name="duty").holder == "b"


def test_run_due_duties__only_the_leader_lock_holder_rescues():
    job = running_job()
    assert leader.take_leader_lock(leader.MAINTENANCE, "other-worker", 60)

    assert not maintenance.run_due_duties("this-worker")
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--queue", "nope"], "Unknown queue"),
        (["--concurrency", "0"], "--concurrency must be at least 1"),
        (["--max-jobs", "0"], "--max-jobs must be at least 1"),
    ],
)
def test_jobworker__refuses_bad_options(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("jobworker", *args)


def test_worker_registry__register__one_statement_that_renews_a_known_id(
    django_assert_num_queries,
):
    worker_registry.register("w:1:a", WorkerProcess.Kind.DATABASE, ["default"], 5)
    WorkerProcess.objects.update(last_heartbeat_at=in_the_past(600), clock_ahead=None)

    with django_assert_num_queries(1):
        worker_registry.register("w:1:a", WorkerProcess.Kind.RQ, ["other"], 1)

    worker = WorkerProcess.objects.get()
    assert (worker.kind, worker.queues, worker.concurrency) == ("rq", ["other"], 1)
    assert worker.clock_ahead is not None
    assert list(WorkerProcess.objects.alive()) == [worker]


def test_worker_registry__register_beat_forget():
    worker_registry.register("w:1:a", WorkerProcess.Kind.DATABASE, ["default"], 5)
    worker_registry.register("w:2:b", WorkerProcess.Kind.RQ, ["default"], 1)
    WorkerProcess.objects.filter(id="w:2:b").update(last_heartbeat_at=in_the_past(600))

    assert worker_registry.report_alive("w:1:a") == 1
    assert list(WorkerProcess.objects.alive().values_list("id", flat=True)) == ["w:1:a"]
    dead_workers.forget_dead_workers()
    assert list(WorkerProcess.objects.values_list("id", flat=True)) == ["w:1:a"]
    worker_registry.unregister("w:1:a")
    assert worker_registry.report_alive("w:1:a") == 0
