"""The hot path: the statements every job passes through (enqueue, claim,
record a success), each in its two forms side by side.

The ORM form runs on SQLite (and any other database); the SQL form runs on
PostgreSQL, which production runs, where compiling the ORM's statements cost
more CPU per job than running them. Both forms of a statement mean the same
and return the same; `tests/test_hot_path.py` runs one set of cases against
both. This module is longer than most on purpose: splitting the forms apart
is how they would drift.
"""

from functools import cache
from operator import attrgetter
from typing import NamedTuple

from django.db import connections, transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Coalesce

from ..expressions import DatabaseNow, JSONAppend
from ..models import Job, JobStatus, on_postgresql
from .guard import held, lease_expiry, lease_seconds, unless_cancel_requested
from .postgres import bound_cursor, is_json, jobs_from, json_or_none

# -- Claim: READY -> RUNNING ---------------------------------------------------


def claim(queues, limit, worker_id, token, job_id=None):
    """Claim up to `limit` due jobs of `queues` (None: any): READY -> RUNNING.

    Each claimed row counts one more attempt, records `worker_id` and carries
    `token` and a fresh lease. With `job_id` (an id, or a list of ids) only
    that row, or those, are claimed. Returns the claimed jobs, highest priority first.
    """
    return claim_recording(queues, limit, worker_id, token, job_id)[0]


def claim_recording(queues, limit, worker_id, token, job_id=None, successes=()):
    """`claim`, recording `successes` (finished runs not recorded yet) first;
    return (jobs, {job id: status recorded})."""
    form = claim_with_sql if on_postgresql() else claim_with_orm
    jobs, recorded = form(queues, limit, worker_id, token, job_id, successes)
    jobs.sort(key=lambda job: (-job.priority, job.run_after))
    return jobs, recorded


def claim_with_orm(queues, limit, worker_id, token, job_id=None, successes=()):
    """The claim as the ORM writes it: two statements in a short transaction."""
    recorded = record_successes_with_orm(successes) if successes else {}
    candidates = Job.objects.claimable(queues, DatabaseNow())
    if job_id is not None:
        candidates = candidates.filter(
            pk__in=job_id if isinstance(job_id, list) else [job_id]
        )
    # The selected rows stay locked until this short transaction commits;
    # other claimers skip them. The ids are fetched first on purpose: inside
    # `UPDATE ... WHERE id IN (SELECT ... LIMIT n SKIP LOCKED)` PostgreSQL may
    # run the subquery more than once and claim more than `limit` rows.
    with transaction.atomic(using=Job.objects.db):
        ids = list(
            candidates.select_for_update(skip_locked=True).values_list("pk", flat=True)[
                :limit
            ]
        )
        if not ids:
            return [], recorded
        # The UPDATE tests the pause again: it is the statement that decides.
        claimable = Job.objects.filter(pk__in=ids, status=JobStatus.READY).unpaused()
        jobs = claimable.update_returning(**claimed_values(worker_id, token))
    return jobs, recorded


