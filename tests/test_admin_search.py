"""The job list's search: a job id or its start, words of a task path, or
text in the arguments, each finding exactly its jobs (both databases; the
plans on PostgreSQL are in `test_postgres_plans.py`)."""

import pytest
from django.urls import reverse

from jobs.models import Job, JobStatus
from jobs.web.admin_listing import search

from .helpers import CHANGELIST, make_job

pytestmark = pytest.mark.django_db


def found(client, term):
    listing = client.get(reverse(CHANGELIST), {"q": term})
    return {job.pk for job in listing.context["cl"].result_list}


@pytest.fixture
def jobs():
    return {
        "repo": make_job(args=["https://example.org/Radar.git"]),
        "kwarg": make_job(kwargs={"customer": "ACME-Corp"}, status=JobStatus.FAILED),
        "rare": make_job(task_path="tests.testapp.tasks.rare", args=[7]),
        "plain": make_job(args=[1, 2], status=JobStatus.SUCCESSFUL),
    }


def test_search__by_id_prefix_finds_that_job(staff_client, jobs):
    assert found(staff_client, str(jobs["kwarg"].pk)[:8]) == {jobs["kwarg"].pk}


def test_search__by_task_words_finds_that_tasks_jobs(staff_client, jobs):
    assert found(staff_client, "testapp RARE") == {jobs["rare"].pk}


@pytest.mark.parametrize(
    ("term", "name"),
    [("radar.git", "repo"), ("acme-corp", "kwarg"), ('"customer"', "kwarg")],
)
def test_search__by_argument_text_finds_jobs_holding_it_any_case(
    staff_client, jobs, term, name
):
    assert found(staff_client, term) == {jobs[name].pk}


def test_search__by_argument_text_shorter_than_three_characters_finds_nothing(
    staff_client, jobs
):
    assert found(staff_client, "7") == set()


def test_search__a_task_match_wins_over_argument_text(staff_client, jobs):
    # "rare" names a task: its jobs, not jobs whose arguments say "rare".
    make_job(args=["rare"])

    assert found(staff_client, "rare") == {jobs["rare"].pk}


def test_search__by_argument_text_takes_like_wildcards_literally(jobs):
    make_job(args=["100%_sure"])

    assert search(Job.objects.all(), "0%_s").count() == 1
    assert search(Job.objects.all(), "1_0").count() == 0  # "_" is no wildcard
