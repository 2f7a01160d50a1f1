"""Vacuum: clear the job table's dead rows, and refresh its statistics,
when PostgreSQL's autovacuum has not.

Every claim and every recorded run leaves a dead row version behind, and
pruning leaves one per deleted job; the claim's index scan walks over them
until a VACUUM clears them. The planner keeps the plan of a prepared
statement until the table's statistics change: a plan made while the table
was tiny (a sequential scan) stays until an ANALYZE. Autovacuum does both,
but it may be off, or too lazy for a table this busy, so the maintenance
leader reads the table's own counters and, once they pass
`JOB_VACUUM_DEAD_ROWS` plus a tenth of the live rows, runs VACUUM (ANALYZE)
for dead rows, or ANALYZE for rows changed since the last one.
"""

import logging

from django.db import DatabaseError, connections

from .. import conf
from ..models import Job, on_postgresql

logger = logging.getLogger("jobs.maintenance")

COUNTERS = """
SELECT n_dead_tup, n_live_tup, n_mod_since_analyze FROM pg_stat_user_tables
WHERE relid = %s::regclass
"""


def vacuum_when_dead_rows_pile_up():
    """VACUUM (ANALYZE) or ANALYZE the job table when its counters say so;
    return what ran ("vacuum", "analyze", or "" for nothing)."""
    threshold = conf.get("JOB_VACUUM_DEAD_ROWS")
    if not threshold or not on_postgresql():
        return ""
    connection = connections[Job.objects.db]
    if connection.in_atomic_block:
        return ""  # neither can run inside a transaction
    table = connection.ops.quote_name(Job._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(COUNTERS, [Job._meta.db_table])
        dead, live, changed = cursor.fetchone() or (0, 0, 0)
    limit = threshold + live // 10
    if dead >= limit:
        action, sql = "vacuum", f"VACUUM (ANALYZE) {table}"
    elif changed >= limit:
        action, sql = "analyze", f"ANALYZE {table}"
    else:
        return ""
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
    except DatabaseError as e:  # not the table's owner, or cancelled
        logger.warning("could not %s %s: %s", action, table, e)
        return ""
    logger.info("%s %s: %d dead rows, %d live", action, table, dead, live)
    return action
