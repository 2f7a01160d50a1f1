"""How the job console shows a job: the list's columns and the job page's fields.

Each class is mixed into the job's ModelAdmin; its methods are the names that
`list_display` and `fieldsets` list.
"""

import json
from datetime import timedelta

from django.contrib import admin
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from ..models import JobStatus
from . import rq_state, timeline

# Badge colour of each state; "delayed" is READY with `run_after` ahead.
STATUS_COLOURS = {
    JobStatus.READY: "#2563eb",
    JobStatus.RUNNING: "#d97706",
    JobStatus.SUCCESSFUL: "#15803d",
    JobStatus.FAILED: "#b91c1c",
    JobStatus.CANCELLED: "#6b7280",
}
DELAYED_COLOUR = "#7c3aed"


class JobColumns:
    """Show the list's columns; the job page shows them too."""

    @admin.display(description="id", ordering="id")
    def short_id(self, job):
        return job.short_id

    @admin.display(description="task", ordering="task_path")
    def task_name(self, job):
        return format_html('<span title="{}">{}</span>', job.task_path, job.task_name)

    @admin.display(description="status", ordering="status")
    def status_badge(self, job):
        label, colour = job.get_status_display(), STATUS_COLOURS[job.status]
        if job.status == JobStatus.READY and job.run_after > timezone.now():
            label, colour = "Delayed", DELAYED_COLOUR
        if job.cancel_requested and job.status == JobStatus.RUNNING:
            label = "Running (cancelling)"
        return format_html(
            '<span class="job-badge" style="background:{};color:#fff;'
            'padding:2px 8px;border-radius:10px;white-space:nowrap">{}</span>',
            colour,
            label,
        )

    @admin.display(description="attempts")
    def attempts_of(self, job):
        return f"{job.attempts}/{job.max_attempts}"

    @admin.display(description="progress")
    def progress_bar(self, job):
        if job.progress is None or job.status != JobStatus.RUNNING:
            return f"{job.progress}%" if job.progress is not None else "-"
        return format_html(
            '<progress max="100" value="{}" title="{}"></progress> {}%',
            job.progress,
            job.progress_message,
            job.progress,
        )

    @admin.display(description="duration")
    def duration(self, job):
        if job.started_at is None:
            return "-"
        seconds = ((job.finished_at or timezone.now()) - job.started_at).total_seconds()
        return format_duration(seconds)


class JobPageFields:
    """Show what only the job page shows: its timeline, data, errors,
    workers, the RQ job."""

    @admin.display(description="attempts")
    def timeline(self, job):
        context = {
            "job": job,
            "attempts": timeline.attempts(job),
            "next_attempt": timeline.next_attempt(job),
            "origin": timeline.origin(job),
        }
        return render_to_string("admin/jobs/job/timeline.html", context)

    @admin.display(description="arguments")
    def args_json(self, job):
        return pretty_json(job.args)

    @admin.display(description="keyword arguments")
    def kwargs_json(self, job):
        return pretty_json(job.kwargs)

    @admin.display(description="return value")
    def return_value_json(self, job):
        return pretty_json(job.return_value) if job.status == "SUCCESSFUL" else "-"

    @admin.display(description="errors")
    def errors_list(self, job):
        if not job.errors:
            return "-"
        return format_html_join(
            "",
            '<div class="job-error"><p><strong>Attempt {}</strong> {} on {}: '
            "<code>{}</code>: {}</p><pre>{}</pre></div>",
            (
                (
                    e.get("attempt", "?"),
                    e.get("failed_at", ""),
                    e.get("worker_id") or "?",
                    e.get("exception_class_path", ""),
                    e.get("message", ""),
                    e.get("traceback", ""),
                )
                for e in reversed(job.errors)
            ),
        )

    @admin.display(description="worker ids (one per attempt)")
    def worker_list(self, job):
        if not job.worker_ids:
            return "-"
        return format_html_join(
            "", "<div>{}. <code>{}</code></div>", enumerate(job.worker_ids, start=1)
        )

    @admin.display(description="RQ job")
    def rq_job(self, job):
        return rq_state.describe(job)


def pretty_json(value):
    """Show a JSON value indented, keys sorted, in a <pre> block."""
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


def format_duration(seconds):
    """Say how long something took: 850 ms, 12.3 s, 4 min 5 s, 2 h 3 min."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    delta = timedelta(seconds=int(seconds))
    minutes, secs = divmod(delta.seconds, 60)
    hours, minutes = divmod(minutes, 60)
    hours += delta.days * 24
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s"
