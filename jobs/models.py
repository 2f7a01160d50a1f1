"""The job table: one row per job, the single source of truth."""

import json
import uuid
from datetime import timedelta

from django.db import connections, models
from django.db.models import (
    Case,
    Exists,
    F,
    Min,
    OuterRef,
    Q,
    Subquery,
    TextField,
    Value,
    When,
)
from django.db.models.functions import Cast, Upper
from django.db.models.lookups import GreaterThan
from django.db.models.sql import UpdateQuery
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class JobStatus(models.TextChoices):
    # Waiting to be claimed; `run_after` in the future means delayed.
    # Claiming moves it to RUNNING; an admin cancel moves it to CANCELLED.
    READY = "READY", _("Ready")
    # Claimed by a worker that holds its lease. Success moves it to
    # SUCCESSFUL; failure to READY (retry) or FAILED; a lost lease to READY.
    # An admin cancel sets `cancel_requested`: the run then ends CANCELLED.
    RUNNING = "RUNNING", _("Running")
    # Finished without error. Final, until pruned.
    SUCCESSFUL = "SUCCESSFUL", _("Successful")
    # Failed on its last attempt, or permanently. An admin retry moves it
    # back to READY; pruned after the failed-job retention.
    FAILED = "FAILED", _("Failed")
    # Cancelled before it finished. An admin retry moves it back to READY.
    CANCELLED = "CANCELLED", _("Cancelled")


FINISHED_STATUSES = (JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.CANCELLED)

# A unique job's `unique_states` is a bitmask of these bits: the states in
# which the row holds its key (River's `unique_states`, as an integer).
STATE_BITS = {
    JobStatus.READY: 1,
    JobStatus.RUNNING: 2,
    JobStatus.SUCCESSFUL: 4,
    JobStatus.FAILED: 8,
    JobStatus.CANCELLED: 16,
}
FINISHED_BITS = sum(STATE_BITS[status] for status in FINISHED_STATUSES)

# A row holds its unique key while its status is one of its `unique_states`.
# The unique index `jobs_job_unique` has this condition, so the database
# itself lets one row per key hold it, and a row leaves the index by its own
# transition (a claim, a success) without any statement of ours. Rows
# without a key (plain jobs) are not in the index at all.
HOLDS_KEY = Q(unique_key__isnull=False) & Q(
    GreaterThan(
        Case(
            *(
                When(status=status, then=F("unique_states").bitand(bit))
                for status, bit in STATE_BITS.items()
            ),
            default=Value(0),
        ),
        0,
    )
)


def bucket_filters(now):
    """What each bucket of the queue counts, as of `now`, in the order people
    read them (dashboard, `/health`); every state lands in exactly one."""
    return {
        "waiting": Q(status=JobStatus.READY, run_after__lte=now),
        "delayed": Q(status=JobStatus.READY, run_after__gt=now),
        "active": Q(status=JobStatus.RUNNING),
        "completed": Q(status=JobStatus.SUCCESSFUL),
        "failed": Q(status=JobStatus.FAILED),
        "cancelled": Q(status=JobStatus.CANCELLED),
    }


BUCKETS = tuple(bucket_filters(None))
# Buckets of finished jobs, which grow to millions of rows.
FINISHED_BUCKETS = ("completed", "failed", "cancelled")


# A job's arguments and keyword arguments as upper-case text: the argument
# search compares with these, and on PostgreSQL a trigram index of each
# (`jobs_job_args_trgm`, `jobs_job_kwargs_trgm`, migration 0014) answers it.
# Index and query must use the very same expression.
ARGUMENT_TEXTS = {
    "args_text": Upper(Cast("args", TextField())),
    "kwargs_text": Upper(Cast("kwargs", TextField())),
}
# Each trigram index holds only the rows with arguments of its kind: a job
# called without any (`[]`, `{}`: two characters, shorter than any search)
# writes no entry. The search names the same conditions, so the indexes'
# conditions hold for it.
ARGUMENTS_GIVEN = {"args": ~Q(args=[]), "kwargs": ~Q(kwargs={})}


def queue_paused():
    """Whether a job's queue is paused: its `QueuePause` row exists."""
    return Exists(QueuePause.objects.filter(queue_name=OuterRef("queue_name")))