def claimed_values(worker_id, token):
    """What a claim writes to each row it takes (the ORM form)."""
    return {
        "status": JobStatus.RUNNING,
        "attempts": F("attempts") + 1,
        "worker_ids": JSONAppend(F("worker_ids"), Value(worker_id)),
        "started_at": Coalesce(F("started_at"), DatabaseNow()),
        "last_attempted_at": DatabaseNow(),
        "lease_token": token,
        "lease_expires_at": lease_expiry(),
    }


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
# Due times and leases are on the database's clock (`statement_timestamp()`,
# as `DatabaseNow`), never a worker's.
#
# No job of a paused queue (a `jobs_queuepause` row) is picked: the claim
# tests the pause itself, in its own snapshot (`UNPAUSED`).
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
# The claim index answers `status = 'READY'` in queue and priority order,
# the rows without a concurrency key (the key '') apart from keyed ones,
# which only `claim_keyed` takes; a claim of one job by id must use the
# primary key instead.
DUE_IN_ORDER = "status = 'READY' AND concurrency_key = ''"
DUE_BY_ID = "id = %(job_id)s AND (status = 'READY') IS TRUE AND concurrency_key = ''"
# Several ids: a batch of them in one RQ job. (One id keeps `=`, whose
# prepared statement PostgreSQL soon runs with its generic plan; with
# `ANY(...)` it plans each run anew.)
DUE_BY_IDS = DUE_BY_ID.replace("id = %(job_id)s", "id = ANY(%(job_ids)s::uuid[])")
# Not paused. For one queue the test does not depend on the row, and
# PostgreSQL runs it once before the scan: a paused queue costs its worker
# no scan at all. Otherwise the paused queues are read once and each row's
# queue is tested against them (no join: the claim's plan stays as it was).
UNPAUSED_ONE = (
    " AND queue_name = %(queue)s AND NOT EXISTS ("
    "SELECT 1 FROM jobs_queuepause AS pause WHERE pause.queue_name = %(queue)s)"
)
UNPAUSED = " AND queue_name <> ALL(ARRAY(SELECT queue_name FROM jobs_queuepause))"
CLAIM = "".join(["WITH ", PICK_AND_CLAIM, "SELECT * FROM claimed"])


def claim_with_sql(queues, limit, worker_id, token, job_id=None, successes=()):
    """The claim as one statement, which records `successes` too."""
    filters, params = claim_filters(queues, limit, worker_id, token)
    by_id = None if job_id is None else "ids" if isinstance(job_id, list) else "id"
    if by_id == "id":
        params["job_id"] = job_id
    elif by_id == "ids":
        params["job_ids"] = [str(pk) for pk in job_id]
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


def queue_filters(queues):
    """Return the claim's conditions on the queue for `queues` (None: any),
    and their parameters."""
    if queues is not None and len(queues) == 1:
        # `=` lets the claim index return rows in order; `= ANY(...)` makes
        # PostgreSQL read and sort every due row.
        return UNPAUSED_ONE, {"queue": next(iter(queues))}
    if queues is not None:
        return " AND queue_name = ANY(%(queues)s)" + UNPAUSED, {"queues": list(queues)}
    return UNPAUSED, {}


def claim_filters(queues, limit, worker_id, token):
    """The queue conditions of a claim statement, and its parameters."""
    filters, params = queue_filters(queues)
    params |= {
        "limit": limit,
        "worker_id": worker_id,
        "token": token,
        "lease_seconds": float(lease_seconds()),
    }
    return filters, params


@cache
def claim_sql(filters, by_id, done=None):
    """The claim statement, of due jobs in order or (`by_id` "id" or "ids")
    of the rows named; with `done` (a `done_kind`) it records runs too."""
    columns = ", ".join(f"job.{field.column}" for field in Job._meta.concrete_fields)
    due = {"id": DUE_BY_ID, "ids": DUE_BY_IDS, None: DUE_IN_ORDER}[by_id]
    if done is None:
        return CLAIM.format(due=due, filters=filters, columns=columns)
    return CLAIM_AFTER_SUCCESSES.format(
        due=due, filters=filters, columns=columns, no_flush="", **DONE[done]
    )


# -- Claim keyed jobs: READY -> RUNNING while their key has a free slot -------
#
# A job with a concurrency key runs only while fewer than its limit of jobs
# with that key are RUNNING: the slots taken are counted from the rows
# every time, never kept in a counter, so a job leaving RUNNING in any way
# (recorded, rescued, released) frees its slot at once. Two claimers of a
# key must never both see the same free slot, so each claim first takes a
# lock per key and only then counts, in a new statement: under READ
# COMMITTED a statement sees what was committed when it started, so a count
# in the statement that waited for the lock could miss the claim committed
# by the claimer it waited for. On PostgreSQL the lock is a transaction-
# scoped advisory lock (safe behind a pooler in transaction mode: nothing
# outlives the transaction); on SQLite the write lock every claim
# transaction takes as it begins (`transaction_mode` IMMEDIATE) serializes
# every claimer at once.


