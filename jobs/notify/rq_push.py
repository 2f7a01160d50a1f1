"""Push jobs to RQ, the only code that writes our RQ jobs, and find the
READY rows whose RQ job Redis lost."""

import logging
import math
from datetime import timedelta

import redis
from django.conf import settings
from django.utils import timezone
from rq import Queue
from rq.job import Job as RQJob
from rq.job import JobStatus as RQJobStatus
from rq.serializers import JSONSerializer

from .. import conf
from ..conf import rq_queue_names
from .link import redis_link

logger = logging.getLogger("jobs.notify")


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


def push(jobs):
    """Push `jobs` to RQ in one pipeline; return how many were pushed."""
    link = redis_link()
    if not jobs or link.resting():
        return 0
    now = timezone.now()
    queues, due = {}, {}  # made once per push, not once per job
    try:
        with link.client.pipeline() as pipe:
            for job in jobs:
                name = rq_queue_name(job.queue_name, job.priority)
                if name not in queues:
                    queues[name] = rq_queue(name, link.client)
                timeout = rq_timeout(job)
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
    """RQ's timeout for the job: the row's (the task's, or the caller's
    `.using(timeout=...)`), in whole seconds; -1 for none."""
    return math.ceil(job.timeout) if job.timeout else -1


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
