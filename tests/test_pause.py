"""Paused queues: a paused queue takes jobs, workers of both kinds start
none of them until it is resumed, and its running jobs finish. The pause
is a row, so it holds across worker restarts; `manage.py jobqueue` and the
dashboard's buttons (with `jobs.pause_queue`) pause and resume; `/health`
names paused queues without calling them degraded.
"""

import threading

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from jobs.core import hot_path, pausing
from jobs.maintenance import redispatch
from jobs.models import Job, JobStatus, QueuePause
from jobs.notify import pusher
from tests.testapp import tasks
from tests.testapp.models import Run

from .helpers import (
    SIMPLE,
    claimed_since,
    database_clock,
    get_health,
    in_the_past,
    make_job,
    make_worker,
    status_of,
    wait_for,
)

DASHBOARD = "admin:jobs_job_dashboard"


def ran(key):
    return Run.objects.filter(key=key).count()


def succeeded(result):
    return status_of(result) == JobStatus.SUCCESSFUL


# --- Workers ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_jobworker__starts_no_job_of_a_paused_queue_until_it_is_resumed(
    start_worker,
):
    call_command("jobqueue", "pause", "default")
    held = [tasks.record_run.enqueue(f"held-{i}") for i in range(3)]
    tasks.record_on_other_queue.enqueue("other")

    worker = start_worker("--concurrency", "2")  # takes both queues
    wait_for(lambda: ran("other") == 1, message="the other queue's job")

    # Older than the other job, so without the pause it would have run first.
    assert {status_of(r) for r in held} == {JobStatus.READY}
    assert Job.objects.filter(queue_name="default", attempts=0).count() == 3

    call_command("jobqueue", "resume", "default")
    wait_for(lambda: all(succeeded(r) for r in held), message="the held jobs")
    assert [ran(f"held-{i}") for i in range(3)] == [1, 1, 1]
    assert Job.objects.filter(queue_name="default", attempts=1).count() == 3
    assert worker.process.poll() is None


@pytest.mark.django_db(transaction=True)
def test_jobworker__a_pause_survives_a_worker_restart(start_worker):
    call_command("jobqueue", "pause", "default")
    held = tasks.record_run.enqueue("held")
    first = start_worker()
    wait_for(lambda: "started queues" in first.output(), message="a worker")
    first.stop()

    second = start_worker()
    later = tasks.record_on_other_queue.enqueue("after-restart")
    wait_for(lambda: succeeded(later), message="the other queue's job")
    assert status_of(held) == JobStatus.READY

    call_command("jobqueue", "resume", "default")
    wait_for(lambda: succeeded(held), message="the held job")
    assert ran("held") == 1
    assert second.process.poll() is None


@pytest.mark.django_db(transaction=True)
def test_jobworker__a_running_job_finishes_when_its_queue_is_paused(start_worker):
    running = tasks.report_then_wait.enqueue(0.5)
    start_worker()
    wait_for(
        lambda: Job.objects.filter(pk=running.id, progress__isnull=False).exists(),
        message="the job to start",
    )

    call_command("jobqueue", "pause", "default")
    held = tasks.record_run.enqueue("held")
    other = tasks.record_on_other_queue.enqueue("other")

    wait_for(lambda: succeeded(running), message="the running job to finish")
    wait_for(lambda: succeeded(other), message="the other queue's job")
    assert Job.objects.get(pk=running.id).attempts == 1
    assert status_of(held) == JobStatus.READY


@pytest.mark.django_db(transaction=True)
def test_rqworker__leaves_a_paused_queues_jobs_ready_and_runs_them_on_resume(
    start_rqworker,
):
    call_command("jobqueue", "pause", "default")
    held = [tasks.record_run.enqueue(f"held-{i}") for i in range(3)]
    worker = start_rqworker("--worker-class", SIMPLE)

    # RQ pops the default queue before the other one: by the time the other
    # queue's job ran, the worker had popped the held ones and left them.
    other = tasks.record_on_other_queue.enqueue("other")
    wait_for(lambda: succeeded(other), message="the other queue's job")
    wait_for(
        lambda: worker.output().count("its queue is paused") >= 3,
        message="the held jobs to be popped",
    )
    assert Job.objects.filter(queue_name="default", attempts=0).count() == 3
    assert {status_of(r) for r in held} == {JobStatus.READY}

    call_command("jobqueue", "resume", "default")
    wait_for(lambda: all(succeeded(r) for r in held), message="the held jobs")
    assert [ran(f"held-{i}") for i in range(3)] == [1, 1, 1]
    assert Job.objects.filter(queue_name="default", attempts=1).count() == 3


