"""The job console: list, inspect, retry and cancel jobs; the queue dashboard.

No one adds or edits job rows by hand: the only writes are the retry and
cancel transitions of `jobs.core.interventions`, each behind its own permission.

This module registers the console and wires its parts together: the list's
filters (`admin_filters`), its capped count and id search (`admin_listing`),
the columns and job page (`admin_display`), retry and cancel (`admin_actions`),
retry or cancel of every matching job (`admin_bulk`),
pausing queues from the dashboard (`admin_pauses`), the schedules page of
recurring jobs (`admin_schedules`), the per-task table (`admin_tasks`).
"""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path

from ..models import Job
from . import dashboard
from .admin_actions import JobActions
from .admin_bulk import BulkActions
from .admin_display import JobColumns, JobPageFields
from .admin_filters import QueueFilter, StatusFilter, TaskFilter
from .admin_listing import CappedPaginator, search
from .admin_pauses import QueuePauses
from .admin_schedules import ScheduleViews
from .admin_tasks import TaskTableViews


@admin.register(Job)
class JobAdmin(
    BulkActions,
    QueuePauses,
    JobActions,
    ScheduleViews,
    TaskTableViews,
    JobColumns,
    JobPageFields,
    admin.ModelAdmin,
):
    list_display = [
        "short_id",
        "task_name",
        "queue_name",
        "status_badge",
        "priority",
        "attempts_of",
        "progress_bar",
        "enqueued_at",
        "duration",
    ]
    list_display_links = ["short_id"]
    list_filter = [StatusFilter, QueueFilter, TaskFilter]
    search_fields = ["task_path"]
    search_help_text = (
        "A job id (8+ characters), part of a task path, or text in the arguments."
    )
    ordering = ["-enqueued_at"]
    paginator = CappedPaginator
    list_per_page = 50
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    actions = ["retry_selected", "cancel_selected"]
    change_form_template = "admin/jobs/job/change_form.html"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "id",
                    "task_path",
                    "queue_name",
                    "status_badge",
                    "priority",
                    "attempts_of",
                    "cancel_requested",
                ]
            },
        ),
        ("Timeline", {"fields": ["timeline"]}),
        ("Progress", {"fields": ["progress_bar", "progress_message"]}),
        ("Data", {"fields": ["args_json", "kwargs_json", "return_value_json"]}),
        ("Errors, newest first", {"fields": ["errors_list"]}),
        ("Workers", {"fields": ["worker_list", "lease_expires_at", "rq_job"]}),
        (
            "Timestamps",
            {
                "fields": [
                    "enqueued_at",
                    "run_after",
                    "started_at",
                    "last_attempted_at",
                    "finished_at",
                    "duration",
                ]
            },
        ),
    ]

    # --- Permissions: read-only rows (retry and cancel: JobActions) -------

    def get_readonly_fields(self, request, obj=None):
        return [name for _, options in self.fieldsets for name in options["fields"]]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_search_results(self, request, queryset, search_term):
        """Find jobs by (the start of) their id, words of their task path or
        text in their arguments (`admin_listing.search`)."""
        return search(queryset, search_term), False

    # --- Extra pages: the job page's buttons, the dashboard, schedules ----

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("dashboard/", view(self.dashboard_view), name="jobs_job_dashboard"),
            *self.pause_urls(),
            *self.schedule_urls(),
            *self.task_table_urls(),
            *self.bulk_urls(),
            path(
                "<path:object_id>/retry/",
                view(self.retry_view),
                name="jobs_job_retry",
            ),
            path(
                "<path:object_id>/cancel/",
                view(self.cancel_view),
                name="jobs_job_cancel",
            ),
            *super().get_urls(),
        ]

    def dashboard_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Queue dashboard",
            "can_pause": self.has_pause_permission(request),
            **dashboard.snapshot(range_name=request.GET.get("range", "")),
        }
        fragment = request.GET.get("fragment") == "1"
        template = "admin/jobs/dashboard_body.html" if fragment else None
        return TemplateResponse(
            request, template or "admin/jobs/dashboard.html", context
        )
