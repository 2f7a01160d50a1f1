"""Benchmark the job system against raw RQ and django-tasks-db, in one run.

    uv run python bench/run.py --jobs 5000 --repeat 3 --json bench/results.json
    uv run python bench/run.py --quick          # tiny numbers: proves it works

Needs PostgreSQL (`--postgres`, default postgres://root@127.0.0.1:5432) where
it creates and drops its own scratch databases (`--db-prefix`), and
`redis-server` on the PATH: it starts a private one on a spare port. The
baselines are installed with uv into `bench/.venv-baselines`.

How figures are taken (the same for every system):
- enqueue: jobs/s of N enqueues in one process after 20 untimed ones;
- drain: N jobs pre-filled in bulk, then burst workers started; jobs/s is
  N / (last job finished - first job started), read from each system's own
  store (our rows, django-tasks-db's rows, RQ's job hashes), so interpreter
  start-up is not counted. The wall time including start-up is in the JSON;
- pickup: idle workers, jobs enqueued one by one at `--rate` jobs/s for
  `--pace-seconds`; latency = started_at - enqueued_at of each job (the first
  5 jobs are warm-up and dropped);
- http: `/health` and `/admin/jobs/job/` through Django's test client as a
  superuser, on a database holding `--health-rows` finished jobs.
Each figure is taken `--repeat` times; the table shows min/median/max, the
baseline's median, the ratio of medians and whether the target is met.
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Harness  # noqa: E402
from bench.log import log  # noqa: E402
from bench.report import Target, percentile  # noqa: E402
from bench.services import BASELINE_PACKAGES, ROOT  # noqa: E402
from bench.systems import Ours  # noqa: E402
from tests.services import wait_for  # noqa: E402

TASKS = ("noop", "sleep10ms")
PAGES = ("health", "health_uncached", "admin_jobs")
HTTP_FIGURES = [f"http.{page}.{q}" for page in PAGES for q in ("p50", "p99")]
PICKUP_WARMUP = 5
# Our RQ worker classes and the raw RQ classes they are measured against.
RQ_CLASSES = {
    "fork": ("JobsWorker", "Worker"),
    "simple": ("JobsSimpleWorker", "SimpleWorker"),
}


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure")
    parser.add_argument("--json", default="bench/results.json", help="output file")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny numbers, 1 repetition, 1 worker, no 1M-row pages (for CI)",
    )
    parser.add_argument("--no-baselines", action="store_true", help="ours only")
    parser.add_argument("--no-http", action="store_true", help="skip the 1M-row pages")
    parser.add_argument("--health-rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=100, help="per page")
    parser.add_argument("--rate", type=float, default=50.0, help="pickup jobs/s")
    parser.add_argument("--pace-seconds", type=float, default=4.0)
    parser.add_argument(
        "--only",
        action="append",
        choices=["enqueue", "drain", "pickup", "http"],
        help="run only these parts (repeatable)",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://root@127.0.0.1:5432"),
        help="server URL without a database name",
    )
    parser.add_argument(
        "--match",
        action="append",
        help="measure only figures whose name contains this (repeatable)",
    )
    parser.add_argument("--db-prefix", default="bench")
    parser.add_argument(
        "--logs", default="bench/.last-run", help="worker and client logs (emptied)"
    )
    parser.add_argument("--keep-databases", action="store_true")
    parser.add_argument("--log-level", default="INFO", help="LOG_LEVEL of our side")
    options = parser.parse_args(argv)
    if options.quick:
        options.jobs = min(options.jobs, 200)
        options.repeat = 1
        options.no_http = True
        options.pace_seconds = min(options.pace_seconds, 1.5)
    return options


class Runner(Harness):
    def __init__(self, options, workdir):
        super().__init__(options, workdir)
        self.parts = set(options.only or ["enqueue", "drain", "pickup", "http"])
        if options.no_http:
            self.parts.discard("http")
        # --quick drains with one worker only: each start costs ~1 s of Django.
        self.worker_counts = (1,) if options.quick else (1, 2)

    # --- Counts ------------------------------------------------------------

    def jobs_for(self, task, fork=False):
        jobs = self.options.jobs
        if fork:
            return max(20, jobs // 10)  # a fork per job: ~100 jobs/s
        return max(20, jobs // 4) if task == "sleep10ms" else jobs

    # --- Measuring ---------------------------------------------------------

    def drain(self, system, task, jobs, commands, label):
        system.reset()
        system.client("prefill", jobs=jobs, task=task)
        started = time.monotonic()
        processes = self.start_workers(system, commands, label)
        for process in processes:
            code = process.wait(timeout=120 + jobs / 5)
            process.close()
            if code != 0:
                raise RuntimeError(f"worker exited {code}; log: {process.log_path}")
        wall = time.monotonic() - started
        window = system.window()
        if window.count != jobs:
            raise RuntimeError(f"{window.count} of {jobs} jobs finished ({label})")
        log(f"{label}: {jobs} jobs in {window.seconds:.2f}s (wall {wall:.2f}s)")
        self.report.detail(label, jobs=jobs, seconds=window.seconds, wall=wall)
        return jobs / window.seconds

    def pickup(self, system, commands, label, ready):
        system.reset()
        processes = self.start_workers(system, commands, label)
        try:
            wait_for(lambda: ready(processes), 60, f"{label} workers to start")
            time.sleep(0.5)  # past start-up work (LISTEN, first poll)
            sent = system.client(
                "pace", rate=self.options.rate, seconds=self.options.pace_seconds
            )
            wait_for(
                lambda: system.finished() >= sent["jobs"], 60, f"{label} to finish"
            )
        finally:
            for process in processes:
                process.terminate()
        rows = system.pickups()[PICKUP_WARMUP:]
        self.report.detail(label, jobs=len(rows))
        latencies = [
            (started - enqueued).total_seconds() * 1000 for enqueued, started in rows
        ]
        return percentile(latencies, 0.5), percentile(latencies, 0.99)

    # --- The parts ---------------------------------------------------------

    def define_figures(self):
        define = self.report.define
        ge, le = (
            (lambda v, rel=False: Target(">=", v, rel)),
            (lambda v: Target("<=", v)),
        )
        if "enqueue" in self.parts:
            if self.baselines:
                define("enqueue.rq.single", "jobs/s")
                define("enqueue.dtdb.single", "jobs/s")
                define("enqueue.rq.bulk", "jobs/s")
            for path in ("ours_db", "ours_redis"):
                define(
                    f"enqueue.{path}.single",
                    "jobs/s",
                    "enqueue.rq.single",
                    [ge(0.5, True)],
                )
                define(
                    f"enqueue.{path}.bulk", "jobs/s", "enqueue.rq.bulk", [ge(25_000)]
                )
        if "drain" in self.parts:
            for task in TASKS:
                for workers in self.worker_counts:
                    base = f"drain.dtdb.{task}.{workers}w"
                    if self.baselines:
                        define(base, "jobs/s")
                    targets = []
                    if workers == 1:
                        targets = (
                            [ge(10, True), ge(3000)] if task == "noop" else [ge(400)]
                        )
                    define(f"drain.ours_db.{task}.{workers}w", "jobs/s", base, targets)
            for kind in RQ_CLASSES:
                for task in TASKS:
                    for workers in self.worker_counts:
                        base = f"drain.rq.{kind}.{task}.{workers}w"
                        if self.baselines:
                            define(base, "jobs/s")
                        define(
                            f"drain.ours_rq.{kind}.{task}.{workers}w",
                            "jobs/s",
                            base,
                            [ge(0.8, True)],
                        )
        if "pickup" in self.parts:
            pairs = [("ours_db", "dtdb", 5), ("ours_rq.simple", "rq.simple", 3)]
            pairs.append(("ours_rq.fork", "rq.fork", None))
            for ours, base, p50 in pairs:
                if self.baselines:
                    define(f"pickup.{base}.p50", "ms")
                    define(f"pickup.{base}.p99", "ms")
                define(
                    f"pickup.{ours}.p50",
                    "ms",
                    f"pickup.{base}.p50",
                    [le(p50)] if p50 else [],
                )
                define(
                    f"pickup.{ours}.p99",
                    "ms",
                    f"pickup.{base}.p99",
                    [le(15)] if p50 else [],
                )
        if "http" in self.parts:
            define("http.health.p50", "ms")
            define("http.health.p99", "ms", targets=[le(50)])
            define("http.health_uncached.p50", "ms")
            define("http.health_uncached.p99", "ms", targets=[le(50)])
            define("http.admin_jobs.p50", "ms")
            define("http.admin_jobs.p99", "ms", targets=[le(300)])

    def run_enqueue(self):
        jobs, bulk = self.options.jobs, self.options.jobs * 4
        for action, count in (("single", jobs), ("bulk", bulk)):
            if self.baselines:
                self._enqueue(f"enqueue.rq.{action}", self.rq, action, count)
                if action == "single":
                    self._enqueue("enqueue.dtdb.single", self.dtdb, action, count)
            self._enqueue(f"enqueue.ours_db.{action}", self.ours, action, count)
            self._enqueue(
                f"enqueue.ours_redis.{action}", self.ours_redis, action, count
            )

    def _enqueue(self, name, system, action, jobs):
        def run():
            system.reset()
            return system.client(action, jobs=jobs)["rate"]

        self.measure([name], run)

    def run_drain(self):
        for task in TASKS:
            jobs = self.jobs_for(task)
            for workers in self.worker_counts:
                if self.baselines:
                    name = f"drain.dtdb.{task}.{workers}w"
                    commands = [self.dtdb.worker()] * workers
                    self._drain(name, self.dtdb, task, jobs, commands)
                name = f"drain.ours_db.{task}.{workers}w"
                commands = [self.ours.db_worker()] * workers
                self._drain(name, self.ours, task, jobs, commands)
        for kind, (ours_class, rq_class) in RQ_CLASSES.items():
            for task in TASKS:
                jobs = self.jobs_for(task, fork=kind == "fork")
                for workers in self.worker_counts:
                    if self.baselines:
                        name = f"drain.rq.{kind}.{task}.{workers}w"
                        commands = [self.rq.worker(rq_class)] * workers
                        self._drain(name, self.rq, task, jobs, commands)
                    name = f"drain.ours_rq.{kind}.{task}.{workers}w"
                    commands = [self.ours_redis.rq_worker(ours_class)] * workers
                    self._drain(name, self.ours_redis, task, jobs, commands)

    def _drain(self, name, system, task, jobs, commands):
        self.measure([name], lambda: self.drain(system, task, jobs, commands, name))

    def run_pickup(self):
        if self.baselines:
            self._pickup(
                "pickup.dtdb",
                self.dtdb,
                [self.dtdb.worker(burst=False)],
                lambda ps: self.dtdb.workers_ready(1, ps),
            )
        self._pickup(
            "pickup.ours_db",
            self.ours,
            [self.ours.db_worker(burst=False)],
            lambda ps: self.ours.workers_ready(1),
        )
        for kind, (ours_class, rq_class) in RQ_CLASSES.items():
            if self.baselines:
                self._pickup(
                    f"pickup.rq.{kind}",
                    self.rq,
                    [self.rq.worker(rq_class, burst=False)],
                    lambda ps: self.rq.workers_ready(1),
                )
            self._pickup(
                f"pickup.ours_rq.{kind}",
                self.ours_redis,
                [self.ours_redis.rq_worker(ours_class, burst=False)],
                lambda ps: self.ours_redis.workers_ready(1),
            )

    def _pickup(self, prefix, system, commands, ready):
        names = [f"{prefix}.p50", f"{prefix}.p99"]
        self.measure(names, lambda: self.pickup(system, commands, prefix, ready))

    def setup_http(self):
        self.health = Ours(self, f"{self.options.db_prefix}_health")
        self.databases.append(self.health.database)
        rows = self.options.health_rows
        log(f"filling {self.health.database} with {rows:,} finished jobs")
        self.health.setup()
        started = time.monotonic()
        with self.postgres.connect(self.health.database) as conn:
            conn.execute(FILL_SQL, {"rows": self.options.health_rows})
            conn.execute("ANALYZE jobs_job")
        log(f"filled in {time.monotonic() - started:.1f}s")

    def run_http(self):
        def run():
            result = self.health.client("http", requests=self.options.requests)
            values = []
            for page in PAGES:
                timing = result[page]
                if not timing["available"]:
                    self.report.note(
                        f"http.{page}.p50", f"not available ({timing['status']})"
                    )
                    self.report.note(
                        f"http.{page}.p99", f"not available ({timing['status']})"
                    )
                    continue
                ms = [s * 1000 for s in timing["seconds"]]
                values += [
                    (f"http.{page}.p50", percentile(ms, 0.5)),
                    (f"http.{page}.p99", percentile(ms, 0.99)),
                ]
            for name, value in values:
                self.report.add(name, value)
            log(", ".join(f"{n}={v:.4g}" for n, v in values))
            return "ok"

        try:
            run()
        except Exception as e:
            self.report.error(HTTP_FIGURES, f"{type(e).__name__}: {e}")

    def run(self):
        self.define_figures()
        if "http" in self.parts:
            try:
                self.setup_http()
            except Exception as e:
                log(f"could not fill the pages' database: {e}")
                self.report.error(HTTP_FIGURES, f"{type(e).__name__}: {e}")
                self.parts.discard("http")
        for rep in range(self.options.repeat):
            log(f"repetition {rep + 1} of {self.options.repeat}")
            for part in ("enqueue", "drain", "pickup", "http"):
                if part in self.parts:
                    getattr(self, f"run_{part}")()


# 1,000,000 finished jobs over the last ~14 hours, 1% of them failed, in one
# statement. Column list as in jobs/migrations/0001_initial.py.
FILL_SQL = """
INSERT INTO jobs_job (
    id, task_path, queue_name, priority, status, args, kwargs, return_value,
    errors, worker_ids, attempts, max_attempts, enqueued_at, run_after,
    started_at, last_attempted_at, finished_at, progress, progress_message,
    lease_token, lease_expires_at, cancel_requested)
