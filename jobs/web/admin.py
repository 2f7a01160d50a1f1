"""The job console: list, inspect, retry and cancel jobs; the queue dashboard.

No one adds or edits job rows by hand: the only writes are the retry and
cancel transitions of `jobs.core.interventions`, each behind its own permission.
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from ..core import interventions
from ..models import Job
from . import dashboard
from .admin_display import JobColumns, JobPageFields
from .admin_filters import QueueFilter, StatusFilter, TaskFilter
from .admin_listing import CappedPaginator, id_prefix_range


def plural(count, word):
    return f"{count} {word}{'' if count == 1 else 's'}"


def skipped_text(queryset, moved, why):
    """Say how many selected jobs were left alone, by state, and why."""
    left = queryset.exclude(pk__in=[job.pk for job in moved])
    by_status = left.values("status").annotate(n=Count("pk")).order_by("status")
    parts = [f"{row['n']} {row['status'].lower()}" for row in by_status]
    if not parts:
        return ""
    total = sum(row["n"] for row in by_status)
    return f" Skipped {plural(total, 'job')} ({', '.join(parts)}): {why}."


@admin.register(Job)
class JobAdmin(JobColumns, JobPageFields, admin.ModelAdmin):
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
    search_help_text = "A job id (8+ characters) or part of a task path."
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

    # --- Permissions: read-only rows, two transitions ---------------------

    def get_readonly_fields(self, request, obj=None):
        return [name for _, options in self.fieldsets for name in options["fields"]]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_retry_permission(self, request, obj=None):
        return request.user.has_perm("jobs.retry_job")

    def has_cancel_permission(self, request, obj=None):
        return request.user.has_perm("jobs.cancel_job")

    def get_search_results(self, request, queryset, search_term):
        """Find a job by (the start of) its id, or else by task path."""
        ids = id_prefix_range(search_term.strip())
        if ids:
            return queryset.filter(pk__range=ids), False
        return super().get_search_results(request, queryset, search_term)

    # --- Actions ----------------------------------------------------------

    @admin.action(description="Retry selected jobs", permissions=["retry"])
    def retry_selected(self, request, queryset):
        moved = interventions.retry_jobs(queryset)
        why = "only failed or cancelled jobs can be retried"
        text = f"Retried {plural(len(moved), 'job')}." + skipped_text(
            queryset, moved, why
        )
        self.message_user(
            request, text, messages.SUCCESS if moved else messages.WARNING
        )

    @admin.action(description="Cancel selected jobs", permissions=["cancel"])
    def cancel_selected(self, request, queryset):
        cancelled, asked = interventions.cancel_jobs(queryset)
        text = f"Cancelled {plural(len(cancelled), 'job')}."
        if asked:
            text += f" Asked {plural(len(asked), 'running job')} to stop."
        why = "only waiting, delayed or running jobs can be cancelled, once"
        text += skipped_text(queryset, [*cancelled, *asked], why)
        changed = cancelled or asked
        self.message_user(
            request, text, messages.SUCCESS if changed else messages.WARNING
        )

    # --- Extra pages: the job page's buttons and the dashboard ------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("dashboard/", view(self.dashboard_view), name="jobs_job_dashboard"),
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

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "can_retry": bool(job)
            and job.status in interventions.RETRYABLE
            and self.has_retry_permission(request),
            "can_cancel": bool(job)
            and job.status in interventions.CANCELLABLE
            and not job.cancel_requested
            and self.has_cancel_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def retry_view(self, request, object_id):
        return self._button(request, object_id, "retry", self.retry_selected)

    def cancel_view(self, request, object_id):
        return self._button(request, object_id, "cancel", self.cancel_selected)

    def _button(self, request, object_id, permission, action):
        """Run an action on one job from its page, then show the page again."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not getattr(self, f"has_{permission}_permission")(request):
            raise PermissionDenied
        job = self.get_object(request, object_id)
        if job is None:
            raise Http404("No such job.")
        action(request, Job.objects.filter(pk=job.pk))
        return redirect(reverse("admin:jobs_job_change", args=[job.pk]))

    def dashboard_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Queue dashboard",
            **dashboard.snapshot(),
        }
        fragment = request.GET.get("fragment") == "1"
        template = "admin/jobs/dashboard_body.html" if fragment else None
        return TemplateResponse(
            request, template or "admin/jobs/dashboard.html", context
        )
