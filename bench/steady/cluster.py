"""A PostgreSQL cluster of the soak's own, with stock settings, as production
starts one: `initdb` and `pg_ctl` run as the `postgres` user (when we are
root), in a temporary directory, trust authentication, on a spare port, its
unix socket in that directory. Stopped and deleted by `stop`.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.services import free_port

VERSION = "15"
BIN_DIRS = (Path(f"/usr/lib/postgresql/{VERSION}/bin"),)


def binary(name):
    """Find a PostgreSQL program: Debian's version directory first, then PATH."""
    for directory in BIN_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install PostgreSQL {VERSION}")
    return found


def as_owner(command):
    """Run a server command as `postgres` if we are root (PostgreSQL refuses
    root), else as ourselves."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


class PrivateCluster:
    """One throwaway cluster; `settings` are extra `-c` options (autovacuum=off)."""

    def __init__(self, log_path, settings=()):
        self.log_path = Path(log_path)  # the server log is copied here at stop
        self.settings = list(settings)
        self.port = free_port()
        self.directory = None

    @property
    def url(self):
        """The server's URL without a database name."""
        return f"postgres://postgres@127.0.0.1:{self.port}"

    @property
    def data(self):
        return self.directory / "data"

    def start(self):
        """initdb a fresh cluster and start it; wait until it accepts connections."""
        self.directory = Path(tempfile.mkdtemp(prefix="soak-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        initdb = [binary("initdb"), "-D", str(self.data), "-U", "postgres"]
        initdb += ["--auth=trust", "--encoding=UTF8", "--locale=C"]
        self._run(initdb)
        options = [f"-p {self.port}", f"-k {self.directory}", "-h 127.0.0.1"]
        options += [f"-c {setting}" for setting in self.settings]
        start = [binary("pg_ctl"), "-D", str(self.data), "-w", "-t", "60"]
        start += ["-l", str(self.directory / "server.log"), "-o", " ".join(options)]
        self._run([*start, "start"])

    def stop(self):
        """Stop the server (fast: ends sessions), keep its log, delete the cluster."""
        if self.directory is None:
            return
        if (self.data / "postmaster.pid").exists():
            stop = [binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]
            self._run(stop, check=False)
        server_log = self.directory / "server.log"
        if server_log.exists():
            shutil.copyfile(server_log, self.log_path)
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None

    def _run(self, command, check=True):
        done = subprocess.run(
            as_owner(command), capture_output=True, text=True, cwd=self.directory
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{Path(command[0]).name} exited {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-800:]}"
            )

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
