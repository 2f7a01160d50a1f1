"""Private services for the tests (and the benchmark): a redis-server and a
pgbouncer of their own on spare ports, and waiting for a condition.

Nothing here touches the Redis on 6379.
"""

import os
import pwd
import socket
import subprocess
import time

import redis


def wait_for(predicate, timeout, message, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {message}")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- Redis ----------------------------------------------------------------


class PrivateRedis:
    """A redis-server of our own on a spare port."""

    def __init__(self, directory):
        self.port = free_port()
        self.directory = directory
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        return redis.Redis(port=self.port, socket_connect_timeout=1)

    def start(self):
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_for(self._answers, 10, "redis-server to start")

    def _answers(self):
        try:
            return self.client().ping()
        except redis.ConnectionError:
            return False

    def flush(self):
        self.client().flushall()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


# --- PgBouncer --------------------------------------------------------------

PGBOUNCER = "/usr/sbin/pgbouncer"  # Debian's package


class PrivatePgBouncer:
    """A pgbouncer of our own on a spare port, in transaction mode, in front
    of the PostgreSQL at `host`:`port`: it lets `user` in without a password
    and logs in to PostgreSQL as `user` with `password`."""

    def __init__(self, directory, host, port, user, password=""):
        self.port = free_port()
        self.directory = directory
        self.target = f"host={host} port={port} user={user}"
        if password:
            self.target += f" password={password}"
        self.user = user
        self.process = None

    def url(self, name):
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{name}"

    def start(self):
        ini = self.directory / "pgbouncer.ini"
        userlist = self.directory / "userlist.txt"
        userlist.write_text(f'"{self.user}" ""\n')
        ini.write_text(
            "[databases]\n"
            f"* = {self.target}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            "unix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {userlist}\n"
            "pool_mode = transaction\n"
            "max_client_conn = 200\ndefault_pool_size = 4\n"
        )
        # pgbouncer refuses to run as root; it reads its files, then drops to -u.
        user = ["-u", unprivileged_user()] if os.getuid() == 0 else []
        self.log = open(self.directory / "pgbouncer.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [PGBOUNCER, *user, str(ini)], stdout=self.log, stderr=subprocess.STDOUT
        )
        wait_for(self._answers, 10, "pgbouncer to start")

    def _answers(self):
        if self.process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {self.process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        if self.process:
            self.log.close()


def unprivileged_user():
    """A user to run a server as when we are root: postgres, else nobody."""
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name).pw_name
        except KeyError:
            continue
    raise RuntimeError("no unprivileged user (postgres, nobody) to run pgbouncer as")
