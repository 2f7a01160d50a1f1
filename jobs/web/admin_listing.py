"""Keep the job list cheap on a large table: a capped count, search by id
prefix, by task or by argument text, and the tasks to offer, each an index
walk."""

from uuid import UUID

from django.core.paginator import Paginator
from django.db import connection
from django.utils.functional import cached_property

from ..models import FINISHED_STATUSES, Job, JobStatus


class CappedPaginator(Paginator):
    """Count at most `cap` rows: counting millions on every page costs more
    than the page itself. Past the cap, the list says "10000+" and filters
    narrow it down."""

    cap = 10_000

    @cached_property
    def count(self):
        return self.object_list.order_by()[: self.cap + 1].count()

    @property
    def capped(self):
        return self.count > self.cap


# Argument text shorter than this is not searched: PostgreSQL's trigram index
# cannot narrow a term of one or two characters, so it would read every row.
ARGUMENT_TEXT_MIN = 3
# SQLite has no trigram index: there the argument search reads only the
# newest this many jobs (a bounded scan along the enqueued index).
SQLITE_ARGUMENT_SCAN = 100_000


def search(queryset, term):
    """Select the jobs of `queryset` that `term` finds, by the first kind of
    term it is: a job id or its first 8+ hex digits (a range on the primary
    key); words of task paths (those paths, by the task index); else text in
    the arguments (the trigram indexes on PostgreSQL)."""
    term = term.strip()
    if not term:
        return queryset
    ids = id_prefix_range(term)
    if ids:
        return queryset.filter(pk__range=ids)
    tasks = tasks_matching(term)
    if tasks:
        return queryset.of_tasks(tasks)
    if len(term) < ARGUMENT_TEXT_MIN:
        return queryset.none()
    if connection.vendor != "postgresql":
        queryset = newest(queryset, SQLITE_ARGUMENT_SCAN)
    return queryset.with_argument_text(term)


def newest(queryset, count):
    """Select the jobs of `queryset` among the newest `count` of the table."""
    oldest = (
        Job.objects.order_by("-enqueued_at")
        .values_list("enqueued_at", flat=True)[count - 1 : count]
        .first()
    )
    return queryset if oldest is None else queryset.filter(enqueued_at__gte=oldest)


def id_prefix_range(term):
    """Return the (lowest, highest) job ids starting with `term`, or None.

    A short id (8+ hex digits) becomes a range on the primary key, which the
    index answers on any database."""
    digits = term.replace("-", "").lower()
    if not 8 <= len(digits) <= 32 or any(c not in "0123456789abcdef" for c in digits):
        return None
    return UUID(digits.ljust(32, "0")), UUID(digits.ljust(32, "f"))


def task_paths():
    """Return every task path in the job table, sorted.

    Tasks are few and rows are many: the finished rows' paths come from
    hopping along the `jobs_job_task` index from one path to the next (a
    loose index scan, one probe per path), the ready and running rows' (the
    few) from those rows.
    """
    table = connection.ops.quote_name(Job._meta.db_table)
    finished = ", ".join(["%s"] * len(FINISHED_STATUSES))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH RECURSIVE paths(task_path) AS (
                SELECT min(task_path) FROM {table} WHERE status IN ({finished})
                UNION ALL
                SELECT (SELECT min(task_path) FROM {table} j
                        WHERE j.status IN ({finished})
                        AND j.task_path > paths.task_path)
                FROM paths WHERE paths.task_path IS NOT NULL
            )
            SELECT task_path FROM paths WHERE task_path IS NOT NULL
            UNION
            SELECT task_path FROM {table} WHERE status IN (%s, %s)
            ORDER BY 1
            """,  # noqa: S608 (the table name is the model's, quoted)
            [
                *FINISHED_STATUSES,
                *FINISHED_STATUSES,
                JobStatus.READY,
                JobStatus.RUNNING,
            ],
        )
        return [path for (path,) in cursor.fetchall()]


def tasks_matching(term):
    """Return the task paths holding every word of `term`, any case."""
    words = term.lower().split()
    return [path for path in task_paths() if all(w in path.lower() for w in words)]
