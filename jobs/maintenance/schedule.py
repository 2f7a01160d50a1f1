"""When the duties run in a database worker.

The first turn runs in the worker's loop as it starts, right after its first
claim, and runs only the duties that make jobs due (`MAKE_DUE`, and those of
every worker): the jobs due then start without waiting for it, and the loop
claims again at once. Every later turn, JOB_MAINTENANCE_SECONDS apart, runs
them all. On PostgreSQL those turns run in a thread of their own, with its
own connection, so a long prune or vacuum never delays a claim; on SQLite,
one writer at a time, and in a burst worker, they stay in the loop, between
claims. A burst worker that drained its queues before its first full turn
runs one as it exits.
"""

import logging
import threading

from django.db import DatabaseError, close_old_connections, connections

from .. import conf
from ..models import on_postgresql
from . import run_due_duties

logger = logging.getLogger("jobs.maintenance")


class Schedule:
    """Run the maintenance duties every JOB_MAINTENANCE_SECONDS for `holder`."""

    def __init__(self, holder, burst=False):
        self.holder = holder
        # A burst worker runs them in its loop: it may exit before a thread's
        # first turn.
        self.in_thread = on_postgresql() and not burst
        self.next_turn = 0.0  # monotonic; in the loop only
        self.ran_all = False  # in the loop only: a turn ran every duty
        self.stopped = threading.Event()
        self.thread = None

    def run_if_due(self, now):
        """Run the duties from the loop if it is time to: the first turn,
        then every turn where they have no thread; say whether they ran."""
        if self.thread is not None or now < self.next_turn:
            return False
        first = self.next_turn == 0.0
        self._run_duties(only_make_due=first)
        self.next_turn = now + conf.get("JOB_MAINTENANCE_SECONDS")
        if self.in_thread:
            self.thread = threading.Thread(
                target=self._run, name="job-maintenance", daemon=True
            )
            self.thread.start()
        return True

    def finish(self):
        """As a burst worker drained its queues: run every duty if no turn
        in the loop ran them all; say whether they ran (a rescue may have
        made jobs due)."""
        if self.ran_all:
            return False
        self._run_duties(only_make_due=False)
        return True

    def _run_duties(self, only_make_due):
        run_due_duties(self.holder, only_make_due=only_make_due)
        self.ran_all = self.ran_all or not only_make_due

    def stop(self):
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout=conf.get("JOB_MAINTENANCE_SECONDS"))

    def _run(self):
        try:
            while not self.stopped.wait(conf.get("JOB_MAINTENANCE_SECONDS")):
                self._turn()
        finally:
            connections.close_all()

    def _turn(self):
        try:
            run_due_duties(self.holder)
        except DatabaseError as e:
            logger.error("maintenance skipped, database error: %s", e)
            close_old_connections()
