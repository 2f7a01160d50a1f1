"""The console's per-task table (`task_table`), for those who may view jobs:
mixed into the job's ModelAdmin. Sorted on the server by `?o=`."""

from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path

from . import task_table
from .admin_display import format_duration

# Each window's columns: their heading and how a value reads.
HEADINGS = {
    "runs": "runs",
    "failures": "failed",
    "rate": "failure rate",
    "p50": "p50",
    "p95": "p95",
    "max": "max",
}
WINDOW_TITLES = {"1h": "Last hour", "1d": "Last day"}


class TaskTableViews:
    def task_table_urls(self):
        view = self.admin_site.admin_view(self.task_table_view)
        return [path("tasks/", view, name="jobs_job_tasks")]

    def task_table_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        computed = task_table.table()
        rows, order = task_table.sort(computed["rows"], request.GET.get("o", ""))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Tasks",
            "windows": [
                {"title": WINDOW_TITLES[name], "columns": columns(name, order)}
                for name in task_table.WINDOWS
            ],
            "task_column": column("task_path", "task", order),
            "failure_column": column("last_failure_at", "last failure", order),
            "rows": [shown(row) for row in rows],
            "generated_at": computed["generated_at"],
            "sampled": computed["sampled"],
            "sample_size": task_table.SQLITE_SAMPLE,
        }
        return TemplateResponse(request, "admin/jobs/tasks.html", context)


def columns(window, order):
    """The header cells of one window, each with its sort link."""
    return [
        column(f"{measure}_{window}", HEADINGS[measure], order)
        for measure in task_table.MEASURES
    ]


def column(key, heading, order):
    """A header cell: its heading, whether the table is sorted by it, and the
    `o` that sorts by it (descending first for numbers, then toggling)."""
    sorted_by = order.removeprefix("-") == key
    descending = order.startswith("-")
    if sorted_by:
        toggle = key if descending else f"-{key}"
    else:
        toggle = key if key == "task_path" else f"-{key}"
    return {
        "key": key,
        "heading": heading,
        "sorted": sorted_by,
        "descending": sorted_by and descending,
        "toggle": toggle,
    }


def shown(row):
    """One row as the table reads it: counts, a percentage, durations."""
    cells = []
    for name in task_table.WINDOWS:
        rate = row[f"rate_{name}"]
        cells += [
            row[f"runs_{name}"],
            row[f"failures_{name}"],
            "-" if rate is None else f"{rate:.1%}",
            *(readable(row[f"{m}_{name}"]) for m in ("p50", "p95", "max")),
        ]
    return {"task_path": row["task_path"], "cells": cells, **row}


def readable(duration):
    return "-" if duration is None else format_duration(duration.total_seconds())
