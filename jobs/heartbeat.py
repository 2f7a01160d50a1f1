"""The worker registry: each worker process says it is alive."""

import os
import socket

from django.utils import timezone

from .models import WorkerProcess


def register(worker_id, kind, queues, concurrency):
    """Record a starting worker process."""
    now = timezone.now()
    WorkerProcess.objects.update_or_create(
        id=worker_id,
        defaults={
            "kind": kind,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "queues": list(queues),
            "concurrency": concurrency,
            "started_at": now,
            "last_heartbeat_at": now,
        },
    )


def beat(worker_id):
    """Say this worker is alive; register again if its row was pruned."""
    return WorkerProcess.objects.filter(id=worker_id).update(
        last_heartbeat_at=timezone.now()
    )


def unregister(worker_id):
    """Remove a worker that is exiting cleanly."""
    WorkerProcess.objects.filter(id=worker_id).delete()


def forget_dead(older_than):
    """Delete workers whose last heartbeat is older than `older_than`."""
    cutoff = timezone.now() - older_than
    return WorkerProcess.objects.filter(last_heartbeat_at__lt=cutoff).delete()[0]
