"""The enqueueing side of the benchmark, run in a subprocess by `bench/run.py`.

    python -m bench.client SYSTEM ACTION [--jobs N] [--task noop] ...

SYSTEM is `ours` (the project's venv, `bench.settings`), `dtdb`
(django-tasks-db, the baselines' venv, `bench.dtdb_settings`), `rq` (raw
RQ, the baselines' venv, no Django), or `pgqueuer`, `procrastinate`,
`celery` (the baselines' venv, through their app modules in `bench/`:
`prefill` only). ACTION is one of:

- `single`: enqueue N jobs one at a time, timed;
- `bulk`: enqueue N jobs with the system's bulk API, timed;
- `prefill`: enqueue N jobs as fast as possible (bulk where there is one);
- `pace`: enqueue at `--rate` jobs/s for `--seconds` seconds;
- `steady`: every `--tick` seconds, enqueue with `enqueue_many` the jobs a
  rate of `--rate` jobs/s owes so far, for `--seconds` seconds (the soak);
- `http`: request `/health` and the admin job list (ours only);
- `producer`: one of several producer processes: warm up, create the file
  `--ready`, wait for the file `--go`, then enqueue N jobs one at a time,
  each in its own autocommit transaction, and report the wall-clock times
  it started and finished (ours only).

Prints one JSON object on its last line of stdout.
"""

import argparse
import json
import os
import sys
import time

WARMUP = 20  # untimed enqueues first: connections, imports, caches
# The baselines that enqueue through a module of theirs: `enqueue(task, jobs)`.
APP_MODULES = {
    "pgqueuer": "bench.pgq_app",
    "procrastinate": "bench.procrastinate_app",
    "celery": "bench.celery_app",
}
# Tasks with our own options (`bench.ourtasks`): prefill only, ours only.
OUR_TASKS = ("noop_unique", "noop_limited")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.client")
    parser.add_argument("system", choices=["ours", "dtdb", "rq", *APP_MODULES])
    parser.add_argument(
        "action",
        choices=["single", "bulk", "prefill", "pace", "steady", "http", "producer"],
    )
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument(
        "--task",
        choices=["noop", "sleep10ms", "noop_unique", "noop_limited"],
        default="noop",
    )
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--tick", type=float, default=0.1, help="steady: seconds")
    parser.add_argument(
        "--record-commits",
        action="store_true",
        help="steady: after each enqueue, write its stamp and the database's "
        "clock to bench_commit (when its jobs became visible)",
    )
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--ready", help="producer: file to create once warm")
    parser.add_argument("--go", help="producer: file whose creation starts it")
    options = parser.parse_args(argv)
    system = {"ours": DjangoSystem, "dtdb": DjangoSystem, "rq": RawRQ}.get(
        options.system, AppModule
    )
    result = getattr(system(options), options.action)()
    print(json.dumps(result))


def timed(function, jobs):
    started = time.perf_counter()
    function()
    seconds = time.perf_counter() - started
    return {"jobs": jobs, "seconds": seconds, "rate": jobs / seconds}


def paced(enqueue_one, rate, seconds):
    """Call `enqueue_one` `rate` times a second for `seconds`, on a schedule."""
    count = round(rate * seconds)
    started = time.perf_counter()
    for i in range(count):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        enqueue_one()
    return {"jobs": count, "seconds": time.perf_counter() - started}


def steady(enqueue_many, rate, seconds, tick):
    """Every `tick` seconds call `enqueue_many(n)` with the jobs owed so far at
    `rate` jobs/s; a late tick catches up, so the offered rate holds."""
    started = time.perf_counter()
    sent = late = 0
    slow = []  # [wall-clock start, seconds] of each enqueue longer than a tick
    for i in range(1, round(seconds / tick) + 1):
        delay = started + i * tick - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            late += 1
        batch = round(rate * i * tick) - sent
        if batch > 0:
            began, clock = time.perf_counter(), time.time()
            enqueue_many(batch)
            sent += batch
            took = time.perf_counter() - began
            if took > tick:
                slow.append([clock, round(took, 3)])
    return {
        "jobs": sent,
        "seconds": time.perf_counter() - started,
        "late_ticks": late,
        "slow_enqueues": slow,
    }


