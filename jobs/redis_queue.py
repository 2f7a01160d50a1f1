"""Run jobs pushed to Redis: the RQ job function and our RQ worker classes.

An RQ job carries only a job id. `execute` claims that row exactly like the
database worker does, so a job pushed twice, or seen by an `rqworker` and a
`jobworker` at once, runs once. Settings make the stock `manage.py rqworker`
use `JobsWorker`, which adds what RQ does not know about: the priority bands,
the scheduler (for delays and retries) and our maintenance (rescue, re-dispatch).
"""

import json
import logging
import math
import os
import sys
import tempfile
import threading
import time
from contextlib import contextmanager, suppress
from datetime import datetime
from functools import cache, partial
from uuid import UUID

import redis
from django.db import DatabaseError, close_old_connections, connections
from django.utils import timezone
from rq import SimpleWorker, Worker
from rq.exceptions import DeserializationError
from rq.job import JobStatus as RQJobStatus
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty
from rq.utils import get_version
from rq.utils import now as rq_now
from rq.worker import WorkerStatus

from . import conf, dispatch, execution, heartbeat, maintenance
from .conf import BAND_SUFFIXES, rq_queue_names
from .exceptions import JobTimeout, TaskNotFound, WorkerLost
from .maintenance.rescue import rescue_from_dead_neighbours
from .models import DatabaseNow, Job, WorkerProcess

logger = logging.getLogger("jobs.rq")

_worker_id = None


def worker_id():
    """Name this worker once; its forked work horses keep the name."""
    global _worker_id
    if _worker_id is None:
        _worker_id = execution.new_worker_id()
    return _worker_id


def execute(job_id):
    """Claim the job `job_id`, run it and record the outcome.

    Does nothing when the row is not READY and due: another worker has it, it
    finished, or it was cancelled. Returns what happened, for RQ's log.
    """
    try:
        UUID(job_id)
    except ValueError:
        logger.error("RQ job carries %r, which is not a job id; ignored", job_id)
        return "ignored"
    if handed_over is not None and str(handed_over.job.pk) == job_id:
        return handed_over.run()
    job = claim(job_id)
    if job is None:
        return skip(job_id)
    with lease_keeper.holding(job):
        outcome = execution.run(job, guard=partial(time_limits, job))
    if outcome.succeeded:
        unrecorded.add(outcome)
        return "succeeded"
    unrecorded.recorded_with(lambda successes: execution.finish([*successes, outcome]))
    return "failed"


def claim(job_id):
    """Claim the job `job_id` for this worker; return it, or None.

    The successes this process has not recorded yet are recorded with it.
    """
    me = worker_id()
    claimed = unrecorded.recorded_with(
        lambda successes: execution.claim(
            None, 1, me, f"{me}:{job_id}", job_id=job_id, successes=successes
        )
    )
    return claimed[0] if claimed else None


class Unrecorded:
    """Successes this process has run but not recorded yet.

    In our RQ workers a success is recorded by the statement that claims the
    next job, one statement per job instead of two, or before the worker
    waits for a job (see `RecordingQueue`) or stops. The job stays RUNNING
    meanwhile, its lease renewed, so nothing else takes it; a worker killed
    outright before recording leaves it to the rescuer, which runs it again.
    Elsewhere (a plain `rq worker`, a work horse) each success is recorded
    at once.
    """

    def __init__(self):
        self.outcomes = []
        self.deferring = False  # only where someone records them later

    def add(self, outcome):
        if not self.deferring:
            execution.finish([outcome])
            return
        lease_keeper.hold(outcome.job)
        self.outcomes.append(outcome)

    def take(self):
        outcomes, self.outcomes = self.outcomes, []
        for outcome in outcomes:
            lease_keeper.let_go(outcome.job)
        return outcomes

    def recorded_with(self, statement):
        """Run `statement(successes)`, which records them; return its result."""
        result = statement(self.outcomes)
        self.take()
        return result

    def record(self):
        """Record them now (the worker is about to wait, or stops)."""
        if self.outcomes:
            self.recorded_with(execution.finish)


