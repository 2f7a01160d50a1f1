"""The backend contract, run against every queue path.

A subclass says how jobs reach a worker (`drain`, `background_worker`); the
behaviour asserted here must hold the same on each path, the way Django runs
`SessionTestsMixin` against every session backend. The contract is a few
mixins by topic, combined into `BackendContract`.
"""

from datetime import datetime, timedelta

import pytest
from django.tasks import TaskResultStatus
from django.tasks.signals import task_finished, task_started
from django.utils import timezone

from jobs.models import Job, JobStatus
from jobs.notify import doorbell
from tests.testapp import tasks
from tests.testapp.models import Run

from .helpers import make_job, wait_for


class QueuePath:
    """How jobs reach a worker: a subclass defines `drain()` and
    `background_worker()`."""

    def drain(self, queues=None):
        raise NotImplementedError("subclasses must run a worker until idle")

    def background_worker(self):
        """Return a context manager running a worker while the block runs."""
        raise NotImplementedError("subclasses must start a worker")

    def drain_until_finished(self):
        """Drain again and again until no job is READY or RUNNING."""
        unfinished = Job.objects.filter(status__in=[JobStatus.READY, JobStatus.RUNNING])

        def drained():
            if not unfinished.exists():
                return True
            self.drain()
            return not unfinished.exists()

        wait_for(drained, timeout=120, message="every job to finish")

    def run_to_the_end(self, result):
        """Drain until every job finished; return `result` refreshed."""
        self.drain_until_finished()
        result.refresh()
        return result


class ResultsContract(QueuePath):
    """What a run leaves in its result, and what the worker does with a job
    it cannot run."""

    def test_success__result_holds_return_value_and_one_attempt(self):
        result = tasks.add.enqueue(2, 3)
        assert result.status == TaskResultStatus.READY

        self.drain()

        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL
        assert result.return_value == 5
        assert result.attempts == 1
        assert result.errors == []
        assert result.started_at <= result.finished_at
        assert result.is_finished

    def test_async_task__runs(self):
        result = tasks.async_add.enqueue(20, 22)

        self.drain()

        result.refresh()
        assert result.return_value == 42

    def test_unknown_task_path__fails_job_and_worker_goes_on(self):
        missing = make_job(task_path="tests.testapp.tasks.gone", max_attempts=1)
        not_task = make_job(task_path="tests.testapp.tasks.not_a_task", max_attempts=1)
        doorbell.ring([missing, not_task])  # rows made by hand: ring like enqueue
        good = tasks.add.enqueue(1, 1)

        self.drain_until_finished()

        missing.refresh_from_db()
        not_task.refresh_from_db()
        assert missing.status == JobStatus.FAILED
        assert "tests.testapp.tasks.gone" in missing.errors[0]["message"]
        assert missing.errors[0]["exception_class_path"].endswith("TaskNotFound")
        assert "is not a task" in not_task.errors[0]["message"]
        assert tasks.add.get_result(good.id).status == TaskResultStatus.SUCCESSFUL

    def test_return_value_not_json__fails_with_clear_error(self):
        result = tasks.return_object.using(max_attempts=1).enqueue()

        self.drain_until_finished()

        job = Job.objects.get(pk=result.id)
        assert job.status == JobStatus.FAILED
        assert "return value is not JSON-serializable" in job.errors[0]["message"]

    def test_signals__started_and_finished_are_sent(self):
        seen = []

        def on_started(sender, task_result, **kwargs):
            seen.append(("started", task_result.id, task_result.status))

        def on_finished(sender, task_result, **kwargs):
            seen.append(("finished", task_result.id, task_result.status))

        task_started.connect(on_started)
        task_finished.connect(on_finished)
        try:
            result = tasks.add.enqueue(1, 2)
            self.drain()
        finally:
            task_started.disconnect(on_started)
            task_finished.disconnect(on_finished)

        assert seen == [
            ("started", result.id, TaskResultStatus.RUNNING),
            ("finished", result.id, TaskResultStatus.SUCCESSFUL),
        ]