class JobQuerySet(models.QuerySet):
    def ready(self):
        return self.filter(status=JobStatus.READY)

    def of_tasks(self, paths):
        """Select the jobs of the task paths `paths`: the finished ones by the
        task index, the ready and running ones (the few) by the claim and
        lease indexes."""
        paths = list(paths)
        return self.filter(
            Q(status__in=FINISHED_STATUSES, task_path__in=paths)
            | Q(status=JobStatus.READY, task_path__in=paths)
            | Q(status=JobStatus.RUNNING, task_path__in=paths)
        )

    def with_argument_text(self, text):
        """Select the jobs whose arguments or keyword arguments, as JSON,
        contain `text`, any case (PostgreSQL: the trigram indexes answer)."""
        text = text.upper()
        return self.alias(**ARGUMENT_TEXTS).filter(
            Q(ARGUMENTS_GIVEN["args"], args_text__contains=text)
            | Q(ARGUMENTS_GIVEN["kwargs"], kwargs_text__contains=text)
        )

    def holding_keys(self, task_path, keys):
        """Select the jobs of `task_path` that hold one of the unique `keys`
        (at most one per key: the unique index answers)."""
        return self.filter(HOLDS_KEY, task_path=task_path, unique_key__in=keys)

    def due(self, now=None):
        """Select READY jobs whose `run_after` has come: the "waiting" jobs."""
        return self.ready().filter(run_after__lte=now or timezone.now())

    def delayed(self, now=None):
        """Select READY jobs whose `run_after` is still in the future."""
        return self.ready().filter(run_after__gt=now or timezone.now())

    def claimable(self, queues=None, now=None):
        """Select due jobs of `queues` (None: all) that are not paused and have
        no concurrency key, in the order workers take them (keyed jobs:
        `core.concurrency`)."""
        due = self.due(now).unpaused().filter(concurrency_key="")
        if queues is not None:
            due = due.filter(queue_name__in=queues)
        return due.order_by("-priority", "run_after")

    def unpaused(self):
        """Select the jobs whose queue is not paused (no `QueuePause` row)."""
        return self.filter(~queue_paused())

    def paused(self):
        """Select the jobs whose queue is paused."""
        return self.filter(queue_paused())

    def stalled(self, now=None):
        """Select RUNNING jobs whose worker stopped renewing the lease."""
        return self.filter(
            status=JobStatus.RUNNING, lease_expires_at__lt=now or timezone.now()
        )

    def finished(self):
        return self.filter(status__in=FINISHED_STATUSES)

    def tallied(self):
        """Select the finished jobs the tally has counted (`TaskTally`): those
        finished at or before its mark; none before its first turn. Only
        these may be deleted, so the totals of /metrics never go down."""
        counted_to = TallyMark.objects.filter(name=TALLY_MARK).values("counted_to")
        return self.filter(
            status__in=FINISHED_STATUSES, finished_at__lte=Subquery(counted_to)
        )

    def stats(self, now=None, exact_up_to=None):
        """Count jobs per bucket: waiting, delayed, active, completed, failed.

        One COUNT per bucket, each with a status filter an index serves
        (`jobs_job_claim_by_key` for READY, `jobs_job_lease` for RUNNING,
        `jobs_job_status` for the finished states). Finished buckets, which
        grow to millions of rows, are counted exactly up to `exact_up_to`
        rows and estimated by the query planner beyond; `estimated` names them.
        """
        counts = {"estimated": []}
        for key, condition in bucket_filters(now or timezone.now()).items():
            if key not in FINISHED_BUCKETS:
                counts[key] = self.filter(condition).count()
                continue
            counts[key], estimated = self.filter(condition).count_or_estimate(
                exact_up_to
            )
            if estimated:
                counts["estimated"].append(key)
        return counts

    def count_or_estimate(self, exact_up_to=None):
        """Count rows exactly up to `exact_up_to`; beyond, ask the planner.

        Return (count, estimated). Counting a million rows reads a million
        index entries; the planner's estimate costs one EXPLAIN.
        """
        if exact_up_to is None or self.db_vendor != "postgresql":
            return self.count(), False  # SQLite offers no estimate
        counted = self.order_by().values("pk")[:exact_up_to].count()
        if counted < exact_up_to:
            return counted, False
        plan = json.loads(self.explain(format="json"))
        return max(counted, int(plan[0]["Plan"]["Plan Rows"])), True

    @property
    def db_vendor(self):
        return connections[self.db].vendor

    def oldest_due_at(self, now=None):
        """Return the `run_after` of the longest-waiting due job, or None."""
        return self.due(now).aggregate(oldest=Min("run_after"))["oldest"]

    def outcomes_since(self, since):
        """Count jobs that succeeded and failed for good since `since`."""
        return {
            key: self.filter(status=status, finished_at__gte=since).count()
            for key, status in (
                ("completed", JobStatus.SUCCESSFUL),
                ("failed", JobStatus.FAILED),
            )
        }

    def update_returning(self, **values):
        """Run one UPDATE ... RETURNING and give back the changed rows as jobs.

        Django uses the same compiler path for `Model.save()`; both PostgreSQL
        and SQLite return the updated rows from the statement itself, so the
        claim stays a single atomic statement with no follow-up SELECT.
        """
        query = self.query.chain(UpdateQuery)
        query.add_update_values(values)
        fields = self.model._meta.concrete_fields
        rows = query.get_compiler(self.db).execute_returning_sql(fields)
        names = [field.attname for field in fields]
        return [self.model.from_db(self.db, names, row) for row in rows]


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    task_path = models.CharField(max_length=255)
    queue_name = models.CharField(max_length=64, default="default")
    priority = models.SmallIntegerField(default=0)
    status = models.CharField(
        max_length=10, choices=JobStatus.choices, default=JobStatus.READY
    )
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    return_value = models.JSONField(null=True, blank=True)
    # One entry per failed attempt: exception_class_path, message, traceback,
    # attempt, worker_id, failed_at.
    errors = models.JSONField(default=list, blank=True)
    # One entry per attempt (Django's TaskResult.attempts is their count).
    worker_ids = models.JSONField(default=list, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    # Per-job options, stored at enqueue (`@task(...)` or `.using(...)`), so
    # every worker honours what the caller asked for. None: no time limit /
    # JOB_BACKOFF_BASE_SECONDS.
    timeout = models.FloatField(null=True, blank=True)
    backoff_base = models.FloatField(null=True, blank=True)
    # At most `concurrency_limit` jobs with the same non-empty
    # `concurrency_key` are RUNNING at once (`core.concurrency`); "": no limit.
    concurrency_key = models.CharField(max_length=255, blank=True, default="")
    concurrency_limit = models.IntegerField(null=True, blank=True)  # >= 1 (enqueue)

    enqueued_at = models.DateTimeField(default=timezone.now)
    run_after = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    last_attempted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    progress = models.PositiveSmallIntegerField(null=True, blank=True)
    progress_message = models.CharField(max_length=255, blank=True, default="")

    # The claim being run: a worker writes only rows that still carry the
    # token it claimed them with, so a rescued job is never overwritten by
    # the worker that lost it. That worker renews the lease while it holds the job.
    lease_token = models.CharField(max_length=80, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Set by an admin cancel of a RUNNING job: the task may stop early
    # (`context.cancel_requested()`), and however the run ends it is CANCELLED.
    cancel_requested = models.BooleanField(default=False)
    # Unique jobs (`jobs.core.uniqueness`): the key, per task; the states in
    # which this row holds it (`STATE_BITS`); and when a finished row stops
    # holding it (None: never). All None for a plain job.
    unique_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 (NULL: no key, not in the unique index)
    unique_states = models.PositiveSmallIntegerField(null=True, blank=True)
    unique_until = models.DateTimeField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-enqueued_at"]
        permissions = [
            ("retry_job", "Can retry jobs"),
            ("cancel_job", "Can cancel jobs"),
        ]
        indexes = [
            # The claim: due READY rows of a queue, highest priority first;
            # those without a concurrency key (the key "") apart from each
            # key's, so neither claim walks over the other's rows.
            models.Index(
                F("concurrency_key"),
                F("queue_name"),
                F("priority").desc(),
                F("run_after"),
                condition=Q(status="READY"),
                name="jobs_job_claim_by_key",
            ),
            # The RUNNING rows of a concurrency key: the slots taken. Rows
            # without a key write no entry here.
            models.Index(
                F("concurrency_key"),
                condition=Q(status="RUNNING", concurrency_key__gt=""),
                name="jobs_job_running_key",
            ),
            # The rescuer: RUNNING rows by lease expiry.
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status="RUNNING"),
                name="jobs_job_lease",
            ),
            # Statistics and pruning: rows per status, by finish time.
            models.Index(fields=["status", "finished_at"], name="jobs_job_status"),
            # The admin list, newest first.
            models.Index(F("enqueued_at").desc(), name="jobs_job_enqueued"),
            # The admin list of a task, and the tasks present (admin_listing).
            # Finished rows only: a claim writes no entry here, a success one
            # (an UPDATE that is not HOT writes to every index it matches).
            models.Index(
                F("task_path"),
                F("enqueued_at").desc(),
                condition=Q(status__in=FINISHED_STATUSES),
                name="jobs_job_task",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(priority__gte=-100, priority__lte=100),
                name="jobs_job_priority_range",
            ),
            models.CheckConstraint(
                condition=Q(status__in=JobStatus.values),
                name="jobs_job_status_valid",
            ),
            # One job per task and key among the rows holding their key: a
            # partial unique index (plain jobs write no entry to it).
            models.UniqueConstraint(
                fields=["task_path", "unique_key"],
                condition=HOLDS_KEY,
                name="jobs_job_unique",
            ),
        ]

    def __str__(self):
        return f"{self.task_name} {self.short_id} ({self.status})"

    @property
    def short_id(self):
        return str(self.id)[:8]

    @property
    def task_name(self):
        return self.task_path.rpartition(".")[2]


