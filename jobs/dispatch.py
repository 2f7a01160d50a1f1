"""Ring the doorbell: tell workers a row is waiting. The only code that pushes
jobs to Redis/RQ.

The row is the truth; nothing here is needed for a job to run eventually.
On PostgreSQL the first doorbell is NOTIFY, which is transactional: listeners
hear it only when the caller's transaction commits. With `REDIS_URL` set, the
job id is also pushed to RQ once the transaction commits. A push that fails
(Redis down) loses nothing: the row stays READY, `jobworker` can run it, and
the re-dispatcher pushes it again when Redis answers.
"""

import atexit
import logging
import math
import os
import threading
import time
from contextlib import suppress
from datetime import timedelta
from functools import cache, partial
from queue import Empty, SimpleQueue

import redis
from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone
from redis.driver_info import DriverInfo
from rq import Queue
from rq.job import Job as RQJob
from rq.job import JobStatus as RQJobStatus
from rq.serializers import JSONSerializer

from . import conf, postgres
from .conf import rq_queue_names
from .core.tasks import resolve_task
from .exceptions import TaskNotFound
from .models import Job

logger = logging.getLogger("jobs.dispatch")

CHANNEL = "reporadar_jobs"
RQ_FUNCTION = "jobs.rqworker.job.execute"


def rq_queue_name(queue_name, priority):
    """Return the RQ queue a job of `priority` goes to."""
    high, normal, low = rq_queue_names(queue_name)
    return high if priority > 0 else low if priority < 0 else normal


def rq_job_id(job):
    """Name the RQ job of one attempt, so a retry is a new RQ job."""
    return f"{job.pk}-{job.attempts}"


def redis_enabled():
    return bool(settings.REDIS_URL)


def ring(jobs, inserted=False):
    """Tell workers that `jobs` are READY: NOTIFY now, push to RQ on commit.

    `inserted`: the jobs were just inserted, and on PostgreSQL the INSERT's
    own trigger (migration 0004) sent the NOTIFY.
    """
    jobs = list(jobs)
    if not jobs:
        return
    db = Job.objects.db
    if postgres.on_postgresql() and not inserted:
        notify({job.queue_name for job in jobs}, db)
    if redis_enabled():
        send = pusher.submit if conf.get("JOB_REDIS_PUSH_IN_BACKGROUND") else push
        transaction.on_commit(partial(send, jobs), using=db)


def notify(queue_names, db):
    with connections[db].cursor() as cursor:
        for queue_name in sorted(queue_names):
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, queue_name])


def push(jobs):
    """Push `jobs` to RQ in one pipeline; return how many were pushed."""
    link = redis_link()
    if not jobs or link.resting():
        return 0
    now = timezone.now()
    queues, timeouts, due = {}, {}, {}  # made once per push, not once per job
    try:
        with link.client.pipeline() as pipe:
            for job in jobs:
                name = rq_queue_name(job.queue_name, job.priority)
                if name not in queues:
                    queues[name] = rq_queue(name, link.client)
                key = (job.task_path, job.timeout)
                if key not in timeouts:
                    timeouts[key] = rq_timeout(job)
                timeout = timeouts[key]
                if job.run_after > now:
                    enqueue_at(pipe, queues[name], job, timeout)
                else:
                    due.setdefault(name, []).append((job, timeout))
            for name, group in due.items():
                enqueue_many(pipe, queues[name], group)
            pipe.execute()
    except redis.RedisError as e:
        link.failed(e, len(jobs))
        return 0
    except Exception:  # the rows are committed: a push never fails an enqueue
        logger.exception("could not push %d jobs to RQ; they stay READY", len(jobs))
        return 0
    link.succeeded()
    return len(jobs)


class Pusher:
    """Push committed jobs to RQ from a thread of the process's own.

    Enqueue then costs the caller its INSERT only: it never waits for
    Redis, and a slow or dead Redis cannot slow a request. The thread pushes
    whatever has committed since its last push in one pipeline. A process
    that dies before a push loses nothing: the row is READY, and the
    re-dispatcher pushes it after JOB_REDISPATCH_GRACE_SECONDS.
    """

    def __init__(self):
        self._reset()
        os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.flush, timeout=5)

    def _reset(self):
        # A forked child starts empty: what the parent had pending is the
        # parent's thread's to push.
        self.pending = SimpleQueue()
        self.unfinished = 0
        self.done = threading.Condition()
        self.thread = None

    def submit(self, jobs):
        with self.done:
            self.unfinished += 1
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="job-pusher", daemon=True
                )
                self.thread.start()
        self.pending.put(jobs)

    def _run(self):
        while True:
            batches = [self.pending.get()]
            with suppress(Empty):
                while True:
                    batches.append(self.pending.get_nowait())
            try:
                push([job for batch in batches for job in batch])
            except Exception:  # push logs Redis errors; this is a bug
                logger.exception("pushing jobs to RQ failed; they stay READY")
            finally:
                with self.done:
                    self.unfinished -= len(batches)
                    self.done.notify_all()

    def flush(self, timeout=None):
        """Wait until every job submitted so far is pushed; True if it was."""
        with self.done:
            return self.done.wait_for(lambda: self.unfinished == 0, timeout)


pusher = Pusher()


def rq_queue(name, client):
    """Return the RQ queue `name`. Its jobs are JSON, never pickle: whoever
    can write to Redis must not be able to run code on the workers."""
    return Queue(name, connection=client, serializer=JSONSerializer)


