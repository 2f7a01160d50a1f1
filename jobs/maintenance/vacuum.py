"""Vacuum: clear the job table's dead rows when they pile up.

Every claim and every recorded run leaves a dead row version behind, and
pruning leaves one per deleted job; the claim's index scan walks over them
until a VACUUM clears them. PostgreSQL's autovacuum usually does this, but
it may be off, or too lazy for a table this busy, so the maintenance leader
checks the table's own statistics and vacuums it (with ANALYZE, which also
lets the planner see the table as it is now) once its dead rows pass
`JOB_VACUUM_DEAD_ROWS` plus a tenth of its live ones.
"""

import logging

from django.db import DatabaseError, connections

from .. import conf
from ..models import Job, on_postgresql

logger = logging.getLogger("jobs.maintenance")

DEAD_AND_LIVE = """
SELECT n_dead_tup, n_live_tup FROM pg_stat_user_tables
WHERE relid = %s::regclass
"""


def vacuum_when_dead_rows_pile_up():
    """VACUUM (ANALYZE) the job table if its dead rows passed the threshold;
    return the number of dead rows it had (0 when it was not vacuumed)."""
    threshold = conf.get("JOB_VACUUM_DEAD_ROWS")
    if not threshold or not on_postgresql():
        return 0
    connection = connections[Job.objects.db]
    table = Job._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(DEAD_AND_LIVE, [table])
        row = cursor.fetchone()
    dead, live = row if row else (0, 0)
    if dead < threshold + live // 10:
        return 0
    if connection.in_atomic_block:
        return 0  # VACUUM cannot run inside a transaction
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(table)}")
    except DatabaseError as e:  # not the table's owner, or cancelled
        logger.warning("could not vacuum %s: %s", table, e)
        return 0
    logger.info("vacuumed %s: %d dead rows, %d live", table, dead, live)
    return dead
