"""The hot path on PostgreSQL: enqueue, claim and success, as SQL.

The ORM builds these statements in `execution` on every database; on
PostgreSQL, which production runs, compiling them cost more CPU per job than
running them (a no-op job spent most of its time in the ORM's compiler, and
`bulk_create` most of its time preparing each value of each row). So the
statements every job passes through are written here, as SQL, and each is
one round trip. They mean exactly what the ORM
versions in `execution` mean; the test suite runs both.
"""

import json
import sys
from functools import cache
from operator import attrgetter

from django.db import connections
from django.db.backends.postgresql.base import ServerBindingCursor
from django.db.models import JSONField

from .. import conf
from ..models import Job

# Lock up to `limit` due rows, skipping rows other claimers hold, and move
# them to RUNNING. MATERIALIZED makes PostgreSQL run the SELECT once; inlined
# as `id IN (SELECT ...)` it may run it again and claim more than `limit`
# rows under concurrency.
#
# Statements that find rows by id test their status as `(...) IS TRUE`,
# which no index can answer, so the primary key finds the rows. A plain
# `status = 'READY'` let the planner walk every READY row instead whenever
# its statistics were taken with few of them (a queue just filled): each
# claim then cost O(waiting jobs).
#
# Due times and leases are read on the database's clock (`statement_timestamp()`,
# as Django's `Now()`), never a worker's: workers on hosts whose clocks
# disagree still agree on who holds a job.
PICK_AND_CLAIM = """
picked AS MATERIALIZED (
    SELECT id FROM jobs_job
    WHERE {due} AND run_after <= statement_timestamp() {filters}
    ORDER BY priority DESC, run_after
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE jobs_job AS job SET
        status = 'RUNNING',
        attempts = job.attempts + 1,
        worker_ids = job.worker_ids || jsonb_build_array(%(worker_id)s::text),
        started_at = COALESCE(job.started_at, statement_timestamp()),
        last_attempted_at = statement_timestamp(),
        lease_token = %(token)s,
        lease_expires_at = statement_timestamp()
            + %(lease_seconds)s * interval '1 second'
    FROM picked
    WHERE job.id = picked.id AND (job.status = 'READY') IS TRUE
    RETURNING {columns}
)
"""
# The claim index answers `status = 'READY'` in queue and priority order;
# a claim of one job by id must use the primary key instead.
DUE_IN_ORDER = "status = 'READY'"
DUE_BY_ID = "id = %(job_id)s AND (status = 'READY') IS TRUE"

# Record a batch of finished runs, each guarded on the lease token it was
# claimed with. A row whose cancel was requested ends CANCELLED.
SUCCEED_TEMPLATE = """
UPDATE jobs_job AS job SET
    status = CASE WHEN job.cancel_requested
        THEN 'CANCELLED' ELSE 'SUCCESSFUL' END,
    finished_at = done.finished_at,
    return_value = done.return_value,
    lease_expires_at = NULL
FROM {done} AS done(id, token, finished_at, return_value){no_flush}
WHERE {ids} AND job.id = done.id
    AND (job.status = 'RUNNING') IS TRUE AND job.lease_token = done.token
RETURNING job.id, job.status
"""
# How the runs travel, by `done_kind`.
DONE = {
    # As arrays, in binary (`%b`): psycopg builds a text array element by
    # element, quoting each; a binary array is sent as it is.
    "many": {
        "done": """unnest(
    %(done_ids)b::uuid[], %(done_tokens)b::text[],
    %(done_finished_at)b::timestamptz[], %(done_values)s::jsonb[]
)""",
        "ids": "job.id = ANY(%(done_ids)b::uuid[])",
    },
    # A single run as plain values. With arrays PostgreSQL planned the
    # prepared statement afresh on every execution: its generic plan guesses
    # ten elements, which looks dearer than a plan for the one it is given.
    # The RQ path records one run per statement, where replanning costs as
    # much as running. Here the generic plan knows there is one row and is kept.
    "one": {
        "done": """(VALUES (
    %(done_id)s::uuid, %(done_token)s::text,
    %(done_finished_at)s::timestamptz, %(done_value)s::jsonb
))""",
        "ids": "job.id = %(done_id)s::uuid",
    },
}

