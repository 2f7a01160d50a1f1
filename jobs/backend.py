"""The Django Tasks backend: every enqueued task becomes a `jobs.Job` row."""

import json
import logging
from functools import cache
from uuid import UUID

from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone
from django.utils.json import normalize_json

from . import conf
from .core import concurrency, hot_path, uniqueness
from .core.tasks import JobTask, new_task_result, task_result
from .exceptions import InvalidTaskArguments, JobQueueDisabled
from .log import log_enabled, log_event
from .models import Job
from .notify import doorbell
from .upstream import model_instance


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


@cache
def job_blueprint():
    """Return what every new Job holds before its own values: the fixed
    defaults, and (attname, callable) of the defaults made afresh."""
    fixed, fresh = {}, []
    for field in Job._meta.concrete_fields:
        if field.has_default() and callable(field.default):
            fresh.append((field.attname, field.default))
        else:
            fixed[field.attname] = field.get_default()
    return fixed, fresh


def build_job(**values):
    """Return a new `Job(**values)` (`model_instance`: without
    `Model.__init__`, a seventh of a single enqueue's time). `values` are by
    attname."""
    fixed, fresh = job_blueprint()
    state = fixed.copy()
    for attname, default in fresh:
        if attname not in values:
            state[attname] = default()
    state.update(values)
    return model_instance(Job, state)


def parse_job_id(result_id):
    """Return `result_id` as a UUID, or raise TaskResultDoesNotExist."""
    try:
        return result_id if isinstance(result_id, UUID) else UUID(str(result_id))
    except ValueError:
        raise TaskResultDoesNotExist(f"{result_id!r} is not a job id.") from None


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
        uniqueness.check_options(task)
        if isinstance(task, JobTask):
            concurrency.validate(task)

    def enqueue(self, task, args, kwargs):
        refuse_when_disabled(task)
        self.validate_task(task)
        job = self._new_job(task, args, kwargs, timezone.now())
        if uniqueness.is_unique(task):
            return self._enqueue_unique(task, [job])[0]
        notified = hot_path.insert([job], ring_now=doorbell.may_ring_now())
        doorbell.ring([job], inserted=True, notified=notified)
        return self._announce(job, new_task_result(job, self.alias, task))

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
        if uniqueness.is_unique(task):
            return self._enqueue_unique(task, jobs)
        notified = hot_path.insert(jobs, varying=make.varying)
        doorbell.ring(jobs, inserted=True, notified=notified)
        return [
            self._announce(job, new_task_result(job, self.alias, task)) for job in jobs
        ]

    def _enqueue_unique(self, task, jobs):
        """Enqueue `jobs` of a unique task: one per key, none for a key
        another job holds. Return each job's TaskResult, that of the job
        holding its key (the same id for all callers of one key)."""
        if not jobs:
            return []
        uniqueness.stamp(task, jobs)
        holders, inserted = uniqueness.insert(jobs)
        new = [job for job in jobs if job.pk in inserted]
        doorbell.ring(new, inserted=True)
        results = {}
        for job in new:
            results[job.pk] = self._announce(
                job, new_task_result(job, self.alias, task)
            )
        for holder in holders:
            if holder.pk not in results:
                results[holder.pk] = task_result(holder, self.alias)
        return [results[holder.pk] for holder in holders]

    def _new_job(self, task, args, kwargs, now, with_key=True):
        args, kwargs = json_arguments(task, args, kwargs)
        key = concurrency.key_of(task, kwargs) if with_key else ""
        return build_job(
            task_path=task.module_path,
            queue_name=task.queue_name,
            priority=task.priority,
            args=args,
            kwargs=kwargs,
            max_attempts=getattr(task, "max_attempts", None)
            or conf.get("JOB_MAX_ATTEMPTS"),
            timeout=getattr(task, "timeout", None),
            backoff_base=getattr(task, "backoff_base", None),
            concurrency_key=key,
            concurrency_limit=getattr(task, "concurrency_limit", None),
            enqueued_at=now,
            run_after=task.run_after or now,
        )

    def _job_maker(self, task, now):
        """Return a function making jobs of `task` fast, for many at once.

        The fields every job shares are worked out once; each job gets fresh
        mutable defaults and its own id. Its instance is built without
        `Model.__init__` (`model_instance`): a third of a bulk enqueue's time.
        """
        # The key is worked out per call; the template is no call.
        template = self._new_job(task, (), {}, now, with_key=False)
        keyed = template.concurrency_limit is not None
        fields = Job._meta.concrete_fields
        shared = {field.attname: getattr(template, field.attname) for field in fields}
        fresh = [
            (field.attname, field.default)
            for field in fields
            if field.has_default()
            and callable(field.default)
            and field.name not in {"enqueued_at", "run_after"}
        ]

        def make(args, kwargs):
            args, kwargs = json_arguments(task, args, kwargs)
            values = shared.copy()
            job = model_instance(Job, values)
            for attname, default in fresh:
                values[attname] = default()
            values["args"], values["kwargs"] = args, kwargs
            if keyed:
                values["concurrency_key"] = concurrency.key_of(task, kwargs)
            return job

        # The fields `make` sets per job; every other one is the template's.
        make.varying = {"args", "kwargs", "concurrency_key"}
        make.varying.update(attname for attname, _ in fresh)
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