unrecorded = Unrecorded()


class HandOver:
    """A job a forking worker claimed for the work horse it is about to fork.

    The worker claims, renews the lease and records a success with its own
    database connection, kept across jobs; the horse only runs the task and
    writes its return value to `report`. So a no-op job costs the horse no
    database connection (a new PostgreSQL connection took 4 ms). A failure
    the horse records itself, with a connection of its own.
    """

    def __init__(self, job, report):
        self.job = job
        self.report = report
        self.overran = None  # RQ's timeout, once the worker ended the horse

    def run(self):
        """In the work horse: run the job, report a success to the worker."""
        outcome = execution.run(self.job, guard=rq_timeout_as_job_timeout)
        if not outcome.succeeded:
            execution.finish([outcome])
            return "failed"
        finished_at = outcome.finished_at.isoformat()
        json.dump([outcome.value, finished_at, outcome.duration], self.report)
        self.report.flush()
        return "succeeded"

    def record(self):
        """In the worker, once the horse is gone: record what it reported."""
        self.report.seek(0)
        text = self.report.read()
        if not text:
            self.record_end("The work horse running this job died.")
            return
        try:
            value, finished_at, duration = json.loads(text)
            finished_at = datetime.fromisoformat(finished_at)
        except (ValueError, TypeError):
            self.record_end("The work horse running this job left no readable report.")
            return
        outcome = execution.Outcome(
            job=self.job, value=value, finished_at=finished_at, duration=duration
        )
        with suppress(TaskNotFound):  # it ran, so it imported in the horse
            execution.describe(outcome)
        unrecorded.add(outcome)

    def record_end(self, how):
        """Record a horse that ended without a readable report, unless it
        recorded a failure itself: timed out when the worker ended it at its
        hard limit, else lost. Retried now, not when the lease expires."""
        if not execution.still_held(self.job):
            return
        if self.overran is not None:
            record_overrun(self.job, self.job.timeout or self.overran)
            return
        for job in execution.put_back([self.job], WorkerLost(how), True):
            execution.log_event("rescued", job, level=logging.WARNING)


handed_over = None  # the HandOver of the work horse being forked, if any


def skip(job_id):
    """Leave a job that is not claimable; push it again if it is only early."""
    early = Job.objects.delayed(DatabaseNow()).filter(pk=job_id).first()
    if early is not None:
        dispatch.push([early])
        logger.info("job %s is not due yet; scheduled again", job_id)
        return "rescheduled"
    logger.info("job %s is not waiting (taken, finished or cancelled)", job_id)
    return "skipped"


@contextmanager
def rq_timeout_as_job_timeout(task):
    """Report RQ's timeout like ours: a JobTimeout naming the job's timeout
    (RQ's alarm counts whole seconds)."""
    try:
        yield
    except (JobTimeoutException, JobTimeout):
        raise JobTimeout(execution.timeout_message(task.timeout)) from None


@contextmanager
def time_limits(job, task):
    """The soft limit is RQ's alarm (`JobsDeathPenalty`); where the task runs
    in the worker's own main thread, `watchdog` is the hard limit."""
    with rq_timeout_as_job_timeout(task), watchdog.watching(job, task):
        yield


class JobsDeathPenalty(UnixSignalDeathPenalty):
    """RQ's alarm, raising our JobTimeout when a job's time is up.

    RQ raises its JobTimeoutException, an Exception: the common `except
    Exception:` in a task swallowed it and the job ran on. JobTimeout is a
    BaseException. The alarm of the forking worker's horse monitor
    (HorseMonitorTimeoutException) stays RQ's own.
    """

    def handle_death_penalty(self, signum, frame):
        if issubclass(self._exception, JobTimeoutException):
            raise JobTimeout(execution.timeout_message(self._timeout))
        super().handle_death_penalty(signum, frame)

    def __exit__(self, *exc_info):
        try:
            return super().__exit__(*exc_info)
        except JobTimeout:  # the alarm rang as the body ended: it is done
            return False


