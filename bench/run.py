"""Benchmark the job system against five other job queues, in one run.

The baselines: raw RQ, django-tasks-db, PgQueuer, Procrastinate and Celery
(`--pool=solo`), on the same PostgreSQL and the same private Redis.

    uv run python bench/run.py --jobs 5000 --repeat 3 --json bench/results.json
    uv run python bench/run.py --quick          # tiny numbers: proves it works

Needs PostgreSQL (`--postgres`, default postgres://root@127.0.0.1:5432) where
it creates and drops its own scratch databases (`--db-prefix`), and
`redis-server` on the PATH: it starts a private one on a spare port. The
baselines are installed with uv into `bench/.venv-baselines`.

How figures are taken (the same for every system):
- enqueue: jobs/s of N enqueues in one process after 20 untimed ones; and
  of 8 producer processes let go together once warm, each enqueuing N/4 jobs
  one per autocommit transaction: all jobs / (last finish - first start), as
  the producers clock it, against `pgbench -N -c 8 -j 2` (tps without the
  initial connection time) on a scratch database of the same server;
- drain: N jobs pre-filled in bulk, a CHECKPOINT, then burst workers
  started (Celery has no burst mode: stopped once its stamps count N); jobs/s is
  N / (last job finished - first job started), read from each system's own
  store (our rows, django-tasks-db's rows, RQ's job hashes, PgQueuer's log,
  Procrastinate's events, the Celery worker's stamps in Redis), so
  interpreter start-up is not counted; `<figure>.cold` is
  N / (last job finished - worker processes spawned), start-up included;
- startup: one job waiting, one worker spawned; seconds from the spawn to
  that job's start in the system's store;
- pickup: idle workers, jobs enqueued one by one at `--rate` jobs/s for
  `--pace-seconds`; latency = started_at - enqueued_at of each job (the first
  5 jobs are warm-up and dropped);
- http (the big table): on a database holding `--health-rows` finished jobs,
  `/health` and `/admin/jobs/job/` (plain, each filter, each kind of search)
  through Django's test client as a superuser; one burst worker draining N
  no-ops (against the empty table's drain); the slowest pickup while
  `prunejobs` deletes 1,000,000 old rows beside an idle worker;
- scale: 4 burst database workers drain 2N no-ops, against pgbench's
  TPC-B-like transactions with 4 clients on the same server (`--quick` skips
  it unless named with `--only`).
Each figure is taken `--repeat` times; the table shows min/median/max, the
baseline's median, the ratio of medians and whether the target is met.
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Harness  # noqa: E402
from bench.log import log  # noqa: E402
from bench.parts import PARTS  # noqa: E402
from bench.services import BASELINE_PACKAGES, ROOT  # noqa: E402


def parse_args(argv):
    """Read the options; `--quick` shrinks the numbers for a smoke run."""
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
    parser.add_argument(
        "--no-http", action="store_true", help="skip the big-table part (http)"
    )
    parser.add_argument("--health-rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=100, help="per page")
    parser.add_argument("--rate", type=float, default=50.0, help="pickup jobs/s")
    parser.add_argument("--pace-seconds", type=float, default=4.0)
    parser.add_argument(
        "--only",
        action="append",
        choices=list(PARTS),
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


def chosen_parts(options):
    """Return the part classes `--only` and `--no-http` leave, in `PARTS` order."""
    names = set(options.only or PARTS)
    if options.no_http:
        names.discard("http")
    if options.quick and not options.only:
        names.discard("scale")  # a smoke run proves the harness, not the server
    return [part for name, part in PARTS.items() if name in names]


def meta(options, started, finished):
    """Describe the run for the JSON: when, on what code and machine, how."""

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
    """Run the benchmark, write the JSON and print the table; 1 if a figure failed."""
    options = parse_args(argv)
    started = datetime.now(UTC)
    load = os.getloadavg()
    log(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    workdir = Path(options.logs)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    harness = Harness(options, workdir)
    try:
        harness.setup()
        harness.run([part(harness) for part in chosen_parts(options)])
    finally:
        harness.teardown()
    report = harness.report
    report.write_json(options.json, meta(options, started, datetime.now(UTC)))
    print(report.table())
    print(
        "ratio: our median / the baseline's (jobs/s: higher is better; "
        "ms and s: lower); (Nx) after a target: the ratio to the figure it names"
    )
    print(
        f"load average at start {load[0]:.2f}, at end {os.getloadavg()[0]:.2f}; "
        f"JSON: {options.json}"
    )
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