class RetriesContract(QueuePath):
    """A failure is retried with growing delays until the attempts run out,
    unless it is permanent."""

    def test_failure__one_error_per_attempt_then_failed(self):
        result = self.run_to_the_end(tasks.always_fail.enqueue())

        assert result.status == TaskResultStatus.FAILED
        assert result.attempts == 2
        assert len(result.errors) == 2
        assert {e.exception_class for e in result.errors} == {ValueError}
        assert "this task always fails" in result.errors[-1].traceback
        with pytest.raises(ValueError, match="Task failed"):
            _ = result.return_value

    def test_retry__fails_twice_then_succeeds_with_growing_delays(self):
        result = self.run_to_the_end(tasks.fail_times.enqueue("retry", times=2))

        job = Job.objects.get(pk=result.id)
        assert result.status == TaskResultStatus.SUCCESSFUL
        assert result.return_value == 3
        assert result.attempts == 3 == job.attempts
        assert len(result.errors) == 2
        assert [e["attempt"] for e in job.errors] == [1, 2]
        # Backoff base 0.2 s with +/-20% jitter: waits of >= 0.16 s, then
        # >= 0.32 s, measured between the failures and the next attempts.
        failed_at = [datetime.fromisoformat(e["failed_at"]) for e in job.errors]
        first_wait = (failed_at[1] - failed_at[0]).total_seconds()
        second_wait = (job.last_attempted_at - failed_at[1]).total_seconds()
        assert first_wait >= 0.16
        assert second_wait >= 0.32
        assert Run.objects.get(key="retry").attempt == 3

    def test_permanent_failure__no_retry(self):
        result = self.run_to_the_end(tasks.fail_permanently.enqueue())

        assert result.status == TaskResultStatus.FAILED
        assert result.attempts == 1
        assert result.errors[0].exception_class_path.endswith("PermanentFailure")


class SchedulingContract(QueuePath):
    """Which job runs first, not before it is due, and only on its queues."""

    def test_priority__higher_first(self):
        for priority in (-10, 0, 10, 5):
            tasks.record_run.using(priority=priority).enqueue(f"p{priority}")

        self.drain()

        order = list(Run.objects.order_by("id").values_list("key", flat=True))
        assert order == ["p10", "p5", "p0", "p-10"]

    def test_run_after__waits_until_due(self):
        run_after = timezone.now() + timedelta(seconds=0.6)
        result = tasks.record_run.using(run_after=run_after).enqueue("later")

        self.drain()
        if timezone.now() < run_after:  # a slow drain may end after it is due
            assert Job.objects.get(pk=result.id).status == JobStatus.READY

        self.drain_until_finished()
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL
        assert result.started_at >= run_after  # never early, however slow
        assert tasks.record_run.get_result(result.id).task.run_after == run_after

    def test_queues__worker_takes_only_its_queues(self):
        other = tasks.record_on_other_queue.enqueue("other")
        default = tasks.record_run.enqueue("default")

        self.drain(queues=["default"])

        assert Job.objects.get(pk=default.id).status == JobStatus.SUCCESSFUL
        assert Job.objects.get(pk=other.id).status == JobStatus.READY


class RunningContract(QueuePath):
    """A running job reports progress, and is stopped at its timeout."""

    def test_progress__visible_while_running(self):
        result = tasks.report_then_wait.enqueue(1.0)

        with self.background_worker():
            job = wait_for(
                lambda: Job.objects.filter(pk=result.id, progress=50).first(),
                message="progress 50",
            )
            assert job.status == JobStatus.RUNNING
            assert job.progress_message == "half way"
            wait_for(
                lambda: Job.objects.filter(
                    pk=result.id, status=JobStatus.SUCCESSFUL
                ).exists(),
                message="job to succeed",
            )

    def test_timeout__stops_sync_and_async_tasks(self):
        # Tasks that would run 30 s on their own and return "not stopped".
        sync = tasks.overrun.using(max_attempts=1).enqueue(30)
        coro = tasks.async_overrun.using(max_attempts=1).enqueue(30)

        self.drain_until_finished()

        for result in (sync, coro):
            job = Job.objects.get(pk=result.id)
            assert job.status == JobStatus.FAILED
            assert job.return_value is None
            # Stopped, not marked late after running to its end.
            assert job.finished_at - job.last_attempted_at < timedelta(seconds=30)
            assert job.errors[0]["exception_class_path"] == "jobs.exceptions.JobTimeout"
            assert "timed out" in job.errors[0]["message"]


class BackendContract(
    ResultsContract, RetriesContract, SchedulingContract, RunningContract
):
    """Mix into a test class that defines `drain()` and `background_worker()`."""
