"""The guard of every transition out of RUNNING, and the database's clock.

A running job belongs to the run that claimed it for as long as its row is
RUNNING under that run's lease token (`held`): every change a run, a rescuer
or an admin makes to a running job is one statement whose WHERE holds that
condition. Leases, due times and their expiry are read and written on the
database's clock only (`DatabaseNow`), so hosts whose clocks disagree still
agree on who holds a job. The SQL form of the hot statements, on PostgreSQL,
writes the same guard in `hot_path`.
"""

from datetime import timedelta

from django.db import connections
from django.db.models import Case, DateTimeField, ExpressionWrapper, Q, Value, When
from django.utils import timezone

from .. import conf
from ..expressions import DatabaseNow
from ..models import Job, JobStatus, on_postgresql


def held(jobs):
    """Select `jobs` that are still RUNNING under the lease token each was
    claimed with."""
    jobs = list(jobs)
    if len(jobs) == 1:
        (job,) = jobs
        return Job.objects.filter(
            pk=job.pk, status=JobStatus.RUNNING, lease_token=job.lease_token
        )
    by_token = Q()
    for token, pks in group_by_token(jobs).items():
        by_token |= Q(lease_token=token, pk__in=pks)
    return Job.objects.filter(by_token, status=JobStatus.RUNNING)


def group_by_token(jobs):
    groups = {}
    for job in jobs:
        groups.setdefault(job.lease_token, []).append(job.pk)
    return groups


def lease_seconds():
    return conf.get("JOB_LEASE_SECONDS")


def database_now():
    """Read the database's clock now, as `DatabaseNow` does in a statement
    (SQLite: this host's clock)."""
    if not on_postgresql():
        return timezone.now()
    with connections[Job.objects.db].cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        return cursor.fetchone()[0]


def db_now_plus(seconds):
    """The database's clock plus `seconds`, as an expression for a statement."""
    return ExpressionWrapper(
        DatabaseNow() + Value(timedelta(seconds=seconds)), output_field=DateTimeField()
    )


def lease_expiry():
    """When a lease taken or renewed now expires, on the database's clock."""
    return db_now_plus(lease_seconds())


def unless_cancel_requested(status):
    """Return `status` as an expression that is CANCELLED when the row's
    cancel was requested, so a cancel and the end of a run never race."""
    return Case(
        When(cancel_requested=True, then=Value(JobStatus.CANCELLED)),
        default=Value(status),
        output_field=Job._meta.get_field("status"),
    )


def finished_at_unless_cancel_requested(finished_at, now):
    """Return `finished_at`, or `now` when the row's cancel was requested."""
    return Case(
        When(cancel_requested=True, then=Value(now)),
        default=Value(finished_at),
        output_field=DateTimeField(),
    )
