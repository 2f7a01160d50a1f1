"""Running a claimed job: call its task with its arguments (and context)
and say what happened. Nothing here changes a row."""

import asyncio
import json
import logging
import os
import socket
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from inspect import iscoroutinefunction
from typing import Any

from asgiref.sync import async_to_sync
from django.tasks import TaskContext
from django.tasks.signals import task_started
from django.utils import timezone
from django.utils.crypto import get_random_string
from django.utils.json import normalize_json

from ..exceptions import JobTimeout
from ..log import log_event
from ..models import Job
from .interventions import cancel_is_requested
from .tasks import (
    bind_task,
    resolve_task,
    sender,
    task_result,
)
from .transitions import report_progress

logger = logging.getLogger("jobs")


def new_worker_id():
    """Name this process: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{get_random_string(6)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobContext(TaskContext):
    """The context of `takes_context=True` tasks, able to report progress."""

    job: Job

    def report_progress(self, percent, message=""):
        """Show `percent` (0-100) and `message` on the job while it runs."""
        return report_progress(self.job, percent, message)

    def cancel_requested(self):
        """Say whether an admin asked this job to stop (then raise JobCancelled)."""
        return cancel_is_requested(self.job)


@dataclass
class Outcome:
    """What one run of a job did; recorded by `finish`."""

    job: Job
    task: Any = None  # None when the task path did not import
    result: Any = None  # Django's TaskResult, as signals receive it
    value: Any = None
    error: BaseException | None = None
    traceback: str = ""
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0
    finished_at: Any = None
    settled: bool = False  # recorded, or found moved by someone else

    @property
    def succeeded(self):
        return self.error is None

    @property
    def finished(self):
        """When the run ended, on the monotonic clock."""
        return self.started + self.duration


def describe(outcome, backend_alias="default"):
    """Fill in the task and TaskResult of `outcome`'s job; raise TaskNotFound
    when its task path no longer imports."""
    job = outcome.job
    outcome.task = bind_task(resolve_task(job.task_path), job, backend_alias)
    outcome.result = task_result(job, backend_alias, task=outcome.task)


# What a run records as the job's failure: the task's exceptions, and the
# BaseExceptions a task may end with that are not the process's own to
# handle (a timeout, `sys.exit()` in a task, a cancelled coroutine).
RUN_ENDING_ERRORS = (Exception, JobTimeout, SystemExit, asyncio.CancelledError)


def run(job, backend_alias="default", guard=None):
    """Run a claimed job's task and return what happened. Changes no row.

    `guard(task)`, if given, is a context manager around the task's call
    (the database worker enforces timeouts with it).
    """
    outcome = Outcome(job=job)
    try:
        describe(outcome, backend_alias)
        task_started.send(sender=sender(outcome.result), task_result=outcome.result)
        log_event("started", job, level=logging.DEBUG)
        with guard(outcome.task) if guard else nullcontext():
            value = call_task(outcome.task, outcome.result, job)
        outcome.value = json_return_value(value)
    except RUN_ENDING_ERRORS as e:  # the job failed; the worker goes on
        outcome.error = e
        outcome.traceback = "".join(traceback.format_exception(e))
    outcome.duration = time.monotonic() - outcome.started
    outcome.finished_at = timezone.now()
    return outcome


def call_task(task, result, job):
    """Call the task function with the job's arguments (and context)."""
    args = job.args
    if task.takes_context:
        args = [JobContext(task_result=result, job=job), *args]
    timeout = getattr(task, "timeout", None)
    if timeout and iscoroutinefunction(task.func):
        return async_to_sync(call_with_timeout)(task.func, timeout, args, job.kwargs)
    return task.call(*args, **job.kwargs)


async def call_with_timeout(func, timeout, args, kwargs):
    """Await a coroutine task, cancelling it after `timeout` seconds."""
    try:
        return await asyncio.wait_for(func(*args, **kwargs), timeout)
    except TimeoutError:
        raise JobTimeout(timeout_message(timeout)) from None


def timeout_message(timeout):
    return f"The job timed out: it ran longer than its timeout of {timeout:g} s."


def json_return_value(value):
    try:
        value = normalize_json(value)
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"The task's return value is not JSON-serializable: {e}") from e
    return value
