"""get_result, as callers of the django.tasks API see it: every field read back
as enqueued (the results enqueue_many returns are what it reads), every status
mapped to a public one, and ids that name no job refused.
"""

import dataclasses
import uuid

import pytest
from django.tasks import TaskResult, TaskResultStatus, default_task_backend
from django.tasks.exceptions import TaskResultDoesNotExist, TaskResultMismatch

from jobs.core.tasks import PUBLIC_STATUS
from jobs.models import Job, JobStatus
from tests.testapp import tasks

from .helpers import make_job

pytestmark = pytest.mark.django_db


def test_get_result__round_trips_every_field():
    result = tasks.add.enqueue(1, b=2)

    fetched = tasks.add.get_result(result.id)

    assert fetched.id == result.id
    assert fetched.args == [1] and fetched.kwargs == {"b": 2}
    assert fetched.enqueued_at == result.enqueued_at
    assert fetched.task.func is tasks.add.func
    assert fetched.backend == "default"


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "1' OR '1'='1", 42])
def test_get_result__malformed_id_does_not_exist(bad_id):
    with pytest.raises(TaskResultDoesNotExist, match="is not a job id"):
        tasks.add.get_result(bad_id)


def test_get_result__unknown_id_does_not_exist():
    with pytest.raises(TaskResultDoesNotExist, match="No job"):
        tasks.add.get_result(str(uuid.uuid4()))


def test_get_result__of_another_task_is_a_mismatch():
    result = tasks.add.enqueue(1, 2)

    with pytest.raises(TaskResultMismatch):
        tasks.noop.get_result(result.id)


@pytest.mark.parametrize(
    ("status", "public"),
    [
        (JobStatus.READY, TaskResultStatus.READY),
        (JobStatus.RUNNING, TaskResultStatus.RUNNING),
        (JobStatus.SUCCESSFUL, TaskResultStatus.SUCCESSFUL),
        (JobStatus.FAILED, TaskResultStatus.FAILED),
        (JobStatus.CANCELLED, TaskResultStatus.FAILED),
    ],
)
def test_get_result__maps_every_status(status, public):
    job = make_job(task_path="tests.testapp.tasks.add", status=status)

    assert tasks.add.get_result(str(job.pk)).status == public


def test_get_result__of_a_task_that_no_longer_imports_still_reads():
    job = make_job(task_path="tests.testapp.tasks.removed_long_ago")

    result = default_task_backend.get_result(str(job.pk))
    assert result.status == TaskResultStatus.READY
    assert result.args == []


def test_every_job_status_maps_to_a_django_status():
    assert set(PUBLIC_STATUS) == set(JobStatus)


def test_enqueue_many__results_are_those_get_result_reads():
    results = tasks.add.enqueue_many([((1, 2), {}), ((3,), {"b": 4})])

    for result in results:
        read = default_task_backend.get_result(result.id)
        for field in dataclasses.fields(TaskResult):
            if field.name != "task":
                assert getattr(result, field.name) == getattr(read, field.name)
        assert result.task.module_path == read.task.module_path
    results[0].args.append("mine")  # each result's arguments are its own
    assert results[1].args == [3]
    assert Job.objects.get(pk=results[0].id).args == [1, 2]