# A bulk's jobs share one stamp (their enqueued_at and run_after); the time
# its transaction committed is at most this statement's clock.
RECORD_COMMIT = (
    "INSERT INTO bench_commit (stamp, committed_at) VALUES (%s, clock_timestamp())"
)


class DjangoSystem:
    """Our JobsBackend or django-tasks-db: both behind `django.tasks`."""

    def __init__(self, options):
        import django

        self.options = options
        django.setup()
        from bench import djtasks

        if options.task in OUR_TASKS:
            from bench import ourtasks

            self.task = getattr(ourtasks, options.task)
            self.calls = lambda jobs: ourtasks.calls(options.task, jobs)
        else:
            self.task = getattr(djtasks, options.task)
            self.calls = lambda jobs: [((), {})] * jobs

    def _warm_up(self):
        for _ in range(WARMUP):
            self.task.enqueue()

    def _pushed(self):
        """Wait for our background pushes to RQ and NOTIFYs: a figure counts
        a job once it is in Redis and announced, not when `enqueue` returned
        before them."""
        if self.options.system == "ours":
            from jobs.notify.notifier import notifier
            from jobs.notify.pusher import pusher

            pusher.flush()
            notifier.flush()

    def single(self):
        self._warm_up()
        self._pushed()
        jobs = self.options.jobs

        def enqueue():
            for _ in range(jobs):
                self.task.enqueue()
            self._pushed()

        return timed(enqueue, jobs)

    def bulk(self):
        if not hasattr(self.task, "enqueue_many"):
            return {"error": "no bulk enqueue API"}
        self._warm_up()
        self._pushed()
        calls = [((), {})] * self.options.jobs

        def enqueue():
            self.task.enqueue_many(calls)
            self._pushed()

        return timed(enqueue, self.options.jobs)

    def prefill(self):
        from django.db import transaction

        jobs = self.options.jobs
        if hasattr(self.task, "enqueue_many"):
            calls = self.calls(jobs)
            result = timed(lambda: self.task.enqueue_many(calls), jobs)
            self._pushed()
            return result
        with transaction.atomic():
            return timed(lambda: [self.task.enqueue() for _ in range(jobs)], jobs)

    def pace(self):
        return paced(self.task.enqueue, self.options.rate, self.options.seconds)

    def steady(self):
        from django.db import connection

        options = self.options

        def enqueue_many(count):
            results = self.task.enqueue_many([((), {})] * count)
            if options.record_commits:  # committed: enqueue_many autocommits
                with connection.cursor() as cursor:
                    cursor.execute(RECORD_COMMIT, [results[0].enqueued_at])

        result = steady(enqueue_many, options.rate, options.seconds, options.tick)
        self._pushed()
        return result

    def http(self):
        return http_timings(self.options.requests)

    def producer(self):
        """Enqueue N jobs one by one, from when `--go` exists; the times are
        wall-clock, so the harness can set producers side by side."""
        from pathlib import Path

        self._warm_up()
        self._pushed()
        Path(self.options.ready).touch()
        go = Path(self.options.go)
        while not go.exists():
            time.sleep(0.001)
        jobs, enqueue = self.options.jobs, self.task.enqueue
        started = time.time()
        for _ in range(jobs):
            enqueue()
        self._pushed()
        return {"jobs": jobs, "started": started, "finished": time.time()}


# The admin job list as an operator uses it: plain, each filter, each kind
# of search. On a big table every one must stay an index walk.
ADMIN_LIST = {
    "admin_jobs": "",
    "admin_failed": "?status=FAILED",
    "admin_waiting": "?status=waiting",
    "admin_delayed": "?status=delayed",
    "admin_queue": "?queue=default",
    "admin_task": "?task=bench.djtasks.noop",
    "admin_task_rare": "?task=bench.djtasks.rare",
    "admin_search_task": "?q=noop",
    "admin_search_rare": "?q=rare",
    "admin_search_nothing": "?q=no.such.task",
    "admin_search_id": "?q={job_id}",
    "admin_search_args": "?q=r123457.git",  # text in one job's arguments
}