def claim_keyed(queues, limit, worker_id, token, job_id=None):
    """Claim up to `limit` due jobs of `queues` (None: any) that have a
    concurrency key, as many of each key as its free slots allow, in
    priority then enqueue order; with `job_id`, that job if its key has a
    free slot. Returns the claimed jobs, highest priority first (as `claim`).
    """
    form = claim_keyed_with_sql if on_postgresql() else claim_keyed_with_orm
    jobs = form(queues, limit, worker_id, token, job_id)
    jobs.sort(key=lambda job: (-job.priority, job.run_after))
    return jobs


def claim_keyed_with_orm(queues, limit, worker_id, token, job_id=None):
    """The keyed claim as the ORM writes it, for SQLite: every statement
    runs under the write lock its transaction took as it began."""
    due = Job.objects.due(DatabaseNow()).unpaused().filter(concurrency_key__gt="")
    if queues is not None:
        due = due.filter(queue_name__in=queues)
    if job_id is not None:
        due = due.filter(pk=job_id)
    with transaction.atomic(using=Job.objects.db):
        keys = set(due.values_list("concurrency_key", flat=True).distinct())
        free = []  # (priority, run_after, id) of the jobs a slot awaits
        for key in keys:
            taken = Job.objects.filter(
                status=JobStatus.RUNNING, concurrency_key=key
            ).count()
            ready = due.filter(concurrency_key=key).order_by("-priority", "run_after")
            fields = ("priority", "run_after", "pk", "concurrency_limit")
            for rank, row in enumerate(ready.values_list(*fields)[:limit], start=1):
                if rank <= row[3] - taken:
                    free.append(row[:3])
        free.sort(key=lambda row: (-row[0], row[1]))
        ids = [row[2] for row in free[:limit]]
        if not ids:
            return []
        claimable = Job.objects.filter(pk__in=ids, status=JobStatus.READY).unpaused()
        return claimable.update_returning(**claimed_values(worker_id, token))


# The keys to claim from, locked: those of due jobs of the queues whose
# running jobs leave a slot free (a hint, counted before the lock), at most
# one key per job wanted, the keys of the best jobs first. The distinct keys
# are read one index probe each (a loose scan of the claim index), however
# many jobs wait per key. Locks are taken in one order, so two claimers
# never wait for each other in a cycle.
LOCK_KEYS = """
WITH RECURSIVE keys(key) AS (
    (SELECT concurrency_key FROM jobs_job
        WHERE status = 'READY' AND concurrency_key > ''
        ORDER BY concurrency_key LIMIT 1)
    UNION ALL
    SELECT (SELECT concurrency_key FROM jobs_job
            WHERE status = 'READY' AND concurrency_key > keys.key
            ORDER BY concurrency_key LIMIT 1)
    FROM keys WHERE keys.key IS NOT NULL
), free_keys AS (
    SELECT keys.key FROM keys CROSS JOIN LATERAL (
        SELECT priority, run_after, concurrency_limit FROM jobs_job
        WHERE status = 'READY' AND concurrency_key = keys.key
            AND run_after <= statement_timestamp() {filters}
        ORDER BY priority DESC, run_after LIMIT 1
    ) AS best
    WHERE best.concurrency_limit > ({taken})
    ORDER BY best.priority DESC, best.run_after
    LIMIT %(limit)s
)
SELECT key, pg_advisory_xact_lock(hashtextextended(key, 0)) FROM (
    SELECT key FROM free_keys ORDER BY hashtextextended(key, 0)
) AS ordered
"""
# The key of the job `job_id`, locked, if it waits.
LOCK_KEY_BY_ID = """
SELECT concurrency_key, pg_advisory_xact_lock(hashtextextended(concurrency_key, 0))
FROM jobs_job
WHERE id = %(job_id)s AND (status = 'READY') IS TRUE AND concurrency_key > ''
"""
# The slots a key's RUNNING jobs take (`jobs_job_running_key`).
TAKEN = """SELECT count(*) FROM jobs_job AS running
        WHERE running.status = 'RUNNING' AND running.concurrency_key > ''
            AND running.concurrency_key = {key}"""