def record_overrun(job, timeout, started=None):
    """Record `job` as timed out by the hard limit: retried or FAILED by its
    retry policy, under its lease token, so the run can record nothing after."""
    error = JobTimeout(
        execution.timeout_message(timeout)
        + " It did not stop within the grace, and was ended."
    )
    outcome = execution.Outcome(job=job, error=error, finished_at=timezone.now())
    if started is not None:
        outcome.duration = time.monotonic() - started
    with suppress(TaskNotFound):
        execution.describe(outcome)
    execution.finish([outcome])


class Watchdog:
    """The hard limit of a worker that runs tasks in its own main thread.

    A task that swallows even JobTimeout (a bare `except:`), or is blocked in
    C (a long sleep, a socket read), cannot be stopped in its thread. At its
    deadline plus JOB_TIMEOUT_GRACE_SECONDS the watchdog records the job as
    timed out and ends the process with status 1, for its supervisor
    (rqworker-pool, systemd) to start a fresh one. A task holding the GIL in
    C stops the watchdog too; the rescuer takes the job once its lease ends.
    """

    def __init__(self):
        self.worker = None  # the JobsSimpleWorker watched; None: off

    @contextmanager
    def watching(self, job, task):
        timeout = getattr(task, "timeout", None)
        if self.worker is None or not timeout:
            yield
            return
        started = time.monotonic()
        # RQ's alarm rings at the timeout rounded up to a whole second.
        limit = math.ceil(timeout) + conf.get("JOB_TIMEOUT_GRACE_SECONDS")
        timer = threading.Timer(limit, self.expire, (job, timeout, started))
        timer.name, timer.daemon = "job-watchdog", True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def expire(self, job, timeout, started):
        logger.error(
            "job %s ran %g s past its timeout of %g s and could not be stopped; "
            "recording it timed out and exiting 1",
            job.pk,
            conf.get("JOB_TIMEOUT_GRACE_SECONDS"),
            timeout,
        )
        try:
            record_overrun(job, timeout, started)
        except DatabaseError as e:
            logger.error("could not record job %s timed out: %s", job.pk, e)
        finally:
            self.worker.abandon()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)


watchdog = Watchdog()


# Held by the worker's threads (leases, maintenance) while they use the
# database, and by the forking worker while it forks: a work horse forked
# while another thread was inside SQLite inherited SQLite's locks held, and
# hung on its first query.
database_in_use = threading.Lock()


class LeaseKeeper:
    """Renew the leases of the jobs this process runs, from one thread.

    One thread per process, started with the first job, not one per job: a
    thread start cost more than a no-op job. A forked work horse starts its
    own (threads do not survive a fork).
    """

    def __init__(self):
        self.held = {}  # job pk -> job
        self.lock = threading.Lock()
        self.pid = None

    @contextmanager
    def holding(self, job):
        self.hold(job)
        try:
            yield
        finally:
            self.let_go(job)

    def hold(self, job):
        with self.lock:
            if self.pid != os.getpid():
                self.pid = os.getpid()
                threading.Thread(
                    target=self._renew_forever, name="job-leases", daemon=True
                ).start()
            self.held[job.pk] = job

    def let_go(self, job):
        with self.lock:
            self.held.pop(job.pk, None)

    def _renew_forever(self):
        interval = conf.get("JOB_LEASE_SECONDS") / 3
        while True:
            time.sleep(interval)
            jobs = []
            try:
                with database_in_use:  # and so never holds `lock` in a fork
                    with self.lock:
                        jobs = list(self.held.values())
                    execution.renew_leases(jobs)
            except DatabaseError as e:
                logger.warning(
                    "could not renew the leases of %d jobs: %s", len(jobs), e
                )
                close_old_connections()


lease_keeper = LeaseKeeper()