SELECT gen_random_uuid(), 'bench.djtasks.noop', 'default', 0,
    CASE WHEN i %% 100 = 0 THEN 'FAILED' ELSE 'SUCCESSFUL' END,
    '[]', '{}', NULL,
    CASE WHEN i %% 100 = 0 THEN '[{"exception_class_path": "builtins.ValueError",
        "message": "bench", "traceback": "ValueError: bench\\n", "attempt": 3,
        "worker_id": "bench:1:abcdef", "failed_at": "2026-01-01T00:00:00+00:00"}]'
        ELSE '[]' END::jsonb,
    '["bench:1:abcdef"]', 1, 3, t, t, t + interval '1 ms', t + interval '1 ms',
    t + interval '2 ms', NULL, '', '', NULL, false
FROM (
    SELECT i, now() - i * interval '50 ms' AS t
    FROM generate_series(1, %(rows)s) AS i
) AS s
"""


def meta(options, started, finished):
    def git(*args):
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    return {
        "started": started.isoformat(),
        "finished": finished.isoformat(),
        "commit": git("rev-parse", "HEAD"),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "jobs": options.jobs,
        "repeat": options.repeat,
        "quick": options.quick,
        "log_level": options.log_level,
        "job_settings": {k: v for k, v in os.environ.items() if k.startswith("JOB_")},
        "baselines": None if options.no_baselines else BASELINE_PACKAGES,
        "method": __doc__.split("How figures are taken")[1].strip(),
    }


def main(argv=None):
    options = parse_args(argv)
    started = datetime.now(UTC)
    load = os.getloadavg()
    log(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    workdir = Path(options.logs)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    runner = Runner(options, workdir)
    try:
        runner.setup()
        runner.run()
    finally:
        runner.teardown()
    report = runner.report
    report.write_json(options.json, meta(options, started, datetime.now(UTC)))
    print(report.table())
    print("ratio: our median / the baseline's (jobs/s: higher is better; ms: lower)")
    print(
        f"load average at start {load[0]:.2f}, at end {os.getloadavg()[0]:.2f}; "
        f"JSON: {options.json}"
    )
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
