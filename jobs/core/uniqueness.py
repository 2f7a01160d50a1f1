"""Unique jobs: at most one job per task and key among the rows holding it.

A task is unique when it has `unique=True`, a `unique_key`, a `unique_for`
or `unique_states` (`@task(...)` or `.using(...)`). Each of its jobs stores
its key (the task's `unique_key`, or a hash of its arguments), the states in
which it holds that key (a bitmask, `models.STATE_BITS`) and, with
`unique_for`, when a finished row stops holding it. A row holds its key while
its status is one of those states (`models.HOLDS_KEY`), and a finished row
only until `unique_until`.

The database enforces it: a partial unique index over the rows holding their
key (`jobs_job_unique`, River's `unique_states` bitmask in the index
condition), and an enqueue is an INSERT that skips a held key
(`hot_path.insert_new`). So two callers enqueueing one key at once, in
threads, processes or hosts, make one job, and both get its id. A job leaves
the index by its own transitions (claim, success, failure), with no
statement of ours; only a finished row past its `unique_until` is let go
here, at the next enqueue of its key (`release_expired`).
"""

import hashlib
import json
import math
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.tasks.exceptions import InvalidTask

from ..expressions import DatabaseNow
from ..models import FINISHED_STATUSES, STATE_BITS, Job, JobStatus
from . import hot_path

# A job holds its key from its INSERT until it finishes, whatever it was
# given: a row must never move into a held state while another row may hold
# the key (a claim or a retry by a worker would then break the unique index
# and fail), so its first states are always held, as River requires.
LIVE_STATES = (JobStatus.READY, JobStatus.RUNNING)
LIVE_BITS = sum(STATE_BITS[status] for status in LIVE_STATES)
# The states a key is unique among, unless the task names them: while the job
# waits, is delayed or runs; with `unique_for`, also once it succeeded
# (until `unique_for` seconds after it was enqueued).
DEFAULT_STATES = LIVE_STATES
DEFAULT_STATES_FOR_PERIOD = (*LIVE_STATES, JobStatus.SUCCESSFUL)
KEY_MAX_LENGTH = Job._meta.get_field("unique_key").max_length
# Rounds of insert, find the holder, let an expired holder go: each round
# settles every key but those whose holder finished or expired just then.
ROUNDS = 5


class KeyContention(InvalidTask):
    """A unique key changed hands faster than an enqueue could settle it."""


class KeyHeld(Exception):  # noqa: N818 (it names an outcome)
    """Another job holds the unique key a change would have taken."""

    def __init__(self, key, holder_id):
        super().__init__(f"another job holds the unique key {key!r}")
        self.key = key
        self.holder_id = holder_id  # None: it let go of the key since


def is_unique(task):
    """Say whether jobs of `task` are unique."""
    return bool(getattr(task, "unique", False)) or any(
        getattr(task, option, None) is not None
        for option in ("unique_key", "unique_for", "unique_states")
    )


def check_options(task):
    """Raise InvalidTask naming the first bad unique option of `task`."""
    unique = getattr(task, "unique", False)
    if not isinstance(unique, bool):
        raise InvalidTask(f"unique must be True or False, not {unique!r}.")
    key = getattr(task, "unique_key", None)
    if key is not None and (not isinstance(key, str) or not key):
        raise InvalidTask(f"unique_key must be a non-empty string, not {key!r}.")
    if key is not None and len(key) > KEY_MAX_LENGTH:
        raise InvalidTask(
            f"unique_key must be at most {KEY_MAX_LENGTH} characters "
            f"(it has {len(key)})."
        )
    period = getattr(task, "unique_for", None)
    if period is not None and (
        isinstance(period, bool)
        or not isinstance(period, (int, float))
        or not math.isfinite(period)
        or period < 0
    ):
        raise InvalidTask(
            f"unique_for must be a number of seconds of at least 0, not {period!r}."
        )
    check_states(getattr(task, "unique_states", None))


def check_states(states):
    """Raise InvalidTask unless `states` is None or names job states that
    include READY and RUNNING."""
    if states is None:
        return
    if isinstance(states, str) or not isinstance(states, (list, tuple, set, frozenset)):
        raise InvalidTask(
            f"unique_states must be a list of state names, not {states!r}."
        )
    unknown = [state for state in states if state not in JobStatus.values]
    if unknown:
        raise InvalidTask(
            f"unique_states names unknown states {unknown!r}; "
            f"the states are {', '.join(JobStatus.values)}."
        )
    missing = [state for state in LIVE_STATES if state not in states]
    if missing:
        raise InvalidTask(
            f"unique_states must include {' and '.join(LIVE_STATES)} "
            f"(missing {', '.join(missing)}): a job holds its key from its "
            "enqueue until it finishes."
        )


