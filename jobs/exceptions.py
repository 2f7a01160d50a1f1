"""Exceptions that application code and callers of the job system see."""

from django.tasks.exceptions import InvalidTask


class InvalidTaskArguments(InvalidTask, TypeError):  # noqa: N818 (like InvalidTask)
    """An argument of a task cannot be stored as JSON."""


class PermanentFailure(Exception):  # noqa: N818 (it names an outcome, not a bug)
    """Raise from a task to fail the job now, without further retries."""


class JobTimeout(BaseException):  # noqa: N818
    """The job ran longer than its `timeout`.

    A BaseException, like `asyncio.CancelledError` and `SystemExit`, so the
    common `except Exception:` in a task does not swallow it. A task that
    swallows it anyway is stopped by the hard limit (README, "Timeouts").
    """


class WorkerLost(Exception):  # noqa: N818
    """The worker running the job stopped renewing its lease."""


class WorkerInterrupted(Exception):  # noqa: N818
    """The worker was stopped at once while the job ran."""


class TaskNotFound(Exception):  # noqa: N818
    """The job's task path no longer imports to a task."""


class JobQueueDisabled(InvalidTask):
    """Background jobs are switched off (`JOB_QUEUE_ENABLED`): nothing is stored."""


class JobCancelled(Exception):  # noqa: N818
    """Raise from a task that saw `context.cancel_requested()`: it ends CANCELLED."""


class UnknownQueue(ValueError):  # noqa: N818 (it names the input, like InvalidTask)
    """A queue name that is neither configured nor holds waiting jobs."""
