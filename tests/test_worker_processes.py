"""The real `manage.py jobworker` in subprocesses: many workers, signals, kill -9."""

import signal
import subprocess
import sys
import time

import pytest
from django.db import connection, transaction

from jobs.models import Job, JobStatus, WorkerProcess
from tests.testapp import tasks
from tests.testapp.models import Run

from .helpers import (
    ROOT,
    claimed_since,
    command_environment,
    database_clock,
    listening_since,
    notify_lock_held,
    status_of,
    wait_for,
)
from .services import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_workers_drain_2000_jobs__each_runs_exactly_once(start_worker):
    backend = tasks.record_run.get_backend()
    with transaction.atomic():
        for i in range(2000):
            backend.enqueue(tasks.record_run, [f"job-{i}"], {})

    started = time.monotonic()
    workers = [start_worker("--burst") for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=120) == 0, worker.output()
    elapsed = time.monotonic() - started

    # Run.key is unique: a second run of any job would have failed that job.
    # (How the jobs split between the workers is up to the scheduler.)
    assert Run.objects.count() == 2000
    assert Job.objects.filter(status=JobStatus.SUCCESSFUL, attempts=1).count() == 2000
    assert set(Run.objects.values_list("pid", flat=True)) <= {w.pid for w in workers}
    print(f"\n2 workers drained 2000 jobs in {elapsed:.2f}s")


def test_job_is_invisible_to_a_running_worker_until_commit(start_worker):
    worker = start_worker()
    first = tasks.record_run.enqueue("before")
    wait_for(lambda: status_of(first) == JobStatus.SUCCESSFUL, message="a claim")
    with transaction.atomic():
        result = tasks.record_run.enqueue("after-commit")
        if connection.vendor == "postgresql":
            inserted = database_clock()
            wait_for(lambda: claimed_since(inserted), message="a claim after it")
        # On SQLite the open write transaction holds the worker's claim off.
        assert not Run.objects.filter(key="after-commit").exists()
        assert status_of(result) == JobStatus.READY

    wait_for(lambda: status_of(result) == JobStatus.SUCCESSFUL, message="run")
    assert worker.process.poll() is None


def started(result):
    """Say whether the job runs in a thread: it reported progress. (A job
    claimed but not yet taken by a thread reads RUNNING too.)"""
    return Job.objects.filter(pk=result.id, progress__isnull=False).exists()


def test_sigterm__active_job_finishes_and_worker_exits_0(start_worker):
    result = tasks.report_then_wait.enqueue(2)
    worker = start_worker()
    wait_for(lambda: started(result), message="the job to start")

    assert WorkerProcess.objects.get(pid=worker.pid).kind == "database"
    worker.signal(signal.SIGTERM)
    # A signal is handled between two statements of the worker's: a claim
    # already under way when it arrives may still take a job enqueued now.
    wait_for(lambda: "SIGTERM: finishing" in worker.output(), message="the signal")
    later = tasks.record_run.enqueue("not-claimed-after-sigterm")

    assert worker.wait(timeout=20) == 0, worker.output()
    assert not WorkerProcess.objects.filter(pid=worker.pid).exists()
    job = Job.objects.get(pk=result.id)
    assert (job.status, job.attempts, job.return_value) == ("SUCCESSFUL", 1, "done")
    assert status_of(later) == JobStatus.READY


def test_second_sigterm__puts_the_active_job_back(start_worker):
    result = tasks.report_then_wait.enqueue(3600)
    worker = start_worker()
    wait_for(lambda: started(result), message="the job to start")

    worker.signal(signal.SIGTERM)
    wait_for(lambda: "SIGTERM: finishing" in worker.output(), message="1st signal")
    worker.signal(signal.SIGTERM)

    # The job would run for an hour: the worker left without waiting for it.
    assert worker.wait(timeout=120) != 0
    job = Job.objects.get(pk=result.id)
    assert job.status == JobStatus.READY
    assert job.errors[-1]["exception_class_path"].endswith("WorkerInterrupted")
    assert job.lease_expires_at is None


# A stand-in for the loop turning as fast as it can while signals rain on it:
# each one may land while the loop clears or waits on its wakeup.
SIGNALS_DURING_THE_LOOP = """
import os, signal, threading, time
import django
django.setup()
from jobs.dbworker.exchange import Exchange
from jobs.dbworker.stopping import StopFlags

exchange = Exchange(concurrency=1, ack_batch=1)
flags = StopFlags(exchange)
flags.install()
sent = threading.Event()

def send():
    for _ in range(5000):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.0002)
    sent.set()

threading.Thread(target=send).start()
turns = 0
while not sent.is_set():
    exchange.wake.clear()
    exchange.wake.wait(0)
    getattr(flags, "announce", lambda: None)()
    turns += 1
print("survived", turns, "turns; aborting:", flags.aborting, flush=True)
"""


