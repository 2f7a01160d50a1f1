"""A worker's start-up: what it does before its first job, what waits, and
what it never loads."""

import json
import subprocess
import sys

import pytest

from jobs import maintenance
from jobs.models import Job, JobStatus

from .helpers import ROOT, command_environment, make_job, run_worker
from .testapp.tasks import sleep_then_record


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

    # The first turn saw the job started (a slow run may take a second turn).
    assert started_then[0] is True
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

    # Its first turn, and the full one it takes once its queues are drained.
    assert len(made) == 2
    for job in made:
        assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCESSFUL


@pytest.mark.django_db(transaction=True)
def test_burst_worker__first_turn_only_makes_jobs_due__housekeeping_waits_for_the_drain(
    monkeypatch, settings
):
    settings.JOB_MAINTENANCE_SECONDS = 3600  # no full turn falls in the drain
    job = sleep_then_record.enqueue("slow", 0.5)
    turns = []

    def make_due():
        turns.append("make due")

    def housekeeping():
        turns.append("housekeeping")
        finished = Job.objects.get(pk=job.id).status == JobStatus.SUCCESSFUL
        turns.append("after the job" if finished else "beside the job")

    monkeypatch.setattr(maintenance, "MAKE_DUE", [make_due])
    monkeypatch.setattr(maintenance, "DUTIES", [make_due, housekeeping])

    run_worker()

    assert turns == ["make due", "make due", "housekeeping", "after the job"]


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


# A Redis URL nothing answers at: what a process does with REDIS_URL set,
# whether Redis is up or not.
REDIS_NOWHERE = "redis://127.0.0.1:1/0"

PROBE = (
    "import gc; print(f'enabled={gc.isenabled()}', "
    "f'frozen={gc.get_freeze_count() > 0}')"
)


# --- What a worker loads: no web code, and no Redis client without Redis ----

WEB_MODULES = ("config.urls", "jobs.web.admin", "django_rq.admin")
# Redis's and RQ's clients, and django-health-check's package (it imports
# dnspython, smtplib and Redis's client).
REDIS_MODULES = ("redis", "rq", "django_rq", "health_check", "dns", "smtplib")


def manage_py(*args, env=None, watch=WEB_MODULES):
    """Run `manage.py *args` in a subprocess; on exit it prints which of the
    modules `watch` names it had imported."""
    report = (
        "import atexit, runpy, sys\n"
        f"watch = {watch!r}\n"
        "atexit.register(\n"
        "    lambda: print('loaded', [m for m in watch if m in sys.modules])\n"
        ")\n"
        "sys.argv[0] = 'manage.py'\n"
        "runpy.run_path('manage.py', run_name='__main__')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", report, *args],
        cwd=ROOT,
        env=command_environment(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def loaded(done):
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("loaded")]
    return line.removeprefix("loaded ")


@pytest.mark.django_db(transaction=True)  # the subprocess reads the test database
def test_jobworker__loads_neither_the_urlconf_nor_the_admin():
    make_job()

    done = manage_py("jobworker", "--burst")

    assert done.returncode == 0, done.stderr
    assert loaded(done) == "[]"
    assert Job.objects.get().status == JobStatus.SUCCESSFUL


@pytest.mark.django_db(transaction=True)
def test_jobworker_without_redis__loads_no_redis_client_nor_dnspython():
    make_job()

    done = manage_py("jobworker", "--burst", env={"REDIS_URL": ""}, watch=REDIS_MODULES)

    assert done.returncode == 0, done.stderr
    assert loaded(done) == "[]"
    assert Job.objects.get().status == JobStatus.SUCCESSFUL


@pytest.mark.django_db(transaction=True)
def test_jobworker_with_redis__has_django_rqs_app():
    make_job()

    done = manage_py(
        "jobworker", "--burst", env={"REDIS_URL": REDIS_NOWHERE}, watch=("django_rq",)
    )

    assert done.returncode == 0, done.stderr
    assert loaded(done) == "['django_rq']"
    assert Job.objects.get().status == JobStatus.SUCCESSFUL


@pytest.mark.parametrize("command", ["rqworker", "rqworker-pool"])
def test_rq_commands_without_redis__refuse_naming_the_setting(command):
    done = manage_py(command, "default", "--burst", env={"REDIS_URL": ""})

    assert done.returncode == 1
    assert f"REDIS_URL is not set: {command} runs RQ's workers" in done.stderr
    assert "manage.py jobworker" in done.stderr


@pytest.mark.django_db(transaction=True)
def test_jobworker__still_refuses_a_schedule_that_cannot_run():
    schedules = {"nightly": {"task": "tests.testapp.tasks.record_run", "cron": "61"}}

    done = manage_py(
        "jobworker", "--burst", env={"JOB_SCHEDULES": json.dumps(schedules)}
    )

    assert done.returncode == 1
    assert "(jobs.E024) JOB_SCHEDULES['nightly']" in done.stderr


def test_manage_py_check__still_checks_the_admin_and_the_urlconf():
    # With Redis, django_rq's app (and its admin module) is installed.
    done = manage_py("check", env={"REDIS_URL": REDIS_NOWHERE})

    assert done.returncode == 0, done.stderr
    # The admin's checks imported every admin module; the URL checks, the URLconf.
    assert loaded(done) == repr(list(WEB_MODULES))


def test_a_task_in_a_worker__still_reverses_admin_urls():
    # Loading the URLconf registers every admin module (`config.urls`).
    probe = (
        "from django.urls import reverse; print(reverse('admin:jobs_job_changelist'))"
    )

    done = manage_py("shell", "--no-imports", "-c", probe)

    assert done.returncode == 0, done.stderr
    assert "/admin/jobs/job/" in done.stdout
