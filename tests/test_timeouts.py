"""A timeout means what the README says, whatever the task does with exceptions.

At its deadline a task gets a JobTimeout, which `except Exception:` does not
catch. A run still going JOB_TIMEOUT_GRACE_SECONDS later (it swallowed even
that, or is blocked in C) is ended by the worker: the job is recorded as
timed out, the late run can never record, and the worker's thread is replaced.
"""

import pytest

from jobs.models import JobStatus
from tests.testapp import tasks
from tests.testapp.models import Run

from .helpers import job_of, run_worker, status_of, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

GRACE = {"JOB_TIMEOUT_GRACE_SECONDS": "0.5"}


def last_error(result):
    return job_of(result).errors[-1]


def one_thread_worker(start_worker, **env):
    return start_worker("--concurrency", "1", env={**GRACE, **env})


def test_timeout__ends_a_task_that_catches_exception(start_worker):
    stuck = tasks.loop_catching.using(max_attempts=1).enqueue("caught", 60)
    behind = tasks.record_run.enqueue("behind")
    one_thread_worker(start_worker)

    wait_for(lambda: status_of(stuck) == JobStatus.FAILED, message="timeout")
    assert last_error(stuck)["exception_class_path"] == "jobs.exceptions.JobTimeout"
    assert "abandoned" not in last_error(stuck)["message"]  # the soft limit did it
    wait_for(lambda: status_of(behind) == JobStatus.SUCCESSFUL, message="next job")
    assert not Run.objects.filter(key="caught").exists()


@pytest.mark.parametrize(
    "stuck_task, args",
    [
        (tasks.loop_catching, ("swallowed", 60, "BaseException")),
        (tasks.block_in_c, (60,)),
        (tasks.async_swallow_cancel, (60,)),
    ],
    ids=["swallows-base-exception", "blocked-in-c", "coroutine-swallows-cancel"],
)
def test_hard_limit__ends_the_run_and_the_next_job_starts(
    start_worker, stuck_task, args
):
    stuck = stuck_task.using(max_attempts=1).enqueue(*args)
    behind = tasks.record_run.enqueue("behind")
    worker = one_thread_worker(start_worker)

    wait_for(lambda: status_of(stuck) == JobStatus.FAILED, message="hard limit")
    error = last_error(stuck)
    assert error["exception_class_path"] == "jobs.exceptions.JobTimeout"
    assert "abandoned" in error["message"]
    wait_for(lambda: status_of(behind) == JobStatus.SUCCESSFUL, message="next job")
    assert worker.process.poll() is None


def test_hard_limit__the_late_run_can_never_record(start_worker):
    late = tasks.loop_catching.using(max_attempts=1).enqueue("late", 3, "BaseException")
    one_thread_worker(start_worker)
    wait_for(lambda: status_of(late) == JobStatus.FAILED, message="hard limit")

    # The abandoned thread runs on to its end and writes its side effect...
    wait_for(lambda: Run.objects.filter(key="late").exists(), message="late end")

    # ...but its result is not the job's: the job stays as the worker left it.
    job = job_of(late)
    assert (job.status, job.return_value, job.attempts) == (JobStatus.FAILED, None, 1)


def test_hard_limit__a_timed_out_job_with_attempts_left_is_retried(start_worker):
    stuck = tasks.block_in_c.using(max_attempts=2, backoff_base=0.1).enqueue(60)
    one_thread_worker(start_worker)

    wait_for(lambda: job_of(stuck).attempts == 2, message="the retry to start")
    wait_for(lambda: status_of(stuck) == JobStatus.FAILED, message="second timeout")
    errors = job_of(stuck).errors
    assert [e["attempt"] for e in errors] == [1, 2]
    assert {e["exception_class_path"] for e in errors} == {"jobs.exceptions.JobTimeout"}


def test_hard_limit__too_many_stuck_threads__worker_exits_1(start_worker):
    stuck = [tasks.block_in_c.using(max_attempts=1).enqueue(60) for _ in range(2)]
    worker = one_thread_worker(start_worker)

    assert worker.wait(timeout=60) == 1, worker.output()
    assert "stuck past their time limit" in worker.output()
    assert {status_of(result) for result in stuck} == {JobStatus.FAILED}


def test_per_call_timeout__is_honoured_by_the_worker(start_worker):
    result = tasks.busy_python.using(timeout=0.5, max_attempts=1).enqueue(60)
    one_thread_worker(start_worker)

    wait_for(lambda: status_of(result) == JobStatus.FAILED, message="timeout")
    assert job_of(result).timeout == 0.5
    assert last_error(result)["exception_class_path"] == "jobs.exceptions.JobTimeout"


def test_per_call_backoff__is_stored_and_used_for_the_retry():
    result = tasks.always_fail.using(backoff_base=600).enqueue()

    run_worker(max_jobs=1)

    job = job_of(result)
    assert job.backoff_base == 600
    assert job.status == JobStatus.READY
    # The first retry waits backoff_base seconds, give or take the 20% jitter.
    assert (job.run_after - job.last_attempted_at).total_seconds() > 400