class Maintainer(threading.Thread):
    """Keep an RQ worker in the registry and run maintenance duties.

    Every worker runs one; the maintenance lease lets one at a time work, so
    a deployment of only `web` and `rqworker` needs no cron job.
    """

    def __init__(self, worker):
        super().__init__(name="job-maintenance", daemon=True)
        self.worker = worker
        self.worker_id = worker_id()
        self.queues = worker.queue_names()
        self.stopped = threading.Event()

    def run(self):
        interval = min(
            conf.get("JOB_MAINTENANCE_SECONDS"), conf.get("JOB_LEASE_SECONDS") / 3
        )
        try:
            with database_in_use:
                self._register()
                rescue_from_dead_neighbours(self.worker_id)
            while not self.stopped.wait(interval):
                with database_in_use:  # also keeps a fork out of a DB call
                    self._turn()
                    self._revive_scheduler()
        finally:
            try:
                with database_in_use:
                    heartbeat.unregister(self.worker_id)
            except DatabaseError:
                pass  # it will be forgotten once its heartbeat is old
            connections.close_all()

    def _register(self):
        heartbeat.register(self.worker_id, WorkerProcess.Kind.RQ, self.queues, 1)

    def _turn(self):
        try:
            if not heartbeat.beat(self.worker_id):
                self._register()
            maintenance.run_due_duties(self.worker_id)
        except DatabaseError as e:
            logger.error("maintenance skipped, database error: %s", e)
            close_old_connections()

    def _revive_scheduler(self):
        try:
            self.worker.revive_scheduler()
        except redis.RedisError as e:
            logger.warning("could not start RQ's scheduler again: %s", e)

    def stop(self):
        self.stopped.set()
        self.join(timeout=5)


def with_bands(queues):
    """Expand each queue to its priority bands, highest first, read as JSON."""
    bands = tuple(suffix for suffix in BAND_SUFFIXES if suffix)
    expanded = {}
    for queue in queues:
        names = [queue.name] if queue.name.endswith(bands) else None
        for name in names or rq_queue_names(queue.name):
            expanded.setdefault(name, json_queue(queue, name))
    return list(expanded.values())


def json_queue(queue, name):
    """Return the RQ queue `name` like `queue`, reading jobs as JSON.

    Our RQ jobs are JSON, never pickle: whoever can write to Redis must not
    be able to run code on the workers by planting a pickled job.
    """
    return type(queue)(
        name,
        connection=queue.connection,
        job_class=queue.job_class,
        serializer=JSONSerializer,
        death_penalty_class=JobsDeathPenalty,
    )


@cache
def recording(queue_class):
    """Return `queue_class` made to record unrecorded successes before the
    worker waits for a job (a job waiting now records them with its claim),
    and to take a job from the first band holding one in one round trip."""

    class RecordingQueue(queue_class):
        @classmethod
        def dequeue_any(cls, queues, timeout, *args, **kwargs):
            if timeout is None or not unrecorded.outcomes:
                return super().dequeue_any(queues, timeout, *args, **kwargs)
            found = None
            try:
                found = super().dequeue_any(queues, None, *args, **kwargs)
            finally:
                if found is None:  # nothing waiting, or Redis is down
                    record_unrecorded()
            return found or super().dequeue_any(queues, timeout, *args, **kwargs)

        @classmethod
        def lpop(cls, queue_keys, timeout, connection=None):
            # Without waiting, RQ pops each band in turn: a round trip per
            # empty band before the job, on every job. LMPOP pops the first
            # band holding one in one.
            blocking_or_one = timeout is not None or len(queue_keys) < 2
            if blocking_or_one or get_version(connection) < (7, 0, 0):
                return super().lpop(queue_keys, timeout, connection=connection)
            popped = connection.lmpop(len(queue_keys), *queue_keys, direction="LEFT")
            if popped is None:
                return None
            queue_key, (job_id,) = popped
            return queue_key, job_id

    RecordingQueue.__name__ = RecordingQueue.__qualname__ = (
        f"Recording{queue_class.__name__}"
    )
    return RecordingQueue