# The jobs of the locked keys that free slots let run: each key's due jobs
# ranked in claim order, while the rank is within the limit less the slots
# taken. The claim then takes them as any claim does (`PICK_AND_CLAIM`).
FREE_SLOTS = """
slots AS (
    SELECT ready.id FROM unnest(%(keys)s::text[]) AS keys(key)
    CROSS JOIN LATERAL ({taken}) AS running(taken)
    CROSS JOIN LATERAL (
        SELECT id, concurrency_limit,
            row_number() OVER (ORDER BY priority DESC, run_after) AS rank
        FROM jobs_job
        WHERE status = 'READY' AND concurrency_key = keys.key
            AND run_after <= statement_timestamp() {filters}
        ORDER BY priority DESC, run_after
        LIMIT %(limit)s
    ) AS ready
    WHERE ready.rank <= ready.concurrency_limit - running.taken
),"""
KEYED_IN_ORDER = "id IN (SELECT id FROM slots) AND (status = 'READY') IS TRUE"
KEYED_BY_ID = f"""id = %(job_id)s AND (status = 'READY') IS TRUE
        AND concurrency_key > ''
        AND concurrency_limit > ({TAKEN.format(key="jobs_job.concurrency_key")})"""


def claim_keyed_with_sql(queues, limit, worker_id, token, job_id=None):
    """The keyed claim in two statements of one short transaction: lock the
    keys, then count their slots and claim."""
    filters, params = claim_filters(queues, limit, worker_id, token)
    by_id = job_id is not None
    if by_id:
        params["job_id"] = job_id
    connection = connections[Job.objects.db]
    lock_sql, claim_sql = claim_keyed_sql(filters, by_id)
    with transaction.atomic(using=connection.alias), bound_cursor(connection) as cursor:
        cursor.execute(lock_sql, params)
        keys = [row[0] for row in cursor.fetchall()]
        if not keys:
            return []
        cursor.execute(claim_sql, params | {"keys": keys})
        return jobs_from(cursor.fetchall(), connection)


@cache
def claim_keyed_sql(filters, by_id):
    """The two statements of a keyed claim: lock the keys, claim."""
    columns = ", ".join(f"job.{field.column}" for field in Job._meta.concrete_fields)
    if by_id:
        claim = "".join(["WITH ", PICK_AND_CLAIM, "SELECT * FROM claimed"])
        return LOCK_KEY_BY_ID, claim.format(
            due=KEYED_BY_ID, filters=filters, columns=columns
        )
    taken = TAKEN.format(key="keys.key")
    lock = LOCK_KEYS.format(filters=filters, taken=taken)
    slots = FREE_SLOTS.format(filters=filters, taken=taken)
    claim = "".join(["WITH ", slots, PICK_AND_CLAIM, "SELECT * FROM claimed"])
    return lock, claim.format(due=KEYED_IN_ORDER, filters=filters, columns=columns)


# -- Record successes: RUNNING -> SUCCESSFUL -----------------------------------


def record_successes(outcomes):
    """RUNNING -> SUCCESSFUL (CANCELLED if asked to) for many jobs in one UPDATE.

    Return {job id: status recorded} of the rows this worker still held.
    """
    if not outcomes:
        return {}
    form = record_successes_with_sql if on_postgresql() else record_successes_with_orm
    return form(outcomes)


