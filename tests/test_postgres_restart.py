"""PostgreSQL restarts under a draining worker: a private cluster per test."""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from .helpers import ROOT, command_environment, wait_for
from .services import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
JOBS = 300


class PrivatePostgres:
    """A PostgreSQL 15 cluster of this test's own, run as the `postgres` user."""

    def __init__(self):
        self.directory = Path(tempfile.mkdtemp(prefix="jobs-pg-"))
        shutil.chown(self.directory, "postgres", "postgres")
        self.data = self.directory / "data"
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/jobs"
        self.log = self.directory / "server.log"

    def pg(self, program, *args):
        """Run a PostgreSQL program as `postgres` (we are root); return its output."""
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / program), *args],
            cwd=self.directory,  # postgres may not enter the project directory
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{program} failed:\n{done.stdout}{done.stderr}"
        return done.stdout

    def start(self):
        self.pg("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-N")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory}"
        self.pg("pg_ctl", "start", "-w", "-D", self.data, "-l", self.log, "-o", options)
        admin = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE jobs")

    def restart(self):
        """Fast shutdown (sessions are ended, no crash recovery), then start."""
        # -l: the server must not inherit the pipe of pg_ctl's output.
        self.pg(
            "pg_ctl",
            "restart",
            "-w",
            "-m",
            "fast",
            "-D",
            self.data,
            "-l",
            self.log,
        )

    def stop(self):
        if (self.data / "postmaster.pid").exists():
            self.pg("pg_ctl", "stop", "-m", "immediate", "-D", self.data)
        shutil.rmtree(self.directory, ignore_errors=True)

    def manage(self, *args):
        """Run `manage.py` against this cluster; return its output."""
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=command_environment({"DATABASE_URL": self.url}),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"manage.py {args[0]}:\n{done.stderr}"
        return done.stdout

    def count(self, sql):
        """One number from this cluster, on a connection of its own each time
        (a restart ends every session)."""
        with psycopg.connect(self.url, connect_timeout=5) as conn:
            return conn.execute(sql).fetchone()[0]


@pytest.fixture
def private_postgres(postgres_only):
    server = PrivatePostgres()
    try:
        server.start()
        server.manage("migrate", "--run-syncdb", "--noinput", "-v", "0")  # + testapp
        yield server
    finally:
        server.stop()


def successful(server):
    """How many jobs succeeded; fail at once if any job failed for good."""
    failed = server.count("SELECT count(*) FROM jobs_job WHERE status = 'FAILED'")
    assert failed == 0, f"{failed} jobs failed"
    return server.count("SELECT count(*) FROM jobs_job WHERE status = 'SUCCESSFUL'")


def test_postgres_fast_restart_mid_drain__worker_carries_on_and_each_job_runs_once(
    private_postgres, start_worker
):
    server = private_postgres
    server.manage(
        "shell",
        "-c",
        "from tests.testapp import tasks; tasks.sleep_then_record.enqueue_many("
        f"[((f'restart-{{i}}', 0.1), {{}}) for i in range({JOBS})])",
    )
    worker = start_worker(
        "--concurrency", "4", env={"DATABASE_URL": server.url, "LOG_LEVEL": "INFO"}
    )
    wait_for(lambda: successful(server) >= 20, timeout=60, message="some successes")

    server.restart()
    done_before = successful(server)  # a lower bound: counted after the restart
    assert done_before < JOBS, "the drain ended before the restart: nothing tested"

    wait_for(
        lambda: successful(server) == JOBS,
        timeout=180,
        message="every job to succeed after the restart",
    )
    # Run.key is unique: a second run of any job would have failed that run.
    assert server.count("SELECT count(*) FROM testapp_run") == JOBS
    assert server.count("SELECT count(DISTINCT key) FROM testapp_run") == JOBS
    assert server.count("SELECT count(*) FROM jobs_job") == JOBS
    assert worker.process.poll() is None, worker.output()[-5000:]
    attempts = server.count("SELECT sum(attempts) FROM jobs_job")
    print(f"\n{done_before} of {JOBS} done at the restart; {attempts} attempts")