def record_unrecorded():
    try:
        unrecorded.record()
    except DatabaseError as e:
        logger.error(
            "could not record %d finished jobs: %s", len(unrecorded.outcomes), e
        )
        close_old_connections()


class JobsWorkerMixin:
    # RQ renews its worker key three times per job, two round trips each:
    # a fifth of a no-op job's time. The key lives `worker_ttl` + 60 s
    # (8 minutes), so once a second is plenty.
    heartbeat_every = 1.0
    heartbeat_sent = float("-inf")
    death_penalty_class = JobsDeathPenalty

    def __init__(self, queues, *args, **kwargs):
        # JSON, never pickle, whatever `--serializer` says (see `json_queue`).
        kwargs["serializer"] = JSONSerializer
        super().__init__(with_bands(queues), *args, **kwargs)
        self.queue_class = recording(self.queue_class)
        # A work horse connects to Redis anew (RQ's clients are per process).
        for client in {self.connection, *(queue.connection for queue in self.queues)}:
            dispatch.share_driver_info(client)

    # A scheduler process that died (Redis went away under it) is started
    # again within this many seconds.
    scheduler_check_every = 5.0
    scheduler_checked = float("-inf")

    def heartbeat(self, timeout=None, pipeline=None):
        if timeout is None and pipeline is None:
            if not self.time_for("heartbeat_sent", self.heartbeat_every):
                return
            with self.redis_may_fail("heartbeat"):  # the next dequeue waits
                super().heartbeat()
            return
        super().heartbeat(timeout, pipeline)

    def revive_scheduler(self):
        """Start RQ's scheduler process again if it died (its maintainer
        calls this); stock RQ waits for its next maintenance, 10 minutes."""
        if not self.time_for("scheduler_checked", self.scheduler_check_every):
            return
        process = getattr(self.scheduler, "_process", None)
        if process is not None and not process.is_alive():
            self.log.warning("RQ scheduler process died; starting it again")
            self.scheduler.acquire_locks(auto_start=True)

    def time_for(self, last, every):
        """True, and now is the time of `last`, if `every` seconds passed since."""
        now = time.monotonic()
        if now - getattr(self, last) < every:
            return False
        setattr(self, last, now)
        return True

    @contextmanager
    def redis_may_fail(self, what):
        """Stock RQ quits when Redis fails outside the dequeue that waits for
        it to come back. Log and carry on instead: the dequeue that follows
        waits (with RQ's backoff), and the step runs again on the next turn."""
        try:
            yield
        except redis.ConnectionError as e:
            self.log.warning("could not connect to Redis (%s): %s", what, e)

    # RQ asks Redis whether `rq suspend` was run before every job, a round
    # trip each: once a second is soon enough.
    suspension_check_every = 1.0
    suspension_checked = float("-inf")

    def check_for_suspension(self, burst):
        if not self.time_for("suspension_checked", self.suspension_check_every):
            return
        with self.redis_may_fail("suspension check"):
            super().check_for_suspension(burst)

    def set_state(self, state, pipeline=None):
        # RQ marks the worker idle after each job and again before it takes
        # the next: the second write, a round trip, changes nothing.
        if pipeline is None and state == WorkerStatus.IDLE == self._state:
            return
        super().set_state(state, pipeline)

    def run_maintenance_tasks(self):
        with self.redis_may_fail("RQ maintenance"):
            super().run_maintenance_tasks()

    def abandon(self):
        """Tidy up before the process ends at once (`Watchdog.expire`):
        stop RQ's scheduler process and leave the worker registry."""
        with suppress(Exception):  # best effort: the process ends anyway
            if self.scheduler is not None:
                self.stop_scheduler()
        with suppress(DatabaseError):
            heartbeat.unregister(worker_id())

    def execute_job(self, job, queue):
        # Stock RQ quits when Redis fails around a job (its bookkeeping, the
        # horse's heartbeats). The row holds the outcome, or the horse is
        # waited for and its report recorded: carry on with the next job.
        try:
            return super().execute_job(job, queue)
        except redis.ConnectionError as e:
            self.log.warning(
                "lost Redis around RQ job %s: %s; its row keeps the outcome", job.id, e
            )
            horse = getattr(self, "_horse_pid", 0)
            if horse:
                with suppress(ChildProcessError):
                    os.waitpid(horse, 0)
                self._horse_pid = 0
            self._state = WorkerStatus.IDLE  # set_state would need Redis

    def handle_execution_ended(self, job, queue, heartbeat_ttl):
        # RQ writes a job's heartbeat once more as it ends, a round trip of
        # its own. After a success of ours, the job hash RQ saves next
        # carries it.
        if not ours(job) or job.get_status(refresh=False) == RQJobStatus.FAILED:
            return super().handle_execution_ended(job, queue, heartbeat_ttl)
        job.ended_at = job.last_heartbeat = rq_now()

    def dequeue_job_and_maintain_ttl(self, *args, **kwargs):
        # RQ waits for Redis inside, but not when marking itself idle first.
        wait = 1.0
        while True:
            try:
                return super().dequeue_job_and_maintain_ttl(*args, **kwargs)
            except redis.ConnectionError as e:
                self.log.warning(
                    "could not connect to Redis: %s; retrying in %d seconds", e, wait
                )
                time.sleep(wait)
                wait = min(
                    wait * self.exponential_backoff_factor,
                    self.max_connection_wait_time,
                )

    def work(self, *args, **kwargs):
        conf.check_database()
        connections.close_all()  # never share a connection with a work horse
        worker_id()  # named before the work horses fork, so they share it
        # Delayed jobs and retries are pushed with `enqueue_at`: RQ's scheduler
        # moves them to their queue when due.
        kwargs["with_scheduler"] = True
        maintainer = None if kwargs.get("burst") else Maintainer(self)
        if maintainer:
            maintainer.start()
        unrecorded.deferring = True
        try:
            return super().work(*args, **kwargs)
        finally:
            record_unrecorded()
            unrecorded.deferring = False
            if maintainer:
                maintainer.stop()