def http_timings(requests):
    """Time `/health`, `/metrics` and the admin job list as a superuser,
    in-process."""
    from django.contrib.auth import get_user_model
    from django.test import Client, override_settings

    from jobs.models import Job

    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    timings = {"health": time_requests(client, "/health", requests)}
    # As deployed, /health reuses its queue numbers for 5 s; uncached, every
    # request counts afresh (a monitor polling from many places).
    with override_settings(JOB_HEALTH_CACHE_SECONDS=0):
        timings["health_uncached"] = time_requests(client, "/health", requests)
    seed_tally()
    timings["metrics"] = time_requests(client, "/metrics", requests)
    # The per-task table: as deployed it is kept 30 s; uncached, every
    # request groups the day's finished rows afresh (the first after expiry).
    timings["admin_tasks"] = time_requests(client, "/admin/jobs/job/tasks/", requests)
    with override_settings(JOB_TASK_TABLE_CACHE_SECONDS=0):
        timings["admin_tasks_uncached"] = time_requests(
            client, "/admin/jobs/job/tasks/", requests
        )
    job_id = str(Job.objects.filter(status="FAILED").values_list("pk", flat=True)[0])
    for page, query in ADMIN_LIST.items():
        path = "/admin/jobs/job/" + query.format(job_id=job_id[:8])
        timings[page] = time_requests(client, path, requests)
    return timings


def seed_tally():
    """Count the last hour's finished rows into the metrics tally, as the
    maintenance would have, so /metrics shows (and reads) real totals."""
    from datetime import timedelta

    from django.utils import timezone

    from jobs.maintenance import tally
    from jobs.models import TALLY_MARK, TallyMark

    an_hour_ago = timezone.now() - timedelta(hours=1)
    TallyMark.objects.update_or_create(
        name=TALLY_MARK, defaults={"counted_to": an_hour_ago, "counted_at": an_hour_ago}
    )
    tally.advance_tally()


def time_requests(client, path, requests):
    first = client.get(path)
    if first.status_code == 404:
        return {"available": False, "status": 404}
    if first.status_code >= 500:
        return {"available": False, "status": first.status_code}
    for _ in range(2):
        client.get(path)
    seconds = []
    for _ in range(requests):
        started = time.perf_counter()
        client.get(path)
        seconds.append(time.perf_counter() - started)
    return {"available": True, "status": first.status_code, "seconds": seconds}


class RawRQ:
    """Plain RQ: `Queue.enqueue` of the plain functions in `bench.tasks`."""

    def __init__(self, options):
        from redis import Redis
        from rq import Queue

        from bench import tasks

        self.options = options
        self.connection = Redis.from_url(os.environ["REDIS_URL"])
        self.queue = Queue("default", connection=self.connection)
        self.function = getattr(tasks, options.task)

    def _warm_up(self):
        for _ in range(WARMUP):
            self.queue.enqueue(self.function)

    def single(self):
        self._warm_up()
        jobs = self.options.jobs
        return timed(
            lambda: [self.queue.enqueue(self.function) for _ in range(jobs)], jobs
        )

    def bulk(self):
        self._warm_up()
        return timed(self._enqueue_many, self.options.jobs)

    def _enqueue_many(self):
        from rq import Queue

        calls = [Queue.prepare_data(self.function)] * self.options.jobs
        with self.connection.pipeline() as pipe:
            self.queue.enqueue_many(calls, pipeline=pipe)
            pipe.execute()

    def prefill(self):
        return timed(self._enqueue_many, self.options.jobs)

    def pace(self):
        return paced(
            lambda: self.queue.enqueue(self.function),
            self.options.rate,
            self.options.seconds,
        )

    def steady(self):
        return {"error": "the soak measures our system only"}

    def http(self):
        return {"error": "raw RQ has no web pages"}

    def producer(self):
        return {"error": "the producers measure our system only"}


class AppModule:
    """PgQueuer, Procrastinate or Celery: pre-fill through `enqueue` of the
    system's app module (a bulk insert where the library has one)."""

    def __init__(self, options):
        import importlib

        self.options = options
        self.module = importlib.import_module(APP_MODULES[options.system])

    def prefill(self):
        jobs = self.options.jobs
        return timed(lambda: self.module.enqueue(self.options.task, jobs), jobs)

    def __getattr__(self, action):
        return lambda: {"error": f"{self.options.system}: prefill only"}


if __name__ == "__main__":
    sys.exit(main())
