"""Tasks the tests enqueue. Side effects go to `Run`, one row per key."""

import asyncio
import os
import signal
import threading
import time

from django.tasks import task

from jobs.exceptions import JobCancelled, PermanentFailure

from .models import Run, Span


def record(key, attempt=0):
    return Run.objects.create(key=key, attempt=attempt, pid=os.getpid())


@task
def noop():
    return None


@task
def add(a, b):
    return a + b


@task(priority=0)
def record_run(key):
    record(key)
    return key


@task(queue_name="other")
def record_on_other_queue(key):
    record(key)


@task
def sleep_then_record(key, seconds):
    time.sleep(seconds)
    record(key)
    return key


@task(takes_context=True)
def die_on_first_attempt(context, key):
    """Kill the process running it on attempt 1, as the OOM killer would."""
    if context.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    record(key, context.attempt)


@task(takes_context=True, max_attempts=5)
def fail_times(context, key, times):
    if context.attempt <= times:
        raise ConnectionError(f"attempt {context.attempt} fails on purpose")
    record(key, context.attempt)
    return context.attempt


@task(max_attempts=2)
def always_fail():
    raise ValueError("this task always fails")


@task
def fail_permanently():
    raise PermanentFailure("no point in trying again")


@task
def return_object():
    return object()


@task(takes_context=True)
def report_then_wait(context, seconds):
    context.report_progress(50, "half way")
    time.sleep(seconds)
    return "done"


@task(takes_context=True)
def report_pid_then_wait(context, seconds):
    """Say which process runs it (in its progress message), then wait."""
    context.report_progress(50, str(os.getpid()))
    time.sleep(seconds)
    return "done"


@task
async def async_add(a, b):
    await asyncio.sleep(0)
    return a + b


@task(timeout=0.3)
def overrun(seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return "not stopped"


@task(timeout=0.3)
async def async_overrun(seconds):
    await asyncio.sleep(seconds)
    return "not stopped"


@task(timeout=0.5)
def loop_catching(key, seconds, catch="Exception"):
    """Loop in Python, catching `catch` around each step: Exception, as many
    tasks do; or BaseException, which only the hard limit can end."""
    caught = {"Exception": Exception, "BaseException": BaseException}[catch]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(0.01)
        except caught:  # noqa: S110 (the habit a timeout must survive)
            pass
    record(key)
    return "not stopped"


@task(timeout=0.5)
def block_in_c(seconds):
    time.sleep(seconds)  # one call in C: a thread cannot be interrupted here
    return "not stopped"


@task(timeout=0.5)
async def async_swallow_cancel(seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            pass
    return "not stopped"


@task
def busy_python(seconds):
    """No timeout of its own: `.using(timeout=...)` gives it one."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass
    return "not stopped"


@task
def wait_then_record(key, seconds):
    """`sleep_then_record`, waiting on an event: Debian's faketime breaks
    `time.sleep` in a process whose monotonic clock it leaves alone."""
    threading.Event().wait(seconds)
    record(key)
    return key


@task(max_attempts=2)
def end_process():
    """A poison job: it ends the process running it, as a crash in C would."""
    os._exit(3)


def not_a_task():
    return None


@task(takes_context=True)
def stop_when_cancelled(context, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if context.cancel_requested():
            raise JobCancelled("stopped on request")
        time.sleep(0.02)
    return "not cancelled"


@task
def enqueue_follow_up(key):
    """Enqueue a job from inside a job, as a fan-out task does."""
    return record_run.enqueue(key).id


@task(takes_context=True)
def corrupt_report_on_first_attempt(context, key):
    """In an RQ work horse, spoil the report to its worker on attempt 1."""
    from jobs.rqworker import handover

    if context.attempt == 1:
        handover.handed_over.report.write("{not json")
        return
    record(key, context.attempt)


@task(concurrency_key="customer:{customer_id}", concurrency_limit=2)
def per_customer(customer_id, name, seconds):
    """At most two at once per customer; its run's span is kept in `Span`."""
    span = Span.objects.create(
        name=name, group=str(customer_id), started_at=time.time(), pid=os.getpid()
    )
    threading.Event().wait(seconds)
    Span.objects.filter(pk=span.pk).update(finished_at=time.time())
    return name


@task(concurrency_limit=1)
def one_at_a_time(name, seconds):
    """One key for the task (its path): never two at once."""
    span = Span.objects.create(name=name, started_at=time.time(), pid=os.getpid())
    threading.Event().wait(seconds)
    Span.objects.filter(pk=span.pk).update(finished_at=time.time())
    return name