def record_successes_with_orm(outcomes):
    """Record successes as the ORM writes it, guarded by `held`."""
    return_value = Job._meta.get_field("return_value")
    values = {
        "status": unless_cancel_requested(JobStatus.SUCCESSFUL),
        "lease_expires_at": None,
    }
    values["finished_at"] = Case(
        *(When(pk=o.job.pk, then=Value(o.finished_at)) for o in outcomes)
    )
    if any(o.value is not None for o in outcomes):
        values["return_value"] = Case(
            *(
                When(pk=o.job.pk, then=Value(o.value, output_field=return_value))
                for o in outcomes
            ),
            output_field=return_value,
        )
    recorded = held(o.job for o in outcomes).update_returning(**values)
    return {job.pk: job.status for job in recorded}


# Each run is guarded on the lease token it was claimed with, as `held`. A
# row whose cancel was requested ends CANCELLED.
SUCCEED_TEMPLATE = """
UPDATE jobs_job AS job SET
    status = CASE WHEN job.cancel_requested
        THEN 'CANCELLED' ELSE 'SUCCESSFUL' END,
    finished_at = {finished_at},
    return_value = {return_value},
    lease_expires_at = NULL
FROM {done}{no_flush}
WHERE {ids}
    AND (job.status = 'RUNNING') IS TRUE AND job.lease_token = {token}
RETURNING job.id, job.status
"""
# How the runs travel, by `done_kind`, and how a row reads its own run.
DONE = {
    # As arrays, in binary (`%b`): psycopg builds a text array element by
    # element, quoting each; a binary array is sent as it is. Each row finds
    # its run by its place in the ids (`array_position`), never by a join:
    # PostgreSQL's statistics see almost no RUNNING rows, so it expected one
    # row and, joined with the runs as a set (`unnest`), read the whole set
    # again for each row: O(n^2) per batch, the most of a worker's write time.
    "many": {
        "done": """(SELECT
    %(done_ids)b::uuid[] AS ids, %(done_tokens)b::text[] AS tokens,
    %(done_finished_at)b::timestamptz[] AS finished_at,
    %(done_values)s::jsonb[] AS return_values) AS done""",
        "ids": "job.id = ANY(%(done_ids)b::uuid[])",
        "token": "done.tokens[array_position(done.ids, job.id)]",
        "finished_at": "done.finished_at[array_position(done.ids, job.id)]",
        "return_value": "done.return_values[array_position(done.ids, job.id)]",
    },
    # A single run as plain values. With arrays PostgreSQL plans the
    # prepared statement afresh on every execution: its generic plan guesses
    # ten elements, which looks dearer than a plan for the one it is given.
    # The RQ path records one run per statement, where replanning costs as
    # much as running. Here the generic plan knows there is one row and is kept.
    "one": {
        "done": """(VALUES (
    %(done_token)s::text, %(done_finished_at)s::timestamptz, %(done_value)s::jsonb
)) AS done(token, finished_at, return_value)""",
        "ids": "job.id = %(done_id)s::uuid",
        "token": "done.token",
        "finished_at": "done.finished_at",
        "return_value": "done.return_value",
    },
}

# Recorded on its own, a batch commits without waiting for the WAL to reach
# the disk (`synchronous_commit` off for this statement's transaction only). A
# PostgreSQL crash may then forget the last few recorded successes: those
# jobs are RUNNING again, their lease runs out and the rescuer runs them
# again, as when a worker is killed before recording. A job still runs at
# least once and never twice at once. Claims stay durable: a forgotten claim
# would let a second worker run the job while the first still does.
WITHOUT_FLUSH = (
    "\n    CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) s"
)

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


def record_successes_with_sql(outcomes):
    """Record successes in one statement that needs no flush to disk."""
    sql = succeed_sql(done_kind(outcomes))
    with bound_cursor(connections[Job.objects.db]) as cursor:
        cursor.execute(sql, success_params(outcomes))
        return dict(cursor.fetchall())


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


# -- Insert: new READY rows ----------------------------------------------------


