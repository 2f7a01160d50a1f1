"""Enqueue: jobs/s of N enqueues in one process, one at a time and in bulk;
and of 8 producer processes enqueuing side by side, against pgbench's
transactions with as many clients on the same server, in the same run.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

from tests.services import wait_for

from ..log import log
from ..report import at_least
from .base import Part

PRODUCERS = 8
PGBENCH_SCALE = 10  # as `scale`: 1,000,000 accounts, rows seldom collide


def pgbench_command():
    """pgbench from the PATH, else from the PostgreSQL install."""
    found = shutil.which("pgbench")
    if found:
        return found
    bindir = subprocess.run(
        ["pg_config", "--bindir"], capture_output=True, text=True, check=True
    )
    return str(Path(bindir.stdout.strip()) / "pgbench")


class Enqueue(Part):
    """Time each system's client enqueueing N jobs singly and 4N in bulk;
    our client in `PRODUCERS` processes at once, and pgbench -N."""

    name = "enqueue"

    def define(self):
        define = self.report.define
        if self.harness.baselines:
            define("enqueue.rq.single", "jobs/s")
            define("enqueue.dtdb.single", "jobs/s")
            define("enqueue.rq.bulk", "jobs/s")
        for path in ("ours_db", "ours_redis"):
            single, bulk = f"enqueue.{path}.single", f"enqueue.{path}.bulk"
            define(single, "jobs/s", "enqueue.rq.single", [at_least(0.5, True)])
            define(bulk, "jobs/s", "enqueue.rq.bulk", [at_least(25_000)])
        self.pgbench_figure = f"enqueue.pgbench.{PRODUCERS}c"
        define(self.pgbench_figure, "txn/s")
        many = f"enqueue.ours_db.{PRODUCERS}p"
        define(many, "jobs/s", self.pgbench_figure, [at_least(0.6, True)])
        define(f"enqueue.ours_redis.{PRODUCERS}p", "jobs/s", self.pgbench_figure)

    def prepare(self):
        self.database = f"{self.options.db_prefix}_pgbench_n"
        postgres = self.harness.postgres
        postgres.create(self.database)
        self.harness.databases.append(self.database)
        url = postgres.database_url(self.database)
        init = [pgbench_command(), "-i", "-q", "-s", str(PGBENCH_SCALE), url]
        subprocess.run(init, check=True, capture_output=True)
        return True

    def run(self):
        harness = self.harness
        jobs = self.options.jobs
        for action, count in (("single", jobs), ("bulk", jobs * 4)):
            if harness.baselines:
                self._enqueue(f"enqueue.rq.{action}", harness.rq, action, count)
                # django-tasks-db has no bulk enqueue API.
                if action == "single":
                    self._enqueue("enqueue.dtdb.single", harness.dtdb, action, count)
            self._enqueue(f"enqueue.ours_db.{action}", harness.ours, action, count)
            ours_redis = harness.ours_redis
            self._enqueue(f"enqueue.ours_redis.{action}", ours_redis, action, count)
        for path, system in (("ours_db", harness.ours), ("ours_redis", ours_redis)):
            name = f"enqueue.{path}.{PRODUCERS}p"
            harness.measure([name], lambda s=system: self.producers(s, jobs * 2))
        harness.measure([self.pgbench_figure], self.pgbench)

    def _enqueue(self, name, system, action, jobs):
        def run():
            system.reset()
            return system.client(action, jobs=jobs)["rate"]

        self.harness.measure([name], run)

    def producers(self, system, jobs):
        """Start `PRODUCERS` clients, let them go together once all are warm,
        and return all their jobs / (last finish - first start)."""
        system.reset()
        harness = self.harness
        gate = Path(harness.workdir) / "producers"
        shutil.rmtree(gate, ignore_errors=True)
        gate.mkdir()
        go = gate / "go"
        each = max(1, jobs // PRODUCERS)
        commands = [
            [system.python, "-m", "bench.client", system.name, "producer"]
            + ["--jobs", str(each), "--ready", str(gate / f"ready-{i}")]
            + ["--go", str(go)]
            for i in range(PRODUCERS)
        ]
        processes = harness.start_workers(system, commands, "producer")
        try:
            wait_for(
                lambda: (
                    len(list(gate.glob("ready-*"))) == PRODUCERS
                    or any(p.popen.poll() is not None for p in processes)
                ),
                timeout=300,
                message="producers warmed up",
            )
            if len(list(gate.glob("ready-*"))) < PRODUCERS:
                raise RuntimeError(f"a producer failed; see {harness.workdir}")
            go.touch()
            for process in processes:
                if process.wait(timeout=600) != 0:
                    raise RuntimeError(f"a producer failed; see {process.log_path}")
            results = [last_json(process.output()) for process in processes]
        finally:
            for process in processes:
                process.kill()
        first = min(result["started"] for result in results)
        last = max(result["finished"] for result in results)
        return sum(result["jobs"] for result in results) / (last - first)

    def pgbench(self):
        """pgbench's TPC-B-like transactions without the branch and teller
        updates (-N): tps without the initial connection time."""
        url = self.harness.postgres.database_url(self.database)
        seconds = 3 if self.options.quick else 10
        command = [pgbench_command(), "-n", "-N", "-c", str(PRODUCERS), "-j", "2"]
        command += ["-T", str(seconds), url]
        output = subprocess.run(command, check=True, capture_output=True, text=True)
        found = re.search(r"tps = ([\d.]+) \(without initial", output.stdout)
        tps = float(found.group(1))
        log(f"{self.pgbench_figure}: {tps:.0f} txn/s")
        return tps


def last_json(output):
    """The JSON object on the last line of a client's output that holds one."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("a producer printed no result")
