"""The job list's filters: state, queue and task, offered without a table scan."""

from django.contrib import admin

from ..models import JobStatus
from .admin_listing import task_paths


class StatusFilter(admin.SimpleListFilter):
    """Filter by state, with waiting and delayed READY jobs apart."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [
            ("waiting", "Waiting"),
            ("delayed", "Delayed"),
            *((s.value, s.label) for s in JobStatus if s != JobStatus.READY),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "waiting":
            return queryset.due()
        if value == "delayed":
            return queryset.delayed()
        if value in JobStatus.values:
            return queryset.filter(status=value)
        return queryset


class QueueFilter(admin.SimpleListFilter):
    """Filter by queue, offering the configured queues (no table scan)."""

    title = "queue"
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        from django.conf import settings

        return [(q, q) for q in getattr(settings, "JOB_QUEUES", ["default"])]

    def queryset(self, request, queryset):
        return queryset.filter(queue_name=self.value()) if self.value() else queryset


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
        return queryset.of_tasks([self.value()]) if self.value() else queryset
