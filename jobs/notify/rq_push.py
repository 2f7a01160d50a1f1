"""Push jobs to RQ, the only code that writes our RQ jobs, and find the
READY rows whose RQ job Redis lost."""

import logging
import math
from datetime import timedelta
from uuid import UUID

import redis
from django.utils import timezone
from rq import Queue
from rq.job import Job as RQJob
from rq.job import JobStatus as RQJobStatus
from rq.serializers import JSONSerializer
from rq.utils import now as rq_now
from rq.utils import utcformat

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


def first_row_of(rq_id):
    """Return the id of the row the RQ job `rq_id` names (`rq_job_id`: a
    batch is named for its first row), or None if it names none."""
    row, _, attempts = rq_id.rpartition("-")
    try:
        named = attempts.isdigit() and str(UUID(row)) == row
    except ValueError:
        return None
    return row if named else None


# Rows that ride in a batch: row id -> the id of the RQ job that carries
# them. The worker that takes the batch deletes its rows' entries.
BATCHED = "jobs:rq:batched"


def batchable(job):
    """Say whether `job` may share an RQ job with others: one with a timeout
    keeps its own (RQ's timeout is per RQ job), and so does one with a
    concurrency key (its claim waits for a free slot of its key)."""
    return not job.timeout and not job.concurrency_key


def batches(jobs, size):
    """Split `jobs` (due, of one RQ queue) into the job lists of RQ jobs, in
    order: runs of batchable jobs in lists of up to `size`, others alone."""
    groups, run = [], []
    for job in jobs:
        if batchable(job):
            run.append(job)
            if len(run) < size:
                continue
        if run:
            groups.append(run)
            run = []
        if not batchable(job):
            groups.append([job])
    return [*groups, run] if run else groups


def push(jobs):
    """Push `jobs` to RQ in one pipeline; return how many were pushed.

    Due jobs of one RQ queue go in batches of up to JOB_RQ_BATCH per RQ job,
    so a worker pays RQ's bookkeeping, and the forking worker its fork,
    once per batch (`rqworker.forking`).
    """
    link = redis_link()
    if not jobs or link.resting():
        return 0
    now = timezone.now()
    queues, due = {}, {}  # made once per push, not once per job
    try:
        with link.client.pipeline() as pipe:
            # One transaction, begun before any command: RQ's enqueue begins
            # it unless it is, and cannot once a copy's commands are queued.
            pipe.multi()
            for job in jobs:
                name = rq_queue_name(job.queue_name, job.priority)
                if name not in queues:
                    queues[name] = rq_queue(name, link.client)
                if job.run_after > now:
                    enqueue_at(pipe, queues[name], job, rq_timeout(job))
                else:
                    due.setdefault(name, []).append(job)
            size = conf.get("JOB_RQ_BATCH")
            for name, group in due.items():
                enqueue_many(pipe, queues[name], batches(group, size))
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


def rq_options(jobs, pipe):
    return {
        "job_id": rq_job_id(jobs[0]),
        # The row keeps the result. RQ keeps its finished job a minute: deleting
        # it at once cost RQ a quarter of its time per job.
        "result_ttl": conf.get("JOB_RQ_RESULT_TTL"),
        "failure_ttl": 86_400,
        "description": rq_description(jobs),
        "pipeline": pipe,
    }


def rq_description(jobs):
    first = jobs[0]
    more = f" and {len(jobs) - 1} more" if len(jobs) > 1 else ""
    return f"{first.task_path} {first.pk}{more}"


def rq_arguments(jobs):
    return tuple(str(job.pk) for job in jobs)


def enqueue_at(pipe, queue, job, timeout):
    # RQ's scheduler keeps whole seconds: round up, never run early.
    when = job.run_after.replace(microsecond=0) + timedelta(seconds=1)
    queue.enqueue_at(
        when, RQ_FUNCTION, str(job.pk), job_timeout=timeout, **rq_options([job], pipe)
    )


# The hash RQ saved for the first RQ job this process pushed to each RQ queue
# (with the settings the hash holds): the later ones are copies of it.
templates = {}


def enqueue_many(pipe, queue, groups):
    """Queue one RQ job per list of `groups` (jobs due now) on one RQ queue.

    The first RQ job a process pushes to an RQ queue, RQ enqueues itself.
    Every later one is a copy of the hash it saved, with its own id,
    arguments, description, timeout and times, and they join the queue in
    one RPUSH, in order: RQ's own enqueue costs a Job object and four
    commands per RQ job, most of a push's time. A copy leaves out the fields
    RQ saves empty and keeps its arguments uncompressed, as `Job.restore`
    reads both.
    """
    key = (queue.name, conf.get("JOB_RQ_RESULT_TTL"))
    carried = {}
    if key not in templates:
        first, *groups = groups
        model = queue.enqueue_call(
            RQ_FUNCTION,
            args=rq_arguments(first),
            timeout=rq_timeout(first[0]),
            **rq_options(first, pipe),
        )
        carried.update((str(job.pk), model.id) for job in first[1:])
        templates[key] = {k: v for k, v in model.to_dict().items() if v != ""}
    if groups:
        template = dict(templates[key])  # pushes may run in several threads
        template["created_at"] = template["enqueued_at"] = utcformat(rq_now())
        ids = []
        for group in groups:
            rq_id = rq_job_id(group[0])
            ids.append(rq_id)
            data = (RQ_FUNCTION, None, rq_arguments(group), {})
            template["data"] = JSONSerializer.dumps(data)
            template["description"] = rq_description(group)
            template["timeout"] = rq_timeout(group[0])
            pipe.hset(RQJob.key_for(rq_id), mapping=template)  # copies the mapping
            carried.update((str(job.pk), rq_id) for job in group[1:])
        pipe.rpush(queue.key, *ids)
        pipe.sadd(queue.redis_queues_keys, queue.key)  # as RQ's enqueue does
    if carried:
        pipe.hset(BATCHED, mapping=carried)


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
    holds neither the RQ job of their own nor a batch that carries them, or
    holds them ended without running the row (its claim failed, say). Such
    an RQ job stays for its result or failure TTL, up to a day, and the row
    with it unless it is pushed again."""
    if not jobs:
        return []
    client = redis_link().client
    carriers = [
        carrier.decode() if carrier else None
        for carrier in client.hmget(BATCHED, [str(job.pk) for job in jobs])
    ]
    rq_ids = {rq_job_id(job) for job in jobs} | set(filter(None, carriers))
    with client.pipeline(transaction=False) as pipe:
        for rq_id in rq_ids:
            pipe.hget(RQJob.key_for(rq_id), "status")
        statuses = dict(zip(rq_ids, pipe.execute(), strict=True))
    return [
        job
        for job, carrier in zip(jobs, carriers, strict=True)
        if ended(statuses[rq_job_id(job)]) and ended(statuses.get(carrier))
    ]


def ended(status):
    """Say whether an RQ job with `status` (None: none) will not run."""
    return status is None or status in RQ_ENDED


def forget_batched(job_ids):
    """Drop the entries of rows a batch carried, once a worker took it (an
    entry left behind only costs `missing_from_redis` a lookup)."""
    if len(job_ids) < 2:
        return
    try:
        redis_link().client.hdel(BATCHED, *job_ids)
    except redis.RedisError as e:
        logger.warning("could not forget %d batched jobs: %s", len(job_ids), e)
