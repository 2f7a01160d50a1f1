"""Soak one worker under a steady load and check issue 20's health targets.

    uv run python bench/soak.py                      # 8 min, autovacuum on, then off
    uv run python bench/soak.py --minutes 240 --autovacuum on   # for hours
    uv run python bench/soak.py --kind rq --hold-transaction 3:120

How it measures (the same for every run):
- each run starts a private PostgreSQL 15 cluster with stock settings
  (`initdb` + `pg_ctl` as the `postgres` user, trust auth, a spare port;
  `-c autovacuum=off` for the run without autovacuum) and migrates our schema
  into it; the cluster is deleted at the end;
- capacity (unless `--rate`): one worker (`jobworker`, or `rqworker-pool
  --num-workers N` with a private redis-server for `--kind rq`) drains
  `--capacity-jobs` pre-filled no-ops; capacity = jobs / (last finished -
  first started), from our rows. It is measured once, on the first cluster;
- the soak: one worker (JOB_CONCURRENCY=N, JOB_CLEANUP_AGE=60000 ms, other
  settings default or from the environment) and a producer calling
  `enqueue_many` every 100 ms at `fraction` x capacity (or `--rate`);
- every `--samples-every` seconds a connection of its own reads the window
  that ended 1 s before: offered = rows enqueued in it, completed = rows
  finished in it, backlog = READY and due rows now, pickup p50/p99 =
  last_attempted_at - run_after of the jobs whose run started in it (for
  these no-ops: started_at - enqueued_at), table + index size, dead and live
  tuples and vacuum/analyze runs from pg_stat_user_tables, and overdue rows
  (finished longer ago than retention + one maintenance interval) against
  retained rows (finished within retention);
- targets, in every window after the first: completed >= 90% of offered,
  backlog < 0.5 s of offered work, pickup p99 <= 100 ms, overdue < 10% of
  retained; and size at the end <= 1.5x the size at two minutes.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/soak.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.log import log  # noqa: E402
from bench.services import ROOT  # noqa: E402
from bench.steady import hold, table  # noqa: E402
from bench.steady.cluster import PrivateCluster  # noqa: E402
from bench.steady.load import Load, Site  # noqa: E402
from bench.steady.runner import Soak  # noqa: E402
from tests.services import PrivateRedis  # noqa: E402

SETTINGS = {"on": [], "off": ["autovacuum=off"]}


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="bench/soak.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--samples-every", type=float, default=30.0, help="seconds")
    parser.add_argument("--fraction", type=float, default=0.6, help="of capacity")
    parser.add_argument("--rate", type=float, help="jobs/s offered (no capacity run)")
    parser.add_argument("--autovacuum", choices=["on", "off", "both"], default="both")
    parser.add_argument("--kind", choices=["db", "rq"], default="db")
    parser.add_argument("--concurrency", type=int, default=5, help="threads/workers")
    parser.add_argument("--retention-seconds", type=float, default=60.0)
    parser.add_argument("--capacity-jobs", type=int, default=20_000)
    parser.add_argument(
        "--hold-transaction",
        metavar="AT_MIN:SECONDS",
        type=hold.parse,
        help="at minute AT hold a REPEATABLE READ snapshot open for SECONDS",
    )
    parser.add_argument("--json", default="bench/.last-soak/soak.json")
    parser.add_argument(
        "--logs", default="bench/.last-soak", help="worker and server logs (emptied)"
    )
    parser.add_argument("--log-level", default="INFO", help="LOG_LEVEL of our side")
    return parser.parse_args(argv)


def stop_on_sigterm():
    """Let SIGTERM unwind like Ctrl-C, so the clusters and workers are stopped."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main(argv=None):
    """Run the soak once per autovacuum setting; print and write the results."""
    options = parse_args(argv)
    stop_on_sigterm()
    workdir = Path(options.logs)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    results = {"meta": meta(options), "capacity": None, "runs": []}
    redis = PrivateRedis(workdir) if options.kind == "rq" else None
    if redis:
        redis.start()
    try:
        for setting in (
            SETTINGS if options.autovacuum == "both" else [options.autovacuum]
        ):
            results["runs"].append(run_one(options, setting, workdir, redis, results))
    finally:
        if redis:
            redis.stop()
        results["meta"]["finished"] = datetime.now(UTC).isoformat()
        results["meta"]["load_average_at_end"] = os.getloadavg()
        write_json(options.json, results)
    print_verdicts(results)
    return 0