def insert(jobs, batch_size=10_000, varying=None, ring_now=False):
    """INSERT new job rows in the caller's transaction, in few statements.

    Return whether the INSERT NOTIFYed their queue, heard when that
    transaction commits (PostgreSQL, one job, `ring_now`, and no other
    enqueue's transaction notifying meanwhile: `RING_IF_ALONE`). When not,
    the caller rings the doorbell after commit (`doorbell.ring(jobs,
    inserted=True)`).

    `varying`: the only fields whose values may differ between `jobs` (the
    others are read from the first job); None: any field.
    """
    if not on_postgresql():
        for start in range(0, len(jobs), batch_size):
            insert_with_orm(jobs[start : start + batch_size])
        return False
    if len(jobs) == 1 and ring_now:
        queue = [jobs[0].queue_name]
        rows = insert_with_sql(
            jobs, RETURNING_RING, ring=RING_IF_ALONE, ring_params=queue
        )
        return rows[0][0] == "yes"
    for start in range(0, len(jobs), batch_size):
        insert_with_sql(jobs[start : start + batch_size], varying=varying)
    return False


def insert_with_orm(jobs, varying=None):
    """INSERT as the ORM writes it."""
    Job.objects.bulk_create(jobs, batch_size=1000)


# Our INSERTs mark themselves, and the trigger (migration 0020) that NOTIFYs
# the queue of each row inserted any other way skips their rows: their
# caller rings after commit, outside the transaction (`doorbell.ring`), or
# the statement NOTIFYs by itself (`RING_IF_ALONE`). The mark is the
# statement's start time, which no other statement of the transaction has.
MARK = "set_config('jobs.notified_by', statement_timestamp()::text, true) <> ''"
RING_AFTER_COMMIT = f" WHERE {MARK}"
# A transaction that sent NOTIFY holds a lock of the whole server from its
# commit's start to its end, WAL flush included. So an enqueue NOTIFYs in its
# own transaction only while no other does: it takes this advisory lock,
# held until it commits; one that cannot rings after its commit instead,
# and enqueues from many connections commit side by side. The parameter is
# the job's queue; the statement returns 'yes' when it NOTIFYed.
RING_LOCK = "hashtext('reporadar_jobs'), 0"  # the advisory lock's two keys
RING_IF_ALONE = (
    f" WHERE {MARK} AND set_config('jobs.rang', CASE WHEN "
    f"pg_try_advisory_xact_lock({RING_LOCK}) THEN "
    "pg_notify('reporadar_jobs', %s::text)::text || 'yes' ELSE 'no' END, true) <> ''"
)
RETURNING_RING = " RETURNING current_setting('jobs.rang')"


def insert_with_sql(
    jobs, tail="", varying=None, ring=RING_AFTER_COMMIT, ring_params=()
):
    """INSERT new jobs in one statement, as `bulk_create` would.

    A column whose value is the same in every row (the task, queue, times of
    a bulk enqueue) is sent once; the others as one array each, unnested.
    One job sends every value once, in a statement of the same text each
    time. `tail` ends the statement (`SKIP_HELD_KEYS`), whose rows are then
    returned; `ring` says whether it notifies (`RING_AFTER_COMMIT`), with
    its `ring_params`.
    """
    connection = connections[Job.objects.db]
    if len(jobs) == 1:
        sql = insert_one_sql(connection.alias, tail, ring)
        params = row_params(jobs[0], connection.alias)
    else:
        sql, params = insert_many(jobs, varying, connection.alias, tail, ring)
    params.extend(ring_params)  # the statement's last placeholders
    with bound_cursor(connection) as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall() if tail else None
    for job in jobs:  # saved, as `bulk_create` leaves them
        job._state.adding = False
        job._state.db = connection.alias
    return rows


