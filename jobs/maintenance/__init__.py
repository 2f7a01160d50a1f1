"""Maintenance duties, run by the workers themselves, one process at a time.

One module per duty: `rescue`, `redispatch`, `dead_workers`, `prune`,
`vacuum`. Workers
call `run_due_duties` on a timer; it runs every duty if this process holds
the leader lock (`leader`), so with many workers one does the work at a time.
"""

import logging

from .. import conf
from . import dead_workers, prune, redispatch, rescue, vacuum
from .leader import MAINTENANCE, take_leader_lock

logger = logging.getLogger("jobs.maintenance")

DUTIES = [
    rescue.rescue_stalled,
    redispatch.redispatch,
    dead_workers.forget_dead_workers,
    prune.prune,
    vacuum.vacuum_when_dead_rows_pile_up,
]


def run_due_duties(holder):
    """Run every duty if this process holds the maintenance leader lock."""
    seconds = conf.get("JOB_MAINTENANCE_SECONDS") * 2
    if not take_leader_lock(MAINTENANCE, holder, seconds):
        return False
    for duty in DUTIES:
        try:
            duty()
        except Exception as e:  # one failing duty must not stop the others
            logger.error("maintenance duty %s failed: %s", duty.__name__, e)
    return True
