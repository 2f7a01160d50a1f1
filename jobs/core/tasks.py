"""Our Task class, and Django's TaskResult for a job row.

The row is the truth: a worker rebuilds the task a row was enqueued with
(`bind_task`), and callers read a row as Django's TaskResult (`task_result`).
"""

from dataclasses import dataclass, fields, replace
from functools import cache, lru_cache

from django.tasks import Task, TaskResult, TaskResultStatus, task_backends
from django.tasks.base import TaskError
from django.utils.module_loading import import_string

from ..exceptions import TaskNotFound
from ..models import JobStatus
from ..upstream import RETURN_VALUE_FIELD
from .uniqueness import ordered_states

# Django's TaskResult knows four states; a cancelled job is finished and did
# not succeed, so callers see it as FAILED (the row keeps CANCELLED).
PUBLIC_STATUS = {
    JobStatus.READY: TaskResultStatus.READY,
    JobStatus.RUNNING: TaskResultStatus.RUNNING,
    JobStatus.SUCCESSFUL: TaskResultStatus.SUCCESSFUL,
    JobStatus.FAILED: TaskResultStatus.FAILED,
    JobStatus.CANCELLED: TaskResultStatus.FAILED,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class JobTask(Task):
    """A task with our per-task options, accepted by `@task(...)`."""

    max_attempts: int | None = None  # None: JOB_MAX_ATTEMPTS
    backoff_base: float | None = None  # seconds; None: JOB_BACKOFF_BASE_SECONDS
    timeout: float | None = None  # seconds a run may take; None: no limit
    # Unique jobs (`core.uniqueness`); any of these makes the task unique.
    unique: bool = False
    unique_key: str | None = None  # None: a hash of the call's arguments
    unique_for: float | None = None  # seconds after enqueue a finished job holds it
    unique_states: tuple[str, ...] | None = None  # None: uniqueness.states_of

    # At most `concurrency_limit` jobs of the same key run at once. The key
    # is formatted from each call's keyword arguments ("customer:{id}");
    # None with a limit: one key for the task (its path). `core.concurrency`.
    concurrency_key: str | None = None
    concurrency_limit: int | None = None

    def __post_init__(self):
        Task.__post_init__(self)  # validates; super() fails in a slotted dataclass
        object.__setattr__(self, "unique_states", ordered_states(self.unique_states))

    def using(
        self,
        *,
        max_attempts=None,
        backoff_base=None,
        timeout=None,
        unique=None,
        unique_key=None,
        unique_for=None,
        unique_states=None,
        concurrency_key=None,
        concurrency_limit=None,
        **kwargs,
    ):
        """Create a new task with modified defaults, our options included.

        `unique=False` makes a unique task plain again (its other unique
        options are dropped).
        """
        # Zero-argument super() does not work in a slotted dataclass.
        task = Task.using(self, **kwargs)
        options = {
            "max_attempts": max_attempts,
            "backoff_base": backoff_base,
            "timeout": timeout,
            "unique": unique,
            "unique_key": unique_key,
            "unique_for": unique_for,
            "unique_states": unique_states,
            "concurrency_key": concurrency_key,
            "concurrency_limit": concurrency_limit,
        }
        changes = {name: value for name, value in options.items() if value is not None}
        if unique is False:
            changes |= dict.fromkeys(("unique_key", "unique_for", "unique_states"))
        return replace(task, **changes) if changes else task

    def enqueue_many(self, calls):
        """Enqueue one job per `(args, kwargs)` pair in `calls`, in bulk."""
        return self.get_backend().enqueue_many(self, calls)


def _missing_task(*args, **kwargs):
    raise TaskNotFound("The job's task path no longer imports to a task.")


# Stands in for a task whose path no longer imports, so its rows stay readable.
MISSING_TASK = object.__new__(JobTask)
for _field in fields(JobTask):
    object.__setattr__(MISSING_TASK, _field.name, _field.default)
object.__setattr__(MISSING_TASK, "func", _missing_task)


def _copy_task(task, **changes):
    """Copy a task without validating it again (it was valid at enqueue)."""
    clone = object.__new__(type(task))
    for name in _field_names(type(task)):
        value = changes[name] if name in changes else getattr(task, name)
        object.__setattr__(clone, name, value)
    return clone


@cache
def _field_names(task_class):
    return tuple(field.name for field in fields(task_class))


def resolve_task(task_path):
    """Import the task at `task_path`, or raise TaskNotFound saying why."""
    try:
        task = import_string(task_path)
    except ImportError as e:
        raise TaskNotFound(f"Task {task_path!r} cannot be imported: {e}") from e
    if not isinstance(task, Task):
        raise TaskNotFound(f"{task_path!r} is not a task (decorate it with @task).")
    return task


def bind_task(task, job, backend_alias):
    """Return `task` with the options the job row was enqueued with.

    The row is the truth: a `.using(timeout=...)` of the caller holds for
    every worker. A row stored before it kept these options (None) keeps the
    task's own.
    """
    deferred = job.run_after if job.run_after != job.enqueued_at else None
    options = tuple(
        (name, getattr(job, name))
        for name in ROW_OPTIONS
        if getattr(job, name, None) is not None
    )
    alike = (task, job.priority, job.queue_name, backend_alias, options)
    return _bind(*alike, run_after=deferred) if deferred else _bound(*alike)


def _bind(task, priority, queue_name, backend_alias, options, run_after=None):
    return _copy_task(
        task,
        priority=priority,
        queue_name=queue_name,
        run_after=run_after,
        backend=backend_alias,
        **dict(options),
    )


# Tasks are frozen: the jobs of one task enqueued alike share one bound copy.
_bound = lru_cache(maxsize=1024)(_bind)


# JobTask options each job row stores (the rest of `JobTask` is Django's own).
ROW_OPTIONS = ("max_attempts", "timeout", "backoff_base")


def task_for_job(job, backend_alias):
    """Return the task of a job row, even when its path no longer imports."""
    try:
        task = resolve_task(job.task_path)
    except TaskNotFound:
        task = MISSING_TASK
    return bind_task(task, job, backend_alias)


def task_result(job, backend_alias, task=None):
    """Build Django's TaskResult for a job row."""
    result = TaskResult(
        task=task or task_for_job(job, backend_alias),
        id=str(job.id),
        status=PUBLIC_STATUS[job.status],
        enqueued_at=job.enqueued_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        last_attempted_at=job.last_attempted_at,
        args=job.args,
        kwargs=job.kwargs,
        backend=backend_alias,
        errors=task_errors(job),
        worker_ids=list(job.worker_ids),
    )
    object.__setattr__(result, RETURN_VALUE_FIELD, job.return_value)
    return result


def new_task_result(job, backend_alias, task):
    """Build the TaskResult of a job just enqueued, fast: `task_result`
    without the dataclass's checks, as its arguments are JSON already."""
    result = object.__new__(TaskResult)
    put = object.__setattr__  # the dataclass is frozen
    put(result, "task", task)
    put(result, "id", str(job.id))
    put(result, "status", TaskResultStatus.READY)
    put(result, "enqueued_at", job.enqueued_at)
    put(result, "started_at", None)
    put(result, "finished_at", None)
    put(result, "last_attempted_at", None)
    put(result, "args", list(job.args))
    put(result, "kwargs", dict(job.kwargs))
    put(result, "backend", backend_alias)
    put(result, "errors", [])
    put(result, "worker_ids", [])
    put(result, RETURN_VALUE_FIELD, None)
    return result


def update_task_result(result, job):
    """Bring a TaskResult up to date with its row, as `TaskResult.refresh()`
    does, without rebuilding it (its task and arguments do not change)."""
    changes = {
        "status": PUBLIC_STATUS[job.status],
        "enqueued_at": job.enqueued_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "last_attempted_at": job.last_attempted_at,
        "errors": task_errors(job),
        "worker_ids": list(job.worker_ids),
        RETURN_VALUE_FIELD: job.return_value,
    }
    for name, value in changes.items():
        object.__setattr__(result, name, value)
    return result


def task_errors(job):
    """Return Django's TaskErrors for the errors recorded on a job row."""
    return [
        TaskError(
            exception_class_path=error["exception_class_path"],
            traceback=error["traceback"],
        )
        for error in job.errors
    ]


def sender(result):
    """The backend class Django's task signals name as their sender, as the
    backend itself does (`type(self)`), found by the result's alias."""
    return type(task_backends[result.backend])