class WorkerProcessQuerySet(models.QuerySet):
    def alive(self, now=None, within=None):
        """Select workers that heartbeated within `within` (default: a lease)."""
        from . import conf  # settings are read when used

        within = within or timedelta(seconds=conf.get("JOB_LEASE_SECONDS"))
        return self.filter(last_heartbeat_at__gte=(now or timezone.now()) - within)


class WorkerProcess(models.Model):
    """A worker process (`jobworker` or `rqworker`), kept fresh by heartbeats."""

    class Kind(models.TextChoices):
        DATABASE = "database", _("Database (jobworker)")
        RQ = "rq", _("Redis (rqworker)")

    id = models.CharField(primary_key=True, max_length=80)  # host:pid:suffix
    kind = models.CharField(max_length=10, choices=Kind.choices)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    # Which processes `pid` can be compared with: workers with the same
    # `pid_space` see the same process ids (same kernel boot, same pid
    # namespace), so one of them can tell that this one is gone.
    pid_space = models.CharField(max_length=80, blank=True, default="")
    queues = models.JSONField(default=list)
    concurrency = models.PositiveSmallIntegerField(default=1)
    started_at = models.DateTimeField(default=timezone.now)
    last_heartbeat_at = models.DateTimeField(default=timezone.now)
    # A database worker on PostgreSQL: True while NOTIFY wakes it, False once
    # notifications did not reach its LISTEN (it polls). None: not known yet,
    # or a worker that does not listen.
    hears_notify = models.BooleanField(null=True, default=None)
    # How far this worker's clock is ahead of the database's (negative:
    # behind), as of its last heartbeat: the times it writes itself
    # (`finished_at`) are off by this much. None: not measured yet.
    clock_ahead = models.DurationField(null=True, blank=True)

    objects = WorkerProcessQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["last_heartbeat_at"], name="jobs_worker_beat")]

    def __str__(self):
        return self.id