class JobsWorker(JobsWorkerMixin, Worker):
    """RQ's forking worker: each job runs in a new work horse process.

    The worker claims the job before forking and records its success after
    the horse exits (see `HandOver`); the horse never uses the worker's
    database connections.
    """

    def execute_job(self, job, queue):
        global handed_over
        job_id = rq_job_argument(job)
        # Busy before the claim, as RQ marks itself before a fork: a SIGTERM
        # now waits for this job instead of stopping with it claimed.
        self.set_state(WorkerStatus.BUSY)
        claimed = claim(job_id) if job_id else None
        if claimed is None:  # not claimable, or not ours: the horse decides
            return super().execute_job(job, queue)
        with tempfile.TemporaryFile("w+") as report:
            with lease_keeper.holding(claimed):
                handed_over = hand_over = HandOver(claimed, report)
                try:
                    super().execute_job(job, queue)
                except ForkFailed as e:  # no work horse: not the job's fault
                    self.fork_failed(job, queue, claimed, e.__cause__)
                    return
                finally:
                    handed_over = None
            hand_over.record()  # a success waits in `unrecorded`, still held

    def fork_failed(self, job, queue, claimed, error):
        """Give the claimed job back at once, its attempt not counted."""
        self.log.error("could not fork a work horse for job %s: %s", claimed.pk, error)
        with self.redis_may_fail("failing RQ job"):
            self.handle_job_failure(job, queue, exc_string=f"fork failed: {error}")
        execution.release([claimed])  # pushes it again
        self.set_state(WorkerStatus.IDLE)
        time.sleep(1)  # forks that keep failing do not spin

    # RQ looks at its work horse every `job_monitoring_interval` (30 s) and
    # kills it 60 s after its timeout. While one of our jobs with a timeout
    # runs it looks every second, so that `maintain_heartbeats` ends a horse
    # that outlived its timeout by JOB_TIMEOUT_GRACE_SECONDS: the hard limit.
    def monitor_work_horse(self, job, queue):
        interval = self.job_monitoring_interval
        if handed_over is not None and job.timeout and job.timeout > 0:
            self.job_monitoring_interval = 1
        try:
            super().monitor_work_horse(job, queue)
        finally:
            self.job_monitoring_interval = interval

    def maintain_heartbeats(self, job):
        hand_over = handed_over
        grace = conf.get("JOB_TIMEOUT_GRACE_SECONDS")
        timeout = job.timeout if job.timeout and job.timeout > 0 else None
        overran = timeout and self.current_job_working_time > timeout + grace
        if hand_over is None or not overran or hand_over.overran is not None:
            return super().maintain_heartbeats(job)
        self.log.warning(
            "job %s ran %g s past its timeout of %d s; ending its work horse",
            hand_over.job.pk,
            grace,
            timeout,
        )
        hand_over.overran = job.timeout  # recorded timed out once it is gone
        self.kill_horse()

    def fork_work_horse(self, job, queue):
        with database_in_use:  # the horse releases its copy at once
            try:
                super().fork_work_horse(job, queue)
            except OSError as e:  # out of memory or processes: no horse runs it
                raise ForkFailed from e

    def main_work_horse(self, job, queue):
        database_in_use.release()
        # The worker's connections are its sockets: closing or using them
        # here would break them for the worker. psycopg does not close a
        # connection collected in another process than the one that made it.
        for alias in connections:
            connections[alias] = connections.create_connection(alias)
        # The worker's unrecorded successes are the worker's to record; the
        # horse records its own at once, as it exits after this job.
        unrecorded.outcomes = []
        unrecorded.deferring = False
        return super().main_work_horse(job, queue)

    def perform_job(self, job, queue):
        try:
            return super().perform_job(job, queue)
        finally:
            # The horse exits without running atexit: push what its job
            # enqueued now, not after the re-dispatch grace.
            dispatch.pusher.flush(timeout=5)
            connections.close_all()  # the work horse's own; it exits now