def run_one(options, setting, workdir, redis, results):
    """Start a cluster with autovacuum `setting`, soak it, and delete it."""
    prefix = f"autovacuum-{setting}-"
    server_log = workdir / f"{prefix}postgres.log"
    with PrivateCluster(server_log, SETTINGS[setting]) as cluster:
        log(f"autovacuum {setting}: private PostgreSQL on port {cluster.port}")
        site = Site(cluster.url, workdir, redis, options.log_level, prefix)
        if options.rate is None and results["capacity"] is None:
            results["capacity"] = measure_capacity(options, site)
        rate = options.rate or options.fraction * results["capacity"]["rate"]
        load = make_load(options, site, "soak")
        load.migrate()
        if redis:
            redis.flush()
        log(f"autovacuum {setting}: {rate:.0f} jobs/s for {options.minutes:g} min")
        soak = Soak(
            load, rate, options.minutes, options.samples_every, options.hold_transaction
        )
        run = {"autovacuum": setting, "kind": options.kind}
        try:
            return {**run, **soak.run()}
        except BaseException as e:  # keep the samples taken before it stopped
            stopped = f"{type(e).__name__}: {e}"
            results["runs"].append({**run, "stopped": stopped, **soak.as_json()})
            raise


def make_load(options, site, database):
    retention_ms = round(options.retention_seconds * 1000)
    return Load(site, database, options.kind, options.concurrency, retention_ms)


def measure_capacity(options, site):
    """Drain pre-filled no-ops with one worker in a database of its own."""
    load = make_load(options, site, "capacity")
    load.migrate()
    try:
        capacity = load.capacity(options.capacity_jobs)
    finally:
        load.drop()
    log(
        f"capacity of one {options.kind} worker: {capacity['rate']:.0f} jobs/s "
        f"({capacity['jobs']} jobs in {capacity['seconds']:.2f}s)"
    )
    return capacity


def print_verdicts(results):
    capacity = results["capacity"]
    if capacity:
        print(f"\ncapacity: {capacity['rate']:.0f} jobs/s")
    for run in results["runs"]:
        print(
            f"\n{run['kind']} worker, autovacuum {run['autovacuum']}, "
            f"{run['rate']:.0f} jobs/s offered, {run['minutes']:g} min:"
        )
        print("\n".join(table.verdict_lines(run["verdicts"])))
        print("\n".join(table.slow_pickup_lines(run)))
        if "verdicts_after_hold" in run:
            print("  from one minute after the long transaction ended:")
            print("\n".join(table.verdict_lines(run["verdicts_after_hold"])))
    load = results["meta"]
    print(
        f"\nload average at start {load['load_average_at_start'][0]:.2f}, "
        f"at end {load['load_average_at_end'][0]:.2f}; "
        f"logs in {load['options']['logs']}"
    )


def meta(options):
    """Describe the run for the JSON: when, on what code and machine, how."""

    def git(*args):
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    return {
        "started": datetime.now(UTC).isoformat(),
        "commit": git("rev-parse", "HEAD"),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "options": vars(options),
        "job_settings": {k: v for k, v in os.environ.items() if k.startswith("JOB_")},
        "method": __doc__.split("How it measures")[1].strip(),
    }


def write_json(path, results):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as out:
        json.dump(results, out, indent=2, default=str)
        out.write("\n")
    log(f"JSON: {path}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # everything is stopped; the JSON is written
        log("interrupted")
        sys.exit(130)
