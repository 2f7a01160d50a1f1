"""Successes this process has run but not recorded yet (one statement per job)."""

import logging

from django.db import DatabaseError, close_old_connections

from ..core import recording
from .leases import lease_keeper

logger = logging.getLogger("jobs.rq")


class Unrecorded:
    """Successes this process has run but not recorded yet.

    In our RQ workers a success is recorded by the statement that claims the
    next job, one statement per job instead of two, or before the worker
    waits for a job (see `RecordingQueue`) or stops. The job stays RUNNING
    meanwhile, its lease renewed, so nothing else takes it; a worker killed
    outright before recording leaves it to the rescuer, which runs it again.
    Elsewhere (a plain `rq worker`, a work horse) each success is recorded
    at once.
    """

    def __init__(self):
        self.outcomes = []
        self.deferring = False  # only where someone records them later

    def add(self, outcome):
        if not self.deferring:
            recording.finish([outcome])
            return
        lease_keeper.hold(outcome.job)
        self.outcomes.append(outcome)

    def take(self):
        outcomes, self.outcomes = self.outcomes, []
        for outcome in outcomes:
            lease_keeper.let_go(outcome.job)
        return outcomes

    def recorded_with(self, statement):
        """Run `statement(successes)`, which records them; return its result."""
        result = statement(self.outcomes)
        self.take()
        return result

    def record(self):
        """Record them now (the worker is about to wait, or stops)."""
        if self.outcomes:
            self.recorded_with(recording.finish)


unrecorded = Unrecorded()


def record_unrecorded():
    try:
        unrecorded.record()
    except DatabaseError as e:
        logger.error(
            "could not record %d finished jobs: %s", len(unrecorded.outcomes), e
        )
        close_old_connections()