# Recorded on its own, a batch commits without waiting for the WAL to reach
# the disk (`synchronous_commit` off for this statement's transaction only). A
# PostgreSQL crash may then forget the last few hundred milliseconds of
# recorded successes: those jobs are RUNNING again, their lease runs out and
# the rescuer runs them again, as when a worker is killed before recording.
# A job still runs at least once and never twice at once. Claims stay
# durable: a forgotten claim would let a second worker run the job while
# the first still does. A flush waits for the disk once per batch, the
# largest part of a database worker's time.
WITHOUT_FLUSH = (
    "\n    CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) s"
)

CLAIM = "".join(["WITH ", PICK_AND_CLAIM, "SELECT * FROM claimed"])

# A worker of the RQ path records its last job's success in the statement
# that claims its next job: one statement per job instead of two. The first
# two columns list the jobs recorded (and their status); a row comes back
# even when nothing was claimed.
RECORDED_AND_CLAIMED = """
SELECT (SELECT array_agg(id) FROM done), (SELECT array_agg(status) FROM done),
    claimed.*
FROM (VALUES (1)) AS one LEFT JOIN claimed ON true
"""
CLAIM_AFTER_SUCCESSES = "".join(
    ["WITH done AS (", SUCCEED_TEMPLATE, "), ", PICK_AND_CLAIM, RECORDED_AND_CLAIMED]
)


def claim(queues, limit, worker_id, token, lease_seconds, job_id=None, successes=()):
    """Claim up to `limit` due jobs in one statement; return them as jobs,
    and {job id: status recorded} of `successes`, recorded in that statement."""
    filters = ""
    params = {
        "limit": limit,
        "worker_id": worker_id,
        "token": token,
        "lease_seconds": float(lease_seconds),
    }
    if queues is not None and len(queues) == 1:
        # `=` lets the claim index return rows in order; `= ANY(...)` makes
        # PostgreSQL read and sort every due row.
        filters += " AND queue_name = %(queue)s"
        params["queue"] = next(iter(queues))
    elif queues is not None:
        filters += " AND queue_name = ANY(%(queues)s)"
        params["queues"] = list(queues)
    by_id = job_id is not None
    if by_id:
        params["job_id"] = job_id
    connection = connections[Job.objects.db]
    with bound_cursor(connection) as cursor:
        if not successes:
            cursor.execute(claim_sql(filters, by_id), params)
            return jobs_from(cursor.fetchall(), connection), {}
        sql = claim_sql(filters, by_id, done_kind(successes))
        cursor.execute(sql, params | success_params(successes))
        rows = cursor.fetchall()
    ids, statuses = rows[0][:2]
    recorded = dict(zip(ids or (), statuses or (), strict=True))
    claimed = [row[2:] for row in rows if row[2] is not None]
    return jobs_from(claimed, connection), recorded


@cache
def claim_sql(filters, by_id, done=None):
    """The claim statement; with `done` (a `done_kind`) it records runs too."""
    columns = ", ".join(f"job.{field.column}" for field in Job._meta.concrete_fields)
    due = DUE_BY_ID if by_id else DUE_IN_ORDER
    if done is None:
        return CLAIM.format(due=due, filters=filters, columns=columns)
    return CLAIM_AFTER_SUCCESSES.format(
        due=due, filters=filters, columns=columns, no_flush="", **DONE[done]
    )


@cache
def succeed_sql(done, flush=False):
    """The statement recording runs of `done_kind` `done`."""
    no_flush = "" if flush else WITHOUT_FLUSH
    return SUCCEED_TEMPLATE.format(no_flush=no_flush, **DONE[done])


def done_kind(outcomes):
    """How `outcomes` travel to the statement that records them (`DONE`)."""
    return "one" if len(outcomes) == 1 else "many"


def success_params(outcomes):
    if done_kind(outcomes) == "one":
        (outcome,) = outcomes
        return {
            "done_id": outcome.job.pk,
            "done_token": outcome.job.lease_token,
            "done_finished_at": outcome.finished_at,
            "done_value": json_or_none(outcome.value),
        }
    return {
        "done_ids": [o.job.pk for o in outcomes],
        "done_tokens": [o.job.lease_token for o in outcomes],
        "done_finished_at": [o.finished_at for o in outcomes],
        "done_values": [json_or_none(o.value) for o in outcomes],
    }