@pytest.mark.django_db(transaction=True)
def test_redispatch__does_not_push_the_jobs_of_a_paused_queue(
    redis_dispatch, redis_server, settings
):
    settings.JOB_REDISPATCH_GRACE_SECONDS = 0
    pausing.pause("default")
    held = tasks.noop.enqueue()
    assert pusher.pusher.flush(timeout=10)
    redis_server.client().delete(f"rq:job:{held.id}-0")  # as if popped and ended

    assert redispatch.redispatch() == []

    pausing.resume("default")  # pushes it itself
    assert redis_server.client().exists(f"rq:job:{held.id}-0")
    assert redispatch.redispatch() == []


@pytest.mark.django_db(transaction=True)
def test_pause__once_it_returns_no_job_of_the_queue_starts(postgres_only, start_worker):
    with transaction.atomic():
        tasks.noop.enqueue_many([((), {})] * 20_000)
    workers = [start_worker("--queue", "default") for _ in range(2)]
    wait_for(
        lambda: Job.objects.filter(status=JobStatus.SUCCESSFUL).count() > 500,
        message="the workers to be claiming",
    )

    pausing.pause("default")
    paused_at = database_clock()
    ready = set(Job.objects.filter(status=JobStatus.READY).values_list("pk", flat=True))
    assert ready  # the workers were still claiming

    for _ in range(2):  # two rounds of claims that started after the pause
        moment = database_clock()
        wait_for(lambda m=moment: claimed_since(m), message="a claim after it")
    # Each claim stamps `last_attempted_at` with its statement's start.
    assert not Job.objects.filter(last_attempted_at__gt=paused_at).exists()
    assert not Job.objects.filter(pk__in=ready).exclude(status=JobStatus.READY)
    assert all(w.process.poll() is None for w in workers)


# --- The claim ----------------------------------------------------------------


