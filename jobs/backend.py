"""The Django Tasks backend: every enqueued task becomes a `jobs.Job` row."""

import json
import logging
from dataclasses import dataclass, fields, replace
from uuid import UUID

from django.db.models.base import ModelState
from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import TaskError
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from . import conf, dispatch, postgres
from .exceptions import InvalidTaskArguments, JobQueueDisabled, TaskNotFound
from .log import log_enabled, log_event
from .models import Job, JobStatus

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

    def using(self, *, max_attempts=None, backoff_base=None, timeout=None, **kwargs):
        """Create a new task with modified defaults, our options included."""
        # Zero-argument super() does not work in a slotted dataclass.
        task = Task.using(self, **kwargs)
        options = {
            "max_attempts": max_attempts,
            "backoff_base": backoff_base,
            "timeout": timeout,
        }
        changes = {name: value for name, value in options.items() if value is not None}
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
    for field in fields(task):
        value = changes.get(field.name, getattr(task, field.name))
        object.__setattr__(clone, field.name, value)
    return clone


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
    options = {
        name: getattr(job, name)
        for name in ROW_OPTIONS
        if getattr(job, name, None) is not None
    }
    return _copy_task(
        task,
        priority=job.priority,
        queue_name=job.queue_name,
        run_after=deferred,
        backend=backend_alias,
        **options,
    )


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
    object.__setattr__(result, "_return_value", job.return_value)
    return result


def new_task_result(job, backend_alias, task):
    """Build the TaskResult of a job just enqueued, fast: `task_result`
    without the dataclass's checks, as its arguments are JSON already."""
    result = object.__new__(TaskResult)
    for name, value in (
        ("task", task),
        ("id", str(job.id)),
        ("status", TaskResultStatus.READY),
        ("enqueued_at", job.enqueued_at),
        ("started_at", None),
        ("finished_at", None),
        ("last_attempted_at", None),
        ("args", list(job.args)),
        ("kwargs", dict(job.kwargs)),
        ("backend", backend_alias),
        ("errors", []),
        ("worker_ids", []),
        ("_return_value", None),
    ):
        object.__setattr__(result, name, value)
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
        "_return_value": job.return_value,
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


def _json_argument(task, label, value):
    try:
        value = normalize_json(value)
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidTaskArguments(
            f"{task.module_path}: {label} is not JSON-serializable "
            f"({type(value).__name__}): {e}. Pass JSON types "
            "(str, int, float, bool, None, list, dict), e.g. an id or an ISO date."
        ) from e
    return value


def json_arguments(task, args, kwargs):
    """Return args and kwargs as JSON, or raise naming the bad argument."""
    args = [_json_argument(task, f"argument {i}", a) for i, a in enumerate(args)]
    kwargs = {
        key: _json_argument(task, f"keyword argument {key!r}", value)
        for key, value in kwargs.items()
    }
    return args, kwargs


def refuse_when_disabled(task):
    """Raise JobQueueDisabled when JOB_QUEUE_ENABLED is off."""
    if not conf.get("JOB_QUEUE_ENABLED"):
        raise JobQueueDisabled(
            "Background jobs are disabled (JOB_QUEUE_ENABLED is off): "
            f"{task.module_path} was not enqueued."
        )


def parse_job_id(result_id):
    """Return `result_id` as a UUID, or raise TaskResultDoesNotExist."""
    try:
        return result_id if isinstance(result_id, UUID) else UUID(str(result_id))
    except ValueError:
        raise TaskResultDoesNotExist(f"{result_id!r} is not a job id.") from None


def insert(jobs, batch_size=10_000):
    """INSERT new job rows in the caller's transaction, in few statements."""
    if not postgres.on_postgresql():
        Job.objects.bulk_create(jobs, batch_size=1000)
        return
    for start in range(0, len(jobs), batch_size):
        postgres.insert_jobs(jobs[start : start + batch_size])
    for job in jobs:
        job._state.adding = False
        job._state.db = Job.objects.db


class JobsBackend(BaseTaskBackend):
    """Store each task as a `jobs.Job` row in the caller's transaction."""

    task_class = JobTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def validate_task(self, task):
        super().validate_task(task)
        max_attempts = getattr(task, "max_attempts", None)
        if max_attempts is not None and (
            not isinstance(max_attempts, int) or max_attempts < 1
        ):
            raise InvalidTask("max_attempts must be a whole number of at least 1.")
        for option in ("backoff_base", "timeout"):
            value = getattr(task, option, None)
            if value is not None and (
                not isinstance(value, (int, float)) or value <= 0
            ):
                raise InvalidTask(f"{option} must be a number of seconds above 0.")

    def enqueue(self, task, args, kwargs):
        refuse_when_disabled(task)
        self.validate_task(task)
        job = self._new_job(task, args, kwargs, timezone.now())
        insert([job])
        dispatch.ring([job], inserted=True)
        return self._announce(job, task_result(job, self.alias, task=task))

    def enqueue_many(self, task, calls):
        """Enqueue one job per `(args, kwargs)` in `calls`, all at once.

        One INSERT (per 10,000 jobs) and one doorbell for all of them: the
        way to enqueue thousands of jobs. Returns their TaskResults, in order.
        """
        refuse_when_disabled(task)
        self.validate_task(task)
        now = timezone.now()
        make = self._job_maker(task, now)
        jobs = [make(args, kwargs) for args, kwargs in calls]
        insert(jobs)
        dispatch.ring(jobs, inserted=True)
        return [
            self._announce(job, new_task_result(job, self.alias, task)) for job in jobs
        ]

    def _new_job(self, task, args, kwargs, now):
        args, kwargs = json_arguments(task, args, kwargs)
        return Job(
            task_path=task.module_path,
            queue_name=task.queue_name,
            priority=task.priority,
            args=args,
            kwargs=kwargs,
            max_attempts=getattr(task, "max_attempts", None)
            or conf.get("JOB_MAX_ATTEMPTS"),
            timeout=getattr(task, "timeout", None),
            backoff_base=getattr(task, "backoff_base", None),
            enqueued_at=now,
            run_after=task.run_after or now,
        )

    def _job_maker(self, task, now):
        """Return a function making jobs of `task` fast, for many at once.

        The fields every job shares are worked out once; each job gets fresh
        mutable defaults and its own id. Its instance is built as the ORM
        builds a row it reads, without `Model.__init__` and its pre_init and
        post_init signals: a third of a bulk enqueue's time.
        """
        template = self._new_job(task, (), {}, now)
        fields = Job._meta.concrete_fields
        shared = {field.attname: getattr(template, field.attname) for field in fields}
        fresh = [
            (field.attname, field.default)
            for field in fields
            if field.has_default()
            and callable(field.default)
            and field.name not in {"enqueued_at", "run_after"}
        ]
        new = Job.__new__

        def make(args, kwargs):
            args, kwargs = json_arguments(task, args, kwargs)
            job = new(Job)
            job._state = ModelState()
            values = job.__dict__
            values.update(shared)
            for attname, default in fresh:
                values[attname] = default()
            values["args"], values["kwargs"] = args, kwargs
            return job

        return make

    def _announce(self, job, result):
        task_enqueued.send(type(self), task_result=result)
        if log_enabled(logging.DEBUG):
            log_event(
                "enqueued",
                job,
                level=logging.DEBUG,
                run_after=job.run_after.isoformat(),
            )
        return result

    def get_result(self, result_id):
        job = Job.objects.filter(pk=parse_job_id(result_id)).first()
        if job is None:
            raise TaskResultDoesNotExist(f"No job with id {result_id!r}.")
        return task_result(job, self.alias)
