"""The thread that keeps an RQ worker in the registry and runs maintenance."""

import logging
import threading

import redis
from django.db import DatabaseError, close_old_connections, connections

from .. import conf, maintenance, worker_registry
from ..maintenance.rescue import rescue_from_dead_neighbours
from ..models import WorkerProcess
from .claiming import worker_id
from .leases import database_in_use

logger = logging.getLogger("jobs.rq")


class Maintainer(threading.Thread):
    """Keep an RQ worker in the registry and run maintenance duties.

    Every worker runs one; the leader lock lets one at a time work, so
    a deployment of only `web` and `rqworker` needs no cron job.
    """

    def __init__(self, worker):
        super().__init__(name="job-maintenance", daemon=True)
        self.worker = worker
        self.worker_id = worker_id()
        self.queues = worker.queue_names()
        self.stopped = threading.Event()

    def run(self):
        interval = min(
            conf.get("JOB_MAINTENANCE_SECONDS"), conf.get("JOB_LEASE_SECONDS") / 3
        )
        try:
            with database_in_use:
                self._register()
                rescue_from_dead_neighbours(self.worker_id)
            while not self.stopped.wait(interval):
                with database_in_use:  # also keeps a fork out of a DB call
                    self._turn()
                    self._revive_scheduler()
        finally:
            try:
                with database_in_use:
                    worker_registry.unregister(self.worker_id)
            except DatabaseError:
                pass  # it will be forgotten once its heartbeat is old
            connections.close_all()

    def _register(self):
        worker_registry.register(self.worker_id, WorkerProcess.Kind.RQ, self.queues, 1)

    def _turn(self):
        try:
            if not worker_registry.report_alive(self.worker_id):
                self._register()
            maintenance.run_due_duties(self.worker_id)
        except DatabaseError as e:
            logger.error("maintenance skipped, database error: %s", e)
            close_old_connections()

    def _revive_scheduler(self):
        try:
            self.worker.revive_scheduler()
        except redis.RedisError as e:
            logger.warning("could not start RQ's scheduler again: %s", e)

    def stop(self):
        self.stopped.set()
        self.join(timeout=5)
