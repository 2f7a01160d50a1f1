"""The read-only job admin (the full console is a later issue)."""

import pytest
from django.urls import reverse

from jobs.models import JobStatus

from .helpers import make_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("boss", "b@example.org", "pw")
    client.force_login(user)
    return client


def test_job_list_and_page_render_for_staff(staff_client):
    job = make_job(
        status=JobStatus.FAILED,
        errors=[
            {
                "exception_class_path": "builtins.ValueError",
                "message": "boom",
                "traceback": "Traceback: ValueError: boom",
                "attempt": 1,
            }
        ],
    )

    listing = staff_client.get(reverse("admin:jobs_job_changelist"))
    page = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk]))

    assert listing.status_code == 200
    assert job.short_id in listing.text
    assert page.status_code == 200
    assert "Traceback: ValueError: boom" in page.text


def test_jobs_cannot_be_added_or_deleted_by_hand(staff_client):
    job = make_job()

    assert staff_client.get(reverse("admin:jobs_job_add")).status_code == 403
    delete = staff_client.get(reverse("admin:jobs_job_delete", args=[job.pk]))
    assert delete.status_code == 403