class LeaderLock(models.Model):
    """A named lock with an expiry, so one process at a time runs a duty
    (`maintenance.leader`)."""

    name = models.CharField(primary_key=True, max_length=64)
    holder = models.CharField(max_length=128)
    expires_at = models.DateTimeField()

    def __str__(self):
        return f"{self.name} held by {self.holder} until {self.expires_at}"


class QueuePause(models.Model):
    """A paused queue: workers of both kinds start none of its jobs while
    this row exists (the claim statements test it); enqueue is unchanged."""

    queue_name = models.CharField(primary_key=True, max_length=64)
    paused_at = models.DateTimeField()
    paused_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        default_permissions = ()  # rows change only by pausing and resuming
        permissions = [("pause_queue", "Can pause and resume queues")]

    def __str__(self):
        return f"{self.queue_name} paused at {self.paused_at}"


def on_postgresql():
    """Say whether jobs live on PostgreSQL (LISTEN/NOTIFY, the SQL fast path)."""
    return connections[Job.objects.db].vendor == "postgresql"


class ScheduleState(models.Model):
    """What the database keeps of a schedule declared in JOB_SCHEDULES: whether
    it is paused, and from when its scheduled times count. Settings declare
    schedules; this row outlives restarts and deploys."""

    name = models.CharField(primary_key=True, max_length=100)
    # Paused: workers enqueue none of its times; resuming moves `counts_from`.
    paused = models.BooleanField(default=False)
    # Scheduled times before this are never enqueued: when a worker first saw
    # the schedule, or when it was last resumed (no catch-up of a pause).
    counts_from = models.DateTimeField()

    class Meta:
        permissions = [
            ("manage_schedule", "Can pause, resume and run schedules now"),
        ]

    def __str__(self):
        return f"{self.name} ({'paused' if self.paused else 'active'})"


