"""The Celery baseline: the app `celery worker --pool=solo` runs, in the
baselines' venv, with the Redis broker and the same job functions.

Results are off (`task_ignore_result`), as Celery's optimizing guide advises
when nothing reads them. Celery keeps no start or finish time without a
result backend, so the worker stamps them itself, without a round trip per
job: it keeps the first start and the last finish in memory (signals
`task_prerun` and `task_postrun`) and writes them to Redis once, after the
job that makes the count the harness asked for (`EXPECTED_KEY`).
"""

import os
import time

import redis
from celery import Celery, group
from celery.signals import task_postrun, task_prerun

from bench import tasks
from bench.celery_stamps import EXPECTED_KEY, STAMPS_KEY

app = Celery("bench", broker=os.environ["REDIS_URL"])
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)
noop = app.task(name="noop")(tasks.noop)
sleep10ms = app.task(name="sleep10ms")(tasks.sleep10ms)

_seen = {"count": 0, "expected": None, "first": None}


@task_prerun.connect
def _started(**_):
    if _seen["first"] is None:
        _seen["first"] = time.time()
        expected = _redis().get(EXPECTED_KEY)
        _seen["expected"] = int(expected) if expected else None


@task_postrun.connect
def _finished(**_):
    _seen["count"] += 1
    if _seen["count"] == _seen["expected"]:
        stamps = {"count": _seen["count"], "first": _seen["first"], "last": time.time()}
        _redis().hset(STAMPS_KEY, mapping=stamps)


def _redis():
    return redis.Redis.from_url(os.environ["REDIS_URL"])


def enqueue(task, jobs):
    """Send `jobs` messages as one group (Celery has no bulk insert), after
    telling the worker how many to count."""
    _redis().set(EXPECTED_KEY, jobs)
    function = {"noop": noop, "sleep10ms": sleep10ms}[task]
    group(function.s() for _ in range(jobs)).apply_async()
