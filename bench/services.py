"""What the benchmark runs against: scratch databases, the baselines'
virtualenv and worker processes (its private Redis is the tests', from
`tests.services`).

Nothing here touches a database it did not create or the Redis on 6379.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import suppress
from importlib.metadata import version
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
BASELINE_VENV = ROOT / "bench" / ".venv-baselines"
# django-tasks-db 0.13 is the ORM backend for Django 6.1's `django.tasks`;
# raw RQ is pinned to the version our project runs, so "the same worker class"
# is the same code. PgQueuer (on asyncpg, the driver its own benchmark uses),
# Procrastinate (psycopg 3, as ours) and Celery (Redis transport) are the
# latest releases that install on Python 3.13.
BASELINE_PACKAGES = [
    "django-tasks-db==0.13.0",
    f"django=={version('django')}",
    f"psycopg[binary]=={version('psycopg')}",
    f"rq=={version('rq')}",
    f"redis=={version('redis')}",
    # The same Redis client stack as ours: hiredis packs and parses in C.
    f"hiredis=={version('hiredis')}",
    "pgqueuer==1.6.0",
    # `pgq run` of pgqueuer 1.6.0 fails on the newest typer (0.29: its enum
    # options arrive as strings); 0.19.2 is the one its own lock file tested.
    "typer==0.19.2",
    "asyncpg==0.32.0",
    "procrastinate==3.10.0",
    "celery[redis]==5.7.0",
]


# --- PostgreSQL -----------------------------------------------------------


class Postgres:
    """Scratch databases on one server, created and dropped by name."""

    def __init__(self, url):
        self.url = url.rstrip("/")

    def database_url(self, name):
        return f"{self.url}/{name}"

    def _admin(self, sql):
        # Connect to `postgres` only for CREATE/DROP DATABASE and CHECKPOINT,
        # never to work in.
        with psycopg.connect(self.database_url("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def create(self, name):
        self.drop(name)
        self._admin(f'CREATE DATABASE "{name}"')

    def drop(self, name):
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def connect(self, name):
        return psycopg.connect(self.database_url(name), autocommit=True)

    def checkpoint(self):
        """Write out every change so far: the next figure's time holds no
        share of a checkpoint that earlier work made due."""
        self._admin("CHECKPOINT")


# --- The baselines' virtualenv ---------------------------------------------


def baseline_python():
    return BASELINE_VENV / "bin" / "python"


def ensure_baseline_venv(log):
    """Create `bench/.venv-baselines` with the baselines, unless it is current."""
    marker = BASELINE_VENV / "bench-packages.txt"
    wanted = "\n".join([*BASELINE_PACKAGES, "--compile-bytecode"])
    if marker.exists() and marker.read_text() == wanted:
        return
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("uv is needed to install the baselines (pip install uv)")
    # The project's own interpreter, so uv downloads no Python.
    interpreter = os.path.realpath(sys.executable)
    log(f"installing baselines into {BASELINE_VENV.relative_to(ROOT)}")
    subprocess.run(
        [uv, "venv", "--quiet", "--clear", "--python", interpreter, BASELINE_VENV],
        check=True,
    )
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--compile-bytecode"]
        + ["--python", baseline_python(), *BASELINE_PACKAGES],
        check=True,
    )
    marker.write_text(wanted)


# --- Processes ------------------------------------------------------------


class Process:
    """A worker or client subprocess whose output goes to a log file."""

    def __init__(self, command, env, log_path):
        self.log_path = log_path
        self.log = open(log_path, "w+")  # noqa: SIM115 (closed in stop)
        self.started = time.time()
        self.popen = subprocess.Popen(
            [str(part) for part in command],
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its children (work horses) go with it
        )

    def output(self):
        self.log.flush()
        return Path(self.log_path).read_text(errors="replace")

    def wait(self, timeout):
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TimeoutError(
                f"{self.popen.args[:4]} still running after {timeout:g}s; "
                f"log: {self.log_path}"
            ) from None

    def terminate(self, timeout=20):
        """SIGTERM (warm shutdown), then SIGKILL the group if it lingers."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.close()

    def kill(self):
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        self.close()

    def close(self):
        if not self.log.closed:
            self.log.close()


def run_json(command, env, log_path, timeout=600):
    """Run a client command and return the JSON on its last stdout line."""
    import json

    with open(log_path, "w") as log:
        done = subprocess.run(
            [str(part) for part in command],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            timeout=timeout,
        )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"{' '.join(map(str, command[:5]))} exited {done.returncode}; "
            f"see {log_path}"
        )
    return json.loads(lines[-1])
