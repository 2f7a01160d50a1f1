"""What every part of the benchmark shares: the private Redis, the scratch
databases, the systems under measurement, the report, and taking one
measurement into it.
"""

from pathlib import Path

from tests.services import PrivateRedis

from .baselines import Celery, PgQueuer, Procrastinate
from .log import log
from .report import Report
from .services import Postgres, Process, ensure_baseline_venv
from .systems import DjangoTasksDB, Ours, RawRQ


class Harness:
    """The services, systems and report of one benchmark run."""

    def __init__(self, options, workdir):
        self.options = options
        self.workdir = Path(workdir)
        self.postgres = Postgres(options.postgres)
        self.redis = PrivateRedis(self.workdir)
        self.log_level = options.log_level
        self.report = Report()
        self.baselines = not options.no_baselines
        prefix = options.db_prefix
        self.ours = Ours(self, f"{prefix}_jobs")
        self.ours_redis = self.ours.with_redis(True)
        self.dtdb = DjangoTasksDB(self, f"{prefix}_dtdb")
        self.rq = RawRQ(self)
        self.pgqueuer = PgQueuer(self, f"{prefix}_pgqueuer")
        self.procrastinate = Procrastinate(self, f"{prefix}_procrastinate")
        self.celery = Celery(self)
        # Every scratch database made in this run, dropped by `teardown`.
        self.databases = [self.ours.database, self.dtdb.database]
        self.databases += [self.pgqueuer.database, self.procrastinate.database]
        self._logs = 0

    def run(self, parts):
        """Define every part's figures, prepare the parts, then run those that
        could be prepared, `--repeat` times over."""
        for part in parts:
            part.define()
        ready = [part for part in parts if part.prepare()]
        for rep in range(self.options.repeat):
            log(f"repetition {rep + 1} of {self.options.repeat}")
            for part in ready:
                part.run()

    def log_path(self, label):
        """Name the next log file in the work directory, numbered in order."""
        self._logs += 1
        return self.workdir / f"{self._logs:04d}-{label}.log"

    def setup(self):
        """Start the private Redis, install the baselines, create the databases."""
        self.redis.start()
        if self.baselines:
            ensure_baseline_venv(log)
        log("creating scratch databases")
        self.ours.setup()
        if self.baselines:
            for system in (self.dtdb, self.pgqueuer, self.procrastinate, self.celery):
                system.setup()

    def teardown(self):
        """Stop the private Redis and drop the scratch databases unless kept."""
        self.redis.stop()
        if not self.options.keep_databases:
            for name in self.databases:
                self.postgres.drop(name)

    def measure(self, names, function):
        """Run one measurement; record its values, or the error against names."""
        match = self.options.match
        if match and not any(m in name for m in match for name in names):
            return
        try:
            values = function()
        except Exception as e:  # one broken figure must not lose the others
            log(f"{', '.join(names)}: {type(e).__name__}: {e}")
            self.report.error(names, f"{type(e).__name__}: {e}")
            return
        if isinstance(values, str):  # "not available"
            for name in names:
                self.report.note(name, values)
            return
        values = values if isinstance(values, tuple) else (values,)
        for name, value in zip(names, values, strict=True):
            self.report.add(name, value)
        log(", ".join(f"{n}={v:.4g}" for n, v in zip(names, values, strict=True)))

    def start_workers(self, system, commands, label):
        """Start one worker process per command, each logging to its own file."""
        return [
            Process(command, system.worker_env(), self.log_path(f"{label}-{i}"))
            for i, command in enumerate(commands)
        ]
