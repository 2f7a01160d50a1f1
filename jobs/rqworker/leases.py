"""Renew the leases of the jobs this process runs, from one thread."""

import logging
import os
import threading
import time
from contextlib import contextmanager

from django.db import DatabaseError, close_old_connections

from .. import conf
from ..core import transitions

logger = logging.getLogger("jobs.rq")


# Held by the worker's threads (leases, maintenance) while they use the
# database, and by the forking worker while it forks: a work horse forked
# while another thread was inside SQLite inherited SQLite's locks held, and
# hung on its first query.
database_in_use = threading.Lock()


class LeaseKeeper:
    """Renew the leases of the jobs this process runs, from one thread.

    One thread per process, started with the first job, not one per job (a
    thread start is dearer than a short job). A forked work horse starts its
    own (threads do not survive a fork).
    """

    def __init__(self):
        self.held = {}  # job pk -> job
        self.lock = threading.Lock()
        self.pid = None

    @contextmanager
    def holding(self, *jobs):
        for job in jobs:
            self.hold(job)
        try:
            yield
        finally:
            for job in jobs:
                self.let_go(job)

    def hold(self, job):
        with self.lock:
            if self.pid != os.getpid():
                self.pid = os.getpid()
                threading.Thread(
                    target=self._renew_forever, name="job-leases", daemon=True
                ).start()
            self.held[job.pk] = job

    def let_go(self, job):
        with self.lock:
            self.held.pop(job.pk, None)

    def _renew_forever(self):
        interval = conf.get("JOB_LEASE_SECONDS") / 3
        while True:
            time.sleep(interval)
            jobs = []
            try:
                with database_in_use:  # and so never holds `lock` in a fork
                    with self.lock:
                        jobs = list(self.held.values())
                    transitions.renew_leases(jobs)
            except DatabaseError as e:
                logger.warning(
                    "could not renew the leases of %d jobs: %s", len(jobs), e
                )
                close_old_connections()


lease_keeper = LeaseKeeper()