class ForkFailed(Exception):  # noqa: N818 (it names what happened)
    """No work horse was forked for the job (the OSError is its cause)."""


def ours(job):
    """Say whether `job` is an RQ job of ours (False: not, or unreadable)."""
    try:
        return job.func_name == dispatch.RQ_FUNCTION
    except DeserializationError:  # not JSON: never unpickled, see `json_queue`
        return False


def rq_job_argument(job):
    """Return the job id an RQ job of ours carries, or None."""
    try:
        args = job.args if job.func_name == dispatch.RQ_FUNCTION else ()
        UUID(args[0])
    except Exception:  # not ours, or unreadable: the horse reports it as RQ does
        return None
    return args[0] if len(args) == 1 else None


class JobsSimpleWorker(JobsWorkerMixin, SimpleWorker):
    """RQ's non-forking worker: faster, jobs share the worker's process.

    A job that outlives its timeout and grace ends the process (`Watchdog`).
    """

    connections_checked = 0.0

    def work(self, *args, **kwargs):
        watchdog.worker = self
        try:
            return super().work(*args, **kwargs)
        finally:
            watchdog.worker = None

    def perform_job(self, job, queue):
        try:
            return super().perform_job(job, queue)
        finally:
            self.tidy_connections()

    def tidy_connections(self):
        """Drop broken or expired database connections between jobs.

        At once after a database error; otherwise at most once a second, as
        with CONN_HEALTH_CHECKS every `close_old_connections()` makes the
        next query ask the server `SELECT 1` first, a round trip per job.
        """
        now = time.monotonic()
        failed = any(c.errors_occurred for c in connections.all(initialized_only=True))
        if failed or now - self.connections_checked >= 1.0:
            close_old_connections()
            self.connections_checked = now
