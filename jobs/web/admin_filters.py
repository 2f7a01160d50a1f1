"""The job list's filters: state, queue and task, offered without a table
scan; and `select`, the jobs a list's filters and search show (the bulk
actions act on exactly those)."""

from django.contrib import admin

from ..models import Job, JobStatus
from .admin_listing import search, task_paths

# The list's query parameters that choose its jobs (the rest: page, order).
SELECTING = ("status", "queue", "task", "q")


def select(params, queryset=None):
    """Select the jobs the job list shows for the query parameters `params`
    (a dict of `SELECTING`): its filters, then its search."""
    queryset = Job.objects.all() if queryset is None else queryset
    queryset = by_status(queryset, params.get("status"))
    queryset = by_queue(queryset, params.get("queue"))
    queryset = by_task(queryset, params.get("task"))
    return search(queryset, params.get("q") or "")


def in_words(params):
    """Say which jobs `params` select: "status Failed, task x.y, search "z""."""
    labels = dict(status_choices())
    parts = []
    if params.get("status"):
        parts.append(f"status {labels.get(params['status'], params['status'])}")
    for name in ("queue", "task"):
        if params.get(name):
            parts.append(f"{name} {params[name]}")
    if (params.get("q") or "").strip():
        parts.append(f'search "{params["q"].strip()}"')
    return ", ".join(parts) or "no filter: every job"


def status_choices():
    """The status filter's choices: each state, waiting and delayed apart."""
    return [
        ("waiting", "Waiting"),
        ("delayed", "Delayed"),
        *((s.value, s.label) for s in JobStatus if s != JobStatus.READY),
    ]


def by_status(queryset, value):
    """Filter by state, with waiting and delayed READY jobs apart."""
    if value == "waiting":
        return queryset.due()
    if value == "delayed":
        return queryset.delayed()
    if value in JobStatus.values:
        return queryset.filter(status=value)
    return queryset


def by_queue(queryset, value):
    return queryset.filter(queue_name=value) if value else queryset


def by_task(queryset, value):
    return queryset.of_tasks([value]) if value else queryset


class StatusFilter(admin.SimpleListFilter):
    """Filter by state, with waiting and delayed READY jobs apart."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return status_choices()

    def queryset(self, request, queryset):
        return by_status(queryset, self.value())


class QueueFilter(admin.SimpleListFilter):
    """Filter by queue, offering the configured queues (no table scan)."""

    title = "queue"
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        from django.conf import settings

        return [(q, q) for q in getattr(settings, "JOB_QUEUES", ["default"])]

    def queryset(self, request, queryset):
        return by_queue(queryset, self.value())


class TaskFilter(admin.SimpleListFilter):
    """Filter by task, offering every task in the table (no table scan)."""

    title = "task"
    parameter_name = "task"

    def lookups(self, request, model_admin):
        paths = task_paths()
        if self.value() and self.value() not in paths:
            paths.append(self.value())
        return [(p, p.rpartition(".")[2]) for p in paths]

    def queryset(self, request, queryset):
        return by_task(queryset, self.value())
