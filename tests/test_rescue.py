"""Rescue: a job whose worker is gone runs again, and a live worker's never does.

Never twice at once: the rescue of a job is one statement whose WHERE holds
the whole condition (RUNNING, the same lease token, the lease expired on the
database's clock), so a renewal landing after the rescuer looked keeps the
job with its worker, and a worker whose clock runs ahead rescues nothing early.
"""

import signal
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.core import transitions
from jobs.maintenance import rescue
from jobs.models import Job, JobQuerySet, JobStatus, WorkerProcess
from tests.testapp import tasks
from tests.testapp.models import Run

from .helpers import job_of, make_job, wait_for

LONG_LEASE = {"JOB_LEASE_SECONDS": "60"}


@pytest.mark.django_db
def test_rescue__keeps_a_job_whose_lease_was_renewed_after_the_rescuer_looked(
    monkeypatch,
):
    job = make_job(
        status=JobStatus.RUNNING,
        attempts=1,
        lease_token="w:1",
        lease_expires_at=timezone.now() - timedelta(seconds=5),
    )
    select_stalled = JobQuerySet.stalled

    def stalled_then_renewed(queryset, now=None):
        found = list(select_stalled(queryset, now))
        transitions.renew_leases(found)  # the worker's heartbeat lands now
        return queryset.filter(pk__in=[row.pk for row in found])

    monkeypatch.setattr(JobQuerySet, "stalled", stalled_then_renewed)

    assert rescue.rescue_stalled() == []

    job.refresh_from_db()
    assert (job.status, job.lease_token, job.errors) == (JobStatus.RUNNING, "w:1", [])


@pytest.mark.django_db(transaction=True)
def test_worker_start__rescues_a_dead_neighbours_jobs_at_once(start_worker):
    # Leases of a minute: only the dead-process check can explain a quick rescue.
    result = tasks.sleep_then_record.enqueue("survivor", 1)
    doomed = start_worker(env=LONG_LEASE)
    wait_for(lambda: job_of(result).status == JobStatus.RUNNING, message="claim")

    doomed.signal(signal.SIGKILL)
    doomed.wait()
    rescuer = start_worker(env=LONG_LEASE)

    wait_for(lambda: job_of(result).status == JobStatus.SUCCESSFUL, message="rescue")
    job = job_of(result)
    assert job.attempts == 2
    assert "process is gone" in job.errors[0]["message"]
    assert Run.objects.get(key="survivor").pid == rescuer.pid
    assert not WorkerProcess.objects.filter(pid=doomed.pid).exists()


@pytest.mark.django_db(transaction=True)
def test_poison_job__charged_once_per_crash__fails__and_the_jobs_around_it_run(
    start_worker,
):
    # A crash loses the successes not yet recorded: those jobs run again (at
    # least once), so the jobs around the poison are ones safe to repeat.
    before = [tasks.add.enqueue(i, 1) for i in range(5)]
    poison = tasks.end_process.enqueue()
    after = [tasks.add.enqueue(i, 100) for i in range(5)]
    others = before + after

    def all_done():
        # A supervisor: start a worker again whenever the last one died.
        if workers[-1].process.poll() is not None:
            workers.append(start_worker("--concurrency", "1", env=LONG_LEASE))
        done = Job.objects.filter(pk__in=[r.id for r in others], status="SUCCESSFUL")
        return job_of(poison).status == JobStatus.FAILED and done.count() == 10

    workers = [start_worker("--concurrency", "1", env=LONG_LEASE)]
    wait_for(all_done, timeout=90, message="the poison job to fail, the rest to run")

    job = job_of(poison)
    assert job.attempts == 2
    assert [e["exception_class_path"] for e in job.errors] == [
        "jobs.exceptions.WorkerLost"
    ] * 2
    assert [job_of(r).return_value for r in others] == [
        *(i + 1 for i in range(5)),
        *(i + 100 for i in range(5)),
    ]
    assert [w.process.returncode for w in workers[:2]] == [3, 3]


@pytest.mark.django_db(transaction=True)
def test_clock_skew__a_worker_whose_clock_runs_ahead_never_takes_a_live_job(
    postgres_only, start_worker
):
    # Leases of 1.5 s; one worker's clock is 30 s ahead. Judged on its own
    # clock, every lease the other worker holds would look long expired.
    results = [tasks.wait_then_record.enqueue(f"skew-{i}", 2) for i in range(6)]
    start_worker("--concurrency", "2")
    wait_for(
        lambda: Job.objects.filter(status=JobStatus.RUNNING).count() >= 2,
        message="the first worker to claim",
    )
    ahead = start_worker("--concurrency", "2", faketime="+30s")
    wait_for(lambda: "started queues" in ahead.output(), message="skewed start")

    wait_for(
        lambda: Job.objects.filter(status=JobStatus.SUCCESSFUL).count() == 6,
        timeout=60,
        message="every job to finish",
    )
    for result in results:
        job = job_of(result)
        assert (job.attempts, job.errors) == (1, []), job.errors
    assert Run.objects.count() == 6
    assert "rescued" not in ahead.output()


def test_faketime__is_installed():
    # The clock-skew test runs a worker under Debian's faketime.
    assert subprocess.run(["faketime", "-f", "+1s", "true"]).returncode == 0
