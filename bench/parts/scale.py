"""Scale: 4 database workers draining one PostgreSQL, against pgbench's
TPC-B-like transactions with as many clients on the same server, in the same
sitting: what share of the server's transaction rate the queue turns into
jobs (docs/scaling.md reads it).
"""

import re
import subprocess

from ..log import log
from .base import Part
from .drain import Drain

WORKERS = 4
PGBENCH_SECONDS = 20
PGBENCH_SCALE = 10  # 1,000,000 accounts: past the size where rows collide


class Scale(Part):
    """Drain no-ops with `WORKERS` burst workers; pgbench with as many clients."""

    name = "scale"

    def define(self):
        self.pgbench_figure = f"scale.pgbench.tpcb.{WORKERS}c"
        self.ours_figure = f"scale.ours_db.noop.{WORKERS}w"
        self.report.define(self.pgbench_figure, "txn/s")
        self.report.define(self.ours_figure, "jobs/s", self.pgbench_figure)

    def prepare(self):
        self.database = f"{self.options.db_prefix}_pgbench"
        postgres = self.harness.postgres
        postgres.create(self.database)
        self.harness.databases.append(self.database)
        url = postgres.database_url(self.database)
        subprocess.run(
            ["pgbench", "-i", "-q", "-s", str(PGBENCH_SCALE), url],
            check=True,
            capture_output=True,
        )
        return True

    def run(self):
        harness = self.harness
        jobs = self.options.jobs * 2
        commands = [harness.ours.db_worker()] * WORKERS
        drain, name = Drain(harness), self.ours_figure
        harness.measure(
            [name], lambda: drain.drain(harness.ours, "noop", jobs, commands, name)[0]
        )
        harness.measure([self.pgbench_figure], self.pgbench)

    def pgbench(self):
        url = self.harness.postgres.database_url(self.database)
        command = ["pgbench", "-n", "-c", str(WORKERS), "-j", str(WORKERS)]
        command += ["-T", str(PGBENCH_SECONDS), url]
        output = subprocess.run(command, check=True, capture_output=True, text=True)
        tps = float(re.search(r"tps = ([\d.]+)", output.stdout).group(1))
        log(f"{self.pgbench_figure}: {tps:.0f} txn/s")
        return tps
