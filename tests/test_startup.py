"""A worker's start-up: what it does before its first job, and what waits."""

import subprocess
import sys

import pytest

from jobs import maintenance
from jobs.models import Job, JobStatus

from .helpers import ROOT, command_environment, make_job, run_worker


@pytest.mark.django_db(transaction=True)
def test_worker__claims_its_first_jobs_before_its_first_maintenance_turn(
    monkeypatch,
):
    job = make_job()
    started_then = []

    def duty(holder):
        started_then.append(Job.objects.get(pk=job.pk).started_at is not None)

    monkeypatch.setattr(maintenance, "EVERY_WORKER", [duty])

    run_worker()

    assert started_then == [True]
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCESSFUL


@pytest.mark.django_db(transaction=True)
def test_burst_worker__runs_the_jobs_its_first_maintenance_turn_makes_due(
    monkeypatch,
):
    made = []
    monkeypatch.setattr(
        maintenance, "EVERY_WORKER", [lambda holder: made.append(make_job())]
    )

    run_worker()

    assert len(made) == 1
    assert Job.objects.get(pk=made[0].pk).status == JobStatus.SUCCESSFUL


@pytest.mark.django_db
def test_manage_py__collects_garbage_again_once_django_is_set_up():
    shell = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", PROBE],
        cwd=ROOT,
        env=command_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert shell.returncode == 0, shell.stderr
    # On, with what start-up made set aside (frozen) from every collection.
    assert shell.stdout.split() == ["enabled=True", "frozen=True"]


PROBE = (
    "import gc; print(f'enabled={gc.isenabled()}', "
    "f'frozen={gc.get_freeze_count() > 0}')"
)