def record_successes(outcomes):
    """Record successful runs in one statement; return {id: status recorded}."""
    sql = succeed_sql(done_kind(outcomes))
    with bound_cursor(connections[Job.objects.db]) as cursor:
        cursor.execute(sql, success_params(outcomes))
        return dict(cursor.fetchall())


def jobs_from(rows, connection):
    """Build jobs from rows of every concrete field in order, as the ORM would."""
    fields = Job._meta.concrete_fields
    attnames = [field.attname for field in fields]
    convert = [
        (i, field.from_db_value)
        for i, field in enumerate(fields)
        if hasattr(field, "from_db_value")
    ]
    jobs = []
    for row in rows:
        row = list(row)
        for i, from_db_value in convert:
            row[i] = from_db_value(row[i], None, connection)
        jobs.append(Job.from_db(connection.alias, attnames, row))
    return jobs


def insert_jobs(jobs):
    """INSERT new jobs in one statement, as `bulk_create` would.

    A column whose value is the same in every row (the task, queue, times of
    a bulk enqueue) is sent once; the others as one array each, unnested.
    """
    connection = connections[Job.objects.db]
    columns, values, arrays = [], [], []
    params, array_params = [], []  # the SELECT list's, then unnest's
    for field, quoted, cast in insert_columns(connection.alias):
        column = list(map(attrgetter(field.attname), jobs))
        columns.append(quoted)
        first = column[0]
        # The last value first: an id column differs there, a shared one not.
        if column[-1] == first and column.count(first) == len(column):
            values.append(f"%s::{cast}")
            params.append(json_or_none(first) if is_json(field) else first)
        else:
            if is_json(field):
                column = [json_or_none(value) for value in column]
            values.append(f"u.c{len(arrays)}")
            arrays.append(f"%b::{cast}[]")
            array_params.append(column)
    names = ", ".join(f"c{i}" for i in range(len(arrays)))
    source = f" FROM unnest({', '.join(arrays)}) AS u({names})" if arrays else ""
    sql = (
        f"INSERT INTO {Job._meta.db_table} ({', '.join(columns)}) "  # noqa: S608 (names from the model)
        f"SELECT {', '.join(values)}{source}"
    )
    with bound_cursor(connection) as cursor:
        cursor.execute(sql, params + array_params)


@cache
def insert_columns(alias):
    """(field, quoted column, SQL type) of each column; `db_type` is slow."""
    connection = connections[alias]
    return [
        (field, connection.ops.quote_name(field.column), field.db_type(connection))
        for field in Job._meta.concrete_fields
    ]


class PreparingCursor(ServerBindingCursor):
    """A server-binding cursor that prepares each statement on first use.

    The hot statements are the same text every time, and PostgreSQL spent
    longer planning them than running them. A prepared statement is planned
    once per connection.
    """

    def execute(self, query, params=None, *, prepare=None, binary=None):
        prepare = True if prepare is None else prepare
        return super().execute(query, params, prepare=prepare, binary=binary)

    def _send_query_prepared(self, name, pgq, *, binary=None):
        # psycopg keeps the query it sends for Django's query log, but not
        # when it sends a prepared one; without it the log shows no SQL.
        self._query = pgq
        return super()._send_query_prepared(name, pgq, binary=binary)


def bound_cursor(connection):
    """Return a Django cursor that sends parameters apart from the SQL.

    Django's default psycopg cursor binds them on the client, quoting every
    value into the SQL text: for the hot statements that cost more than the
    server's work. The statements are
    prepared (`JOB_PREPARED_STATEMENTS`); only these: Django's own cursors
    prepare nothing unless the database's OPTIONS ask for it. Errors, query
    logging and execute wrappers stay Django's.
    """
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    if conf.get("JOB_PREPARED_STATEMENTS"):
        if connection.connection.prepare_threshold is None:
            # Django turns psycopg's preparing off (None); this threshold
            # lets only statements that ask (ours) be prepared.
            connection.connection.prepare_threshold = sys.maxsize
        cursor = PreparingCursor(connection.connection)
    else:
        cursor = ServerBindingCursor(connection.connection)
    if connection.queries_logged:
        return connection.make_debug_cursor(cursor)
    return connection.make_cursor(cursor)


def is_json(field):
    return isinstance(field, JSONField)


def json_or_none(value):
    """JSON text for a jsonb column; None stays SQL NULL, as Django stores it."""
    return None if value is None else json.dumps(value)