def ordered_states(states):
    """Return `states` as a tuple in the order of JobStatus (None stays None)."""
    if states is None:
        return None
    return tuple(JobStatus(state) for state in JobStatus.values if state in states)


def states_of(task):
    """Return the states in which a job of `task` holds its key."""
    if task.unique_states is not None:
        return task.unique_states
    return DEFAULT_STATES if task.unique_for is None else DEFAULT_STATES_FOR_PERIOD


def default_key(args, kwargs):
    """Return the key of a call: a stable hash of its JSON arguments."""
    text = json.dumps(
        [args, kwargs], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def stamp(task, jobs):
    """Give each of `jobs` (new rows of unique `task`) its key, its states
    and the end of its period."""
    states = sum(STATE_BITS[state] for state in states_of(task))
    for job in jobs:
        job.unique_key = task.unique_key or default_key(job.args, job.kwargs)
        job.unique_states = states
        job.unique_until = (
            None
            if task.unique_for is None
            else job.enqueued_at + timedelta(seconds=task.unique_for)
        )


def insert(jobs):
    """INSERT stamped unique `jobs` (of one task), one per key.

    Return (the job holding each job's key, in order; the ids inserted). A
    job whose key another row holds is not inserted: that row is its holder;
    so is the first job of its key in `jobs` for the others. Runs in a
    savepoint of the caller's transaction; a skipped key breaks nothing.
    """
    firsts = {}
    for job in jobs:
        firsts.setdefault(job.unique_key, job)
    # Keys are inserted in one order by every caller, so two bulk enqueues
    # that share keys wait on each other in turn, never in a cycle.
    pending = sorted(firsts.values(), key=lambda job: job.unique_key)
    holders, inserted = {}, set()
    with transaction.atomic(using=Job.objects.db):
        for _ in range(ROUNDS):
            pending = settle(pending, holders, inserted)
            if not pending:
                return [holders[job.unique_key] for job in jobs], inserted
    raise KeyContention(
        f"{jobs[0].task_path}: unique keys changed hands {ROUNDS} times "
        "during one enqueue; nothing was enqueued."
    )


def settle(pending, holders, inserted):
    """Insert `pending`, note who holds each key; return the jobs to try
    again (their holder finished or expired in between)."""
    new = hot_path.insert_new(pending)
    inserted |= new
    lost = []
    for job in pending:
        if job.pk in new:
            holders[job.unique_key] = job
        else:
            lost.append(job)
    if not lost:
        return []
    found = Job.objects.holding_keys(lost[0].task_path, [j.unique_key for j in lost])
    found = list(found)
    released = release_expired(found)
    for row in found:
        if row.pk not in released:
            holders[row.unique_key] = row
    return [job for job in lost if job.unique_key not in holders]


def release_expired(rows):
    """Let the finished `rows` whose `unique_until` has passed (on the
    database's clock) stop holding their key: their finished states are
    dropped from `unique_states`. Return the ids released."""
    ids = [
        row.pk
        for row in rows
        if row.unique_until is not None and row.status in FINISHED_STATUSES
    ]
    if not ids:
        return set()
    released = Job.objects.filter(
        pk__in=ids, status__in=FINISHED_STATUSES, unique_until__lte=DatabaseNow()
    ).update_returning(unique_states=F("unique_states").bitand(LIVE_BITS))
    return {row.pk for row in released}


def update_unless_held(rows, task_path, key, **values):
    """`rows.update_returning(**values)`, for rows of `task_path` with the
    unique `key`, unless that makes a row hold the key while another does:
    then raise KeyHeld.

    The unique index refuses such an UPDATE; it runs in a savepoint, so the
    refusal leaves the caller's transaction whole.
    """
    release_expired(Job.objects.holding_keys(task_path, [key]))
    try:
        with transaction.atomic(using=Job.objects.db):
            return rows.update_returning(**values)
    except IntegrityError:
        holder = Job.objects.holding_keys(task_path, [key]).first()
        raise KeyHeld(key, holder and holder.pk) from None