class ScheduledRun(models.Model):
    """A job a schedule enqueued. At most one row per (schedule, scheduled
    time): the worker whose INSERT wins enqueues that time, the others do
    nothing. A run-now has no scheduled time (NULLs never collide)."""

    schedule = models.CharField(max_length=100)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(default=timezone.now)
    # Who enqueued it: a worker id, or the admin user of a run-now.
    enqueued_by = models.CharField(max_length=150, blank=True, default="")
    # Not a foreign key: pruning a finished job leaves its run in the history.
    job_id = models.UUIDField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["schedule", "scheduled_at"], name="jobs_scheduledrun_once"
            ),
        ]
        indexes = [
            # A schedule's newest run (its last job, in the console).
            models.Index(
                F("schedule"), F("enqueued_at").desc(), name="jobs_scheduledrun_last"
            ),
            # A job's schedule run (the job page's timeline).
            models.Index(fields=["job_id"], name="jobs_scheduledrun_job"),
        ]

    def __str__(self):
        return f"{self.schedule} at {self.scheduled_at or 'run now'}"


# The run-duration histogram's upper bounds, in seconds (1 ms to 1 h).
DURATION_BUCKETS = (
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600,
)  # fmt: skip
# What a task's tally counts per finished row, in the order of its columns.
OUTCOMES = ("succeeded", "failed", "cancelled", "retried", "rescued")


class TaskTally(models.Model):
    """Running totals of one task on one queue, for /metrics: advanced from
    the finished rows by the maintenance (`maintenance.tally`), never
    lowered, so pruning rows takes nothing from them."""

    task_path = models.CharField(max_length=255)
    queue_name = models.CharField(max_length=64)
    succeeded = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)
    cancelled = models.BigIntegerField(default=0)
    retried = models.BigIntegerField(default=0)  # failed attempts run again
    rescued = models.BigIntegerField(default=0)  # attempts lost with their worker
    # Run durations: how many were <= each of DURATION_BUCKETS (cumulative,
    # as Prometheus reads them), how many in all, and their sum in seconds.
    duration_buckets = models.JSONField(default=list)
    duration_count = models.BigIntegerField(default=0)
    duration_sum = models.FloatField(default=0.0)

    class Meta:
        default_permissions = ()  # written by the maintenance only
        constraints = [
            models.UniqueConstraint(
                fields=["task_path", "queue_name"], name="jobs_tasktally_once"
            ),
        ]

    def __str__(self):
        return f"{self.task_path} on {self.queue_name}"


TALLY_MARK = "finished"  # the one TallyMark row's name


class TallyMark(models.Model):
    """How far the tally has counted: every row finished at or before
    `counted_to` is in `TaskTally`, and no later one. One row."""

    name = models.CharField(primary_key=True, max_length=32)
    counted_to = models.DateTimeField()
    # When the maintenance last moved it (the database's clock).
    counted_at = models.DateTimeField()

    class Meta:
        default_permissions = ()

    def __str__(self):
        return f"{self.name} counted to {self.counted_to}"


class QueueDepth(models.Model):
    """How many jobs waited (READY and due, every queue) in one minute, as
    the maintenance sampled it (`maintenance.depth`): the rows of jobs keep
    no past depth, and the dashboard's chart draws it."""

    minute = models.DateTimeField(primary_key=True)
    waiting = models.BigIntegerField()

    class Meta:
        default_permissions = ()  # written by the maintenance only

    def __str__(self):
        return f"{self.waiting} waiting at {self.minute}"