def insert_many(jobs, varying, alias, tail, ring):
    """The statement inserting `jobs` and its parameters (`insert_with_sql`)."""
    values, arrays = [], []
    params, array_params = [], []  # the SELECT list's, then unnest's
    for column in insert_columns(alias):
        if varying is not None and column.attname not in varying:
            values_of = [getattr(jobs[0], column.attname)]
        else:
            values_of = list(map(attrgetter(column.attname), jobs))
        first = values_of[0]
        # The last value first: an id column differs there, a shared one not.
        if values_of[-1] == first and values_of.count(first) == len(values_of):
            values.append(f"%s::{column.cast}")
            params.append(column.sent(first))
        else:
            values.append(f"u.c{len(arrays)}")
            arrays.append(f"%b::{column.cast}[]")
            array_params.append(list(map(column.sent, values_of)))
    names = ", ".join(f"c{i}" for i in range(len(arrays)))
    source = f" FROM unnest({', '.join(arrays)}) AS u({names})" if arrays else ""
    return insert_sql(alias, values, source, ring, tail), params + array_params


@cache
def insert_one_sql(alias, tail, ring):
    values = [f"%s::{column.cast}" for column in insert_columns(alias)]
    return insert_sql(alias, values, "", ring, tail)


def insert_sql(alias, values, source, ring, tail):
    columns = ", ".join(column.quoted for column in insert_columns(alias))
    return (
        f"INSERT INTO {Job._meta.db_table} ({columns}) "  # noqa: S608 (names from the model)
        f"SELECT {', '.join(values)}{source}{ring}{tail}"
    )


def row_params(job, alias):
    """One job's value of each column, as `insert_many` sends a shared one."""
    read_all, json_at = row_reader(alias)
    params = list(read_all(job))
    for i in json_at:
        params[i] = json_or_none(params[i])
    return params


@cache
def row_reader(alias):
    """A function reading every column's value of a job at once, and the
    positions of the columns sent as JSON text."""
    columns = insert_columns(alias)
    read_all = attrgetter(*(column.attname for column in columns))
    return read_all, [i for i, column in enumerate(columns) if column.json]


class InsertColumn(NamedTuple):
    attname: str
    quoted: str
    cast: str  # the column's SQL type
    json: bool  # sent as JSON text

    def sent(self, value):
        """`value` as this column's parameter."""
        return json_or_none(value) if self.json else value


@cache
def insert_columns(alias):
    """Each column's `InsertColumn`; `db_type` is slow."""
    connection = connections[alias]
    return [
        InsertColumn(
            field.attname,
            connection.ops.quote_name(field.column),
            field.db_type(connection),
            is_json(field),
        )
        for field in Job._meta.concrete_fields
    ]


# -- Insert unique jobs: new READY rows, unless their key is held -------------


def insert_new(jobs):
    """INSERT unique jobs, skipping each whose key a row already holds; return
    the ids inserted.

    The unique index `jobs_job_unique` decides, not a read before the write:
    a row holding the key that another transaction inserted and has not
    committed yet makes this statement wait for that transaction to end (it
    then skips the job if that one committed, inserts it if it rolled back).
    Not for plain jobs (`insert`), which no key can clash with.
    """
    form = insert_new_with_sql if on_postgresql() else insert_new_with_orm
    return form(jobs)


def insert_new_with_orm(jobs):
    """`insert_new` as the ORM writes it: INSERT OR IGNORE, then the new ids
    that exist (a fresh UUID exists only if its row was inserted)."""
    Job.objects.bulk_create(jobs, batch_size=1000, ignore_conflicts=True)
    ids = [job.pk for job in jobs]
    return set(Job.objects.filter(pk__in=ids).values_list("pk", flat=True))


# No conflict target: a unique job's only possible conflict is its key.
SKIP_HELD_KEYS = " ON CONFLICT DO NOTHING RETURNING id"


def insert_new_with_sql(jobs):
    """`insert_new` in one statement, returning the ids it inserted."""
    return {row[0] for row in insert_with_sql(jobs, SKIP_HELD_KEYS)}