def test_signals_landing_at_any_point_of_the_loop__never_hang_it():
    # A handler that took the lock of the loop's wakeup could interrupt the
    # loop holding that lock, and wait for it forever.
    loop = subprocess.run(
        [sys.executable, "-c", SIGNALS_DURING_THE_LOOP],
        env=command_environment(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert loop.returncode == 0, loop.stderr[-2000:]
    assert "aborting: True" in loop.stdout


def test_kill_9__job_is_rescued_by_another_worker_and_succeeds(start_worker):
    result = tasks.sleep_then_record.enqueue("survivor", 1.5)
    doomed = start_worker()
    wait_for(lambda: status_of(result) == JobStatus.RUNNING, message="claim")

    doomed.signal(signal.SIGKILL)
    doomed.wait()
    rescuer = start_worker()

    wait_for(lambda: status_of(result) == JobStatus.SUCCESSFUL, message="rescue")
    job = Job.objects.get(pk=result.id)
    assert job.attempts == 2
    # Worker ids are host:pid:random: the pids say who ran each attempt.
    pids = [int(worker_id.split(":")[-2]) for worker_id in job.worker_ids]
    assert pids == [doomed.pid, rescuer.pid]
    assert job.errors[0]["exception_class_path"] == "jobs.exceptions.WorkerLost"
    assert Run.objects.get(key="survivor").pid == rescuer.pid


def test_listen_notify__wakes_an_idle_worker_on_commit(postgres_only, start_worker):
    # Polling once an hour: only the NOTIFY sent on commit can wake it in time.
    start_worker(env={"JOB_POLL_SECONDS": "3600", "JOB_MAINTENANCE_SECONDS": "3600"})
    # Past its start-up claims: connecting LISTEN wakes the worker for one
    # more claim, so wait for a claim that began after LISTEN; then it waits.
    listening = wait_for(listening_since, message="the worker to LISTEN")
    wait_for(lambda: claimed_since(listening), message="its claim after LISTEN")

    result = tasks.record_run.enqueue("woken")

    wait_for(
        lambda: status_of(result) == JobStatus.SUCCESSFUL,
        timeout=60,
        message="the worker to wake",
    )


def test_listen_notify__wakes_an_idle_worker_while_another_enqueue_notifies(
    postgres_only, start_worker
):
    # Another transaction holds the lock of the one enqueue that NOTIFYs in
    # its own transaction: this enqueue NOTIFYs after its commit instead.
    start_worker(env={"JOB_POLL_SECONDS": "3600", "JOB_MAINTENANCE_SECONDS": "3600"})
    listening = wait_for(listening_since, message="the worker to LISTEN")
    wait_for(lambda: claimed_since(listening), message="its claim after LISTEN")
    with notify_lock_held():
        result = tasks.record_run.enqueue("woken")

        wait_for(
            lambda: status_of(result) == JobStatus.SUCCESSFUL,
            timeout=60,
            message="the worker to wake",
        )


def test_sigterm__claimed_jobs_that_never_started_are_released_uncounted(
    start_worker,
):
    # The quick job's pace has the worker claim three of the others ahead.
    quick = tasks.record_run.using(priority=10).enqueue("quick")
    results = [tasks.sleep_then_record.enqueue(f"queued-{i}", 3) for i in range(4)]
    # Held for a minute: only the SIGTERM can give the three back.
    env = {"JOB_PREFETCH": "3", "JOB_PREFETCH_HOLD_SECONDS": "60"}
    worker = start_worker("--concurrency", "1", env=env)
    wait_for(
        lambda: Job.objects.filter(status=JobStatus.RUNNING).count() == 4,
        message="one running and three claimed ahead",
    )

    worker.signal(signal.SIGTERM)

    assert worker.wait(timeout=20) == 0, worker.output()
    assert status_of(quick) == JobStatus.SUCCESSFUL
    jobs = Job.objects.filter(pk__in=[r.id for r in results])
    assert jobs.filter(status=JobStatus.SUCCESSFUL, attempts=1).count() == 1
    released = jobs.filter(status=JobStatus.READY)
    assert released.count() == 3
    for job in released:
        assert (job.attempts, job.worker_ids, job.started_at) == (0, [], None)
        assert job.errors == []


@pytest.mark.django_db(transaction=True)
def test_dev_ctrl_c__running_job_finishes_and_both_stop(start_worker):
    dev = start_worker("--addrport", f"127.0.0.1:{free_port()}", command="dev")
    # Its first progress report proves it runs: a job claimed but not yet
    # taken by a thread reads RUNNING too, and a stop gives it back.
    wait_for(
        lambda: Job.objects.filter(
            task_path="jobs.examples.index_repository",
            status=JobStatus.RUNNING,
            progress__isnull=False,
        ).exists(),
        timeout=60,
        message="the 5 s example job to start",
    )

    dev.signal(signal.SIGINT)

    assert dev.wait(timeout=30) == 0
    job = Job.objects.get(task_path="jobs.examples.index_repository")
    assert job.status == JobStatus.SUCCESSFUL  # finished, not put back
    assert "putting active jobs back" not in dev.output()
