"""The job API: GET /api/jobs/<id>, POST .../retry and .../cancel."""

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from jobs.models import Job, JobStatus

from .helpers import make_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("reader", password="pw")


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


@pytest.fixture
def reader(client, user):
    grant(user, "view_job")
    client.force_login(user)
    return client


def csrf_client(user):
    """A client that enforces CSRF, with the token of a signed-in session."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/admin/login/")  # sets the csrftoken cookie
    return client, client.cookies["csrftoken"].value


def test_get__successful_job_includes_return_value(reader):
    job = make_job(
        status=JobStatus.SUCCESSFUL,
        return_value={"stars": 3},
        attempts=1,
        progress=100,
        progress_message="done",
        finished_at=timezone.now(),
    )

    data = reader.get(f"/api/jobs/{job.pk}").json()

    assert data["id"] == str(job.pk)
    assert data["status"] == "SUCCESSFUL"
    assert data["return_value"] == {"stars": 3}
    assert (data["progress"], data["progress_message"]) == (100, "done")
    assert (data["attempts"], data["max_attempts"]) == (1, 3)
    assert data["finished_at"] is not None


def test_get__failed_job_has_last_error_class_and_message_but_no_traceback(reader):
    errors = [
        {
            "exception_class_path": "builtins.KeyError",
            "message": "old",
            "traceback": "Traceback: old",
        },
        {
            "exception_class_path": "builtins.ValueError",
            "message": "boom",
            "traceback": "Traceback: secret frames",
        },
    ]
    job = make_job(status=JobStatus.FAILED, errors=errors)

    response = reader.get(f"/api/jobs/{job.pk}")

    assert response.json()["error"] == {
        "class": "builtins.ValueError",
        "message": "boom",
    }
    assert "Traceback" not in response.text
    assert "return_value" not in response.json()


def test_get__anonymous_gets_401_json(client):
    job = make_job()

    response = client.get(f"/api/jobs/{job.pk}")

    assert response.status_code == 401
    assert "error" in response.json()


def test_get__signed_in_without_view_permission_gets_403(client, user):
    client.force_login(user)

    response = client.get(f"/api/jobs/{make_job().pk}")

    assert response.status_code == 403
    assert "error" in response.json()


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "not-a-uuid", "123"])
def test_get__unknown_or_malformed_id_is_404_json(reader, job_id):
    response = reader.get(f"/api/jobs/{job_id}")

    assert response.status_code == 404
    assert response.json() == {"error": "No such job."}


def test_retry__with_permission_and_csrf_token_retries(user):
    grant(user, "retry_job", "view_job")
    job = make_job(status=JobStatus.FAILED, attempts=3, max_attempts=3)
    client, token = csrf_client(user)

    response = client.post(f"/api/jobs/{job.pk}/retry", HTTP_X_CSRFTOKEN=token)

    assert response.status_code == 200
    assert response.json()["job"]["status"] == "READY"
    assert Job.objects.get(pk=job.pk).status == JobStatus.READY


def test_retry__without_csrf_token_is_refused(user):
    grant(user, "retry_job")
    job = make_job(status=JobStatus.FAILED)
    client, _ = csrf_client(user)

    response = client.post(f"/api/jobs/{job.pk}/retry")

    assert response.status_code == 403
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED


def test_retry__needs_the_retry_permission(client, user):
    grant(user, "view_job", "cancel_job")
    client.force_login(user)
    job = make_job(status=JobStatus.FAILED)

    response = client.post(f"/api/jobs/{job.pk}/retry")

    assert response.status_code == 403
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED


def test_retry__a_successful_job_is_a_409_conflict(client, user):
    grant(user, "retry_job")
    client.force_login(user)
    job = make_job(status=JobStatus.SUCCESSFUL)

    response = client.post(f"/api/jobs/{job.pk}/retry")

    assert response.status_code == 409
    assert response.json()["changed"] is False


def test_cancel__with_permission_cancels_a_waiting_job(user):
    grant(user, "cancel_job", "view_job")
    job = make_job()
    client, token = csrf_client(user)

    response = client.post(f"/api/jobs/{job.pk}/cancel", HTTP_X_CSRFTOKEN=token)

    assert response.json()["job"]["status"] == "CANCELLED"
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_cancel__get_is_not_allowed(reader):
    job = make_job()

    response = reader.get(f"/api/jobs/{job.pk}/cancel")

    assert response.status_code == 405
    assert Job.objects.get(pk=job.pk).status == JobStatus.READY


@pytest.mark.parametrize("action, status", [("retry", "FAILED"), ("cancel", "READY")])
def test_post__without_the_view_permission__answers_without_the_job(
    user, action, status
):
    grant(user, f"{action}_job")
    client, token = csrf_client(user)
    job = make_job(status=status, return_value={"secret": 1})

    response = client.post(f"/api/jobs/{job.pk}/{action}", HTTP_X_CSRFTOKEN=token)

    assert response.status_code == 200
    assert response.json() == {"changed": True}
