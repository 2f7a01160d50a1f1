"""Maintenance duties, run by the workers themselves, one process at a time.

One module per duty: `rescue`, `redispatch`, `dead_workers`, `prune`,
`vacuum`, `recurring`, `tally`, `depth` (the queue depth over time). Workers
call `run_due_duties` on a timer; it runs every duty of `DUTIES` if this
process holds the leader lock (`leader`), so with many workers one does the
work at a time. The duties of `EVERY_WORKER` run in every worker, lock or
not: the database itself lets one of them win (`recurring`: the unique
scheduled time).
"""

import logging

from .. import conf
from . import (
    dead_workers,
    depth,
    prune,
    recurring,
    redispatch,
    rescue,
    tally,
    vacuum,
)
from .leader import MAINTENANCE, take_leader_lock

logger = logging.getLogger("jobs.maintenance")

# The duties that make jobs due again; a starting database worker runs only
# these (and `EVERY_WORKER`) in its first turn, right after its first claim,
# and all of them from its next turn on (`schedule`).
MAKE_DUE = [rescue.rescue_stalled, redispatch.redispatch]

DUTIES = [
    *MAKE_DUE,
    dead_workers.forget_dead_workers,
    tally.advance_tally,  # before pruning: it deletes counted rows only
    prune.prune,
    prune.prune_schedule_history,
    vacuum.vacuum_when_dead_rows_pile_up,
    depth.sample_depth,
]


# Each is called with the worker's id; none relies on the leader lock.
EVERY_WORKER = [recurring.enqueue_due]


def run_due_duties(holder, only_make_due=False):
    """Run the duties of every worker, then every duty of `DUTIES` (of
    `MAKE_DUE` only, when told) if this process holds the maintenance leader
    lock; say whether it held it."""
    for duty in EVERY_WORKER:
        run_duty(duty, holder)
    seconds = conf.get("JOB_MAINTENANCE_SECONDS") * 2
    if not take_leader_lock(MAINTENANCE, holder, seconds):
        return False
    for duty in MAKE_DUE if only_make_due else DUTIES:
        run_duty(duty)
    return True


def run_duty(duty, *args):
    try:
        duty(*args)
    except Exception as e:  # one failing duty must not stop the others
        logger.error("maintenance duty %s failed: %s", duty.__name__, e)