def waiting_for_the_pause_table():
    """Say whether a session waits for a lock on the pause table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks "
            "WHERE relation = 'jobs_queuepause'::regclass AND NOT granted"
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_pause__waits_for_the_claims_in_flight_on_postgresql(postgres_only):
    """A claim that read the pause table before the pause commits first: the
    pause waits for it, so no claim that missed the pause ends after it."""
    outcome = []

    def pause_elsewhere():
        try:
            outcome.append(pausing.pause("default")[1])
        finally:
            connection.close()

    thread = threading.Thread(target=pause_elsewhere)
    with transaction.atomic():
        hot_path.claim(["default"], 1, "w", "w:1")  # reads the pause table
        thread.start()
        wait_for(waiting_for_the_pause_table, message="the pause to wait")
        assert not QueuePause.objects.exists()
    thread.join(timeout=30)
    assert outcome == [True]


# --- manage.py jobqueue -------------------------------------------------------


@pytest.mark.django_db
def test_jobqueue__pauses_lists_and_resumes(capsys):
    make_job(queue_name="reports")  # present, though not configured
    make_job()

    call_command("jobqueue", "pause", "reports")
    assert capsys.readouterr().out == "Paused queue reports.\n"
    call_command("jobqueue", "list")
    listed = capsys.readouterr().out.splitlines()

    assert listed[0].split() == ["queue", "state", "waiting"]
    rows = {line.split()[0]: line for line in listed[1:]}
    assert set(rows) == {"default", "other", "reports"}
    assert rows["reports"].split()[1:3] == ["paused", "since"]
    assert rows["reports"].split()[-1] == "1"
    assert rows["default"].split()[1:] == ["running", "1"]
    assert QueuePause.objects.get(pk="reports").paused_by.endswith("(manage.py)")

    call_command("jobqueue", "resume", "reports")
    assert "Resumed queue reports." in capsys.readouterr().out
    assert not QueuePause.objects.exists()


@pytest.mark.django_db
def test_jobqueue__pausing_twice_keeps_the_first_pause(capsys):
    call_command("jobqueue", "pause", "default")
    first = QueuePause.objects.get(pk="default")
    call_command("jobqueue", "pause", "default")

    assert "already paused" in capsys.readouterr().out
    assert QueuePause.objects.get(pk="default").paused_at == first.paused_at


@pytest.mark.django_db
def test_jobqueue__an_unknown_queue_is_an_error_and_stores_nothing():
    with pytest.raises(CommandError, match="Unknown queue 'nope'"):
        call_command("jobqueue", "pause", "nope")
    with pytest.raises(CommandError, match="Unknown queue 'nope'"):
        call_command("jobqueue", "resume", "nope")
    assert not QueuePause.objects.exists()


# --- The dashboard's buttons --------------------------------------------------


def viewer(django_user_model, *permissions):
    user = django_user_model.objects.create_user("ops", password="pw", is_staff=True)
    for codename in ("view_job", *permissions):
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="jobs", codename=codename)
        )
    return user


@pytest.mark.django_db
def test_dashboard__pause_and_resume_buttons_with_the_permission(
    client, django_user_model
):
    client.force_login(viewer(django_user_model, "pause_queue"))
    page = client.get(reverse(DASHBOARD))
    assert page.text.count('class="queue-pause"') == 2  # default, other

    done = client.post(reverse("admin:jobs_job_pause_queue", args=["other"]))

    assert done.status_code == 302
    assert QueuePause.objects.get(pk="other").paused_by == "ops"
    page = client.get(reverse(DASHBOARD))
    assert "Paused queue other." in page.text
    rows = {row["name"]: row for row in page.context["queues"]}
    assert rows["other"]["paused"] is not None and rows["default"]["paused"] is None
    assert 'class="queue-resume"' in page.text

    client.post(reverse("admin:jobs_job_resume_queue", args=["other"]))
    assert not QueuePause.objects.exists()


@pytest.mark.django_db
def test_dashboard__without_the_permission_no_buttons_and_no_pause(
    client, django_user_model
):
    client.force_login(viewer(django_user_model))
    page = client.get(reverse(DASHBOARD))
    assert "queue-pause" not in page.text

    refused = client.post(reverse("admin:jobs_job_pause_queue", args=["default"]))

    assert refused.status_code == 403
    assert not QueuePause.objects.exists()


@pytest.mark.django_db
def test_dashboard__pausing_needs_a_post_with_the_csrf_token(django_user_model):
    client = Client(enforce_csrf_checks=True)
    client.force_login(viewer(django_user_model, "pause_queue"))
    url = reverse("admin:jobs_job_pause_queue", args=["default"])

    assert client.get(url).status_code == 405
    assert client.post(url).status_code == 403  # no token
    assert not QueuePause.objects.exists()


@pytest.mark.django_db
def test_dashboard__an_unknown_queue_says_so_and_stores_nothing(staff_client):
    staff_client.post(reverse("admin:jobs_job_pause_queue", args=["nope"]))

    page = staff_client.get(reverse(DASHBOARD))
    assert "Unknown queue &#x27;nope&#x27;" in page.text
    assert not QueuePause.objects.exists()


# --- /health ------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_cache")
def test_health__a_paused_queue_is_named_and_its_waiting_jobs_do_not_degrade(
    client, settings
):
    settings.JOB_HEALTH_MAX_WAIT_SECONDS = 60
    settings.JOB_HEALTH_MAX_WAITING = 1
    make_worker()
    for _ in range(2):
        make_job(queue_name="other", run_after=in_the_past(600))
    pausing.pause("other")

    code, body = get_health(client)

    queue = body["checks"]["queue"]
    assert (code, body["status"]) == (200, "healthy")
    assert queue["details"]["paused"] == ["other"]
    assert queue["details"]["paused_waiting"] == 2
    assert queue["details"]["waiting"] == 2
    assert "Paused queues: other" in queue["message"]


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_cache")
def test_health__waiting_jobs_of_a_running_queue_still_degrade_beside_a_paused_one(
    client, settings
):
    settings.JOB_HEALTH_MAX_WAIT_SECONDS = 60
    make_worker()
    make_job(queue_name="other", run_after=in_the_past(6000))
    make_job(run_after=in_the_past(600))
    pausing.pause("other")

    _, body = get_health(client)

    assert body["status"] == "degraded"
    assert 600 <= body["checks"]["queue"]["details"]["oldest_wait_seconds"] < 700
