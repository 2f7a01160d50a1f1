"""The worker registry: each worker process says it is alive."""

import os
import socket
from functools import cache
from pathlib import Path

from django.db.models import DateTimeField, Value
from django.utils import timezone

from .expressions import DatabaseNow
from .models import WorkerProcess


def register(worker_id, kind, queues, concurrency):
    """Record a starting worker process, in one statement: a new row, or the
    row of this id brought up to date."""
    now = timezone.now()
    row = WorkerProcess(
        id=worker_id,
        kind=kind,
        hostname=socket.gethostname(),
        pid=os.getpid(),
        pid_space=pid_space(),
        queues=list(queues),
        concurrency=concurrency,
        started_at=now,
        last_heartbeat_at=now,
        clock_ahead=ahead_of(now),
    )
    WorkerProcess.objects.bulk_create(
        [row],
        update_conflicts=True,
        unique_fields=["id"],
        update_fields=[*REGISTERED, "clock_ahead"],
    )


# What `register` writes over the row of a worker id registered before.
REGISTERED = [
    "kind",
    "hostname",
    "pid",
    "pid_space",
    "queues",
    "concurrency",
    "started_at",
    "last_heartbeat_at",
]


def report_alive(worker_id, hears_notify=None):
    """Say this worker is alive, and whether NOTIFY reaches it; return 0 if
    its row was pruned (register again)."""
    now = timezone.now()
    return WorkerProcess.objects.filter(id=worker_id).update(
        last_heartbeat_at=now, hears_notify=hears_notify, clock_ahead=ahead_of(now)
    )


def ahead_of(now):
    """How far `now`, read from this host's clock, is ahead of the
    database's clock in the statement that writes it."""
    return Value(now, output_field=DateTimeField()) - DatabaseNow()


def unregister(worker_id):
    """Remove a worker that is exiting cleanly."""
    WorkerProcess.objects.filter(id=worker_id).delete()


def forget_dead(older_than):
    """Delete workers whose last heartbeat is older than `older_than`."""
    cutoff = timezone.now() - older_than
    return WorkerProcess.objects.filter(last_heartbeat_at__lt=cutoff).delete()[0]


@cache
def pid_space():
    """Name the process ids this process can see: this kernel boot and this
    pid namespace (a container has its own). "" where Linux does not say."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return f"{boot}:{namespace}"[:80]


def dead_neighbours(worker_id):
    """Registered workers, other than `worker_id`, whose process ids this
    process can see, and whose process is gone."""
    space = pid_space()
    if not space:
        return []
    others = WorkerProcess.objects.filter(pid_space=space).exclude(id=worker_id)
    return [worker for worker in others if not process_alive(worker.pid)]


def process_alive(pid):
    """Say whether process `pid` runs (a zombie, dead but not reaped, does not)."""
    if pid == os.getpid():
        return False  # that worker's pid is this process's now: it is gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"