def rq_options(job, pipe):
    return {
        "job_id": rq_job_id(job),
        # The row keeps the result. RQ keeps its finished job a minute: deleting
        # it at once cost RQ a quarter of its time per job.
        "result_ttl": conf.get("JOB_RQ_RESULT_TTL"),
        "failure_ttl": 86_400,
        "description": rq_description(job),
        "pipeline": pipe,
    }


def rq_description(job):
    return f"{job.task_path} {job.pk}"


def enqueue_at(pipe, queue, job, timeout):
    # RQ's scheduler keeps whole seconds: round up, never run early.
    when = job.run_after.replace(microsecond=0) + timedelta(seconds=1)
    queue.enqueue_at(
        when, RQ_FUNCTION, str(job.pk), job_timeout=timeout, **rq_options(job, pipe)
    )


def enqueue_many(pipe, queue, jobs):
    """Queue `jobs`, (job, RQ timeout) pairs all due now, on one RQ queue.

    RQ enqueues the first itself. The others are copies of the hash it
    saved, with their own id, arguments, description and timeout, and join
    the queue in one RPUSH, in order: RQ's own enqueue costs a Job object
    and four commands per job, three quarters of a bulk push. A copy leaves
    out the fields RQ saves empty and keeps its arguments uncompressed, as
    `Job.restore` reads both.
    """
    (first, timeout), *rest = jobs
    model = queue.enqueue_call(
        RQ_FUNCTION, args=(str(first.pk),), timeout=timeout, **rq_options(first, pipe)
    )
    if not rest:
        return
    template = {name: value for name, value in model.to_dict().items() if value != ""}
    dumps, func_name = model.serializer.dumps, model.func_name
    ids = []
    for job, timeout in rest:
        rq_id = rq_job_id(job)
        ids.append(rq_id)
        template["data"] = dumps((func_name, None, (str(job.pk),), {}))
        template["description"] = rq_description(job)
        template["timeout"] = timeout
        pipe.hset(RQJob.key_for(rq_id), mapping=template)  # copies the mapping
    pipe.rpush(queue.key, *ids)


def rq_timeout(job):
    """RQ's timeout for the job, in whole seconds; -1 for none.

    The row's, which holds a `.using(timeout=...)` of the caller; the task's
    only for a row stored before rows kept their options.
    """
    timeout = job.timeout
    if timeout is None:
        try:
            timeout = getattr(resolve_task(job.task_path), "timeout", None)
        except TaskNotFound:
            timeout = None
    return math.ceil(timeout) if timeout else -1


# An RQ job in one of these states will not run again.
RQ_ENDED = {
    status.value.encode()
    for status in (
        RQJobStatus.FINISHED,
        RQJobStatus.FAILED,
        RQJobStatus.STOPPED,
        RQJobStatus.CANCELED,
    )
}


def missing_from_redis(jobs):
    """Return the READY jobs whose current RQ job will not run them: Redis
    does not hold it, or holds it ended without running the row (its claim
    failed, say). Such an RQ job stays for its result or failure TTL, up to a
    day, and the row with it unless it is pushed again."""
    link = redis_link()
    with link.client.pipeline(transaction=False) as pipe:
        for job in jobs:
            pipe.hget(RQJob.key_for(rq_job_id(job)), "status")
        statuses = pipe.execute()
    return [
        job
        for job, status in zip(jobs, statuses, strict=True)
        if status is None or status in RQ_ENDED
    ]


class RedisLink:
    """A Redis client with short timeouts that backs off after a failure.

    While Redis does not answer, enqueue must stay fast and the log readable:
    after a failure, pushes are skipped for `JOB_REDIS_RETRY_SECONDS`, and the
    outage is logged once as a warning, not once per job.
    """

    def __init__(self, url):
        self.client = redis.Redis.from_url(
            url,
            socket_connect_timeout=1,
            socket_timeout=2,
            health_check_interval=30,
            driver_info=driver_info(),
        )
        self.down_until = 0.0
        self.down = False
        self.lock = threading.Lock()

    def resting(self):
        return time.monotonic() < self.down_until

    def failed(self, error, count):
        retry = conf.get("JOB_REDIS_RETRY_SECONDS")
        with self.lock:
            self.down_until = time.monotonic() + retry
            first = not self.down
            self.down = True
        if first:
            logger.warning(
                "Redis is unreachable (%s): jobs stay in the database and run "
                "through jobworker or once Redis is back; %d not pushed",
                type(error).__name__,
                count,
            )

    def succeeded(self):
        if self.down:
            with self.lock:
                self.down = False
            logger.warning("Redis is reachable again; pushing jobs to RQ")


@cache
def driver_info():
    """redis-py's name and version for `CLIENT SETINFO`, read once.

    Without it, every new Redis connection reads redis-py's version from its
    package metadata: 1.6 ms in each RQ work horse, which connects anew, a
    seventh of a no-op job.
    """
    return DriverInfo()


def share_driver_info(client):
    """Make the new connections of `client` use `driver_info()`."""
    client.connection_pool.connection_kwargs.setdefault("driver_info", driver_info())


_links = {}


def redis_link():
    """Return the process's link to `REDIS_URL` (one client per URL)."""
    url = settings.REDIS_URL
    if url not in _links:
        _links[url] = RedisLink(url)
    return _links[url]
