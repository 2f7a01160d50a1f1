"""Retry and cancel from the job console: the list's actions and the job page's
buttons, each behind its own permission.

The only writes are the transitions of `jobs.core.interventions`; a message
says what moved and why the rest of the selection did not.
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import reverse

from ..core import interventions
from ..models import Job
from . import audit


class JobActions:
    """Retry and cancel jobs: mixed into the job's ModelAdmin."""

    def has_retry_permission(self, request, obj=None):
        return request.user.has_perm("jobs.retry_job")

    def has_cancel_permission(self, request, obj=None):
        return request.user.has_perm("jobs.cancel_job")

    @admin.action(description="Retry selected jobs", permissions=["retry"])
    def retry_selected(self, request, queryset):
        refused = {}
        moved = interventions.retry_jobs(queryset, refused)
        audit.jobs_changed(request.user, moved, "Retried in the console.")
        why = "only failed or cancelled jobs can be retried"
        text = f"Retried {plural(len(moved), 'job')}." + held_text(refused)
        text += skipped_text(queryset.exclude(pk__in=refused), moved, why)
        self.message_user(
            request, text, messages.SUCCESS if moved else messages.WARNING
        )

    @admin.action(description="Cancel selected jobs", permissions=["cancel"])
    def cancel_selected(self, request, queryset):
        cancelled, asked = interventions.cancel_jobs(queryset)
        audit.jobs_changed(request.user, cancelled, "Cancelled in the console.")
        audit.jobs_changed(request.user, asked, "Asked to stop in the console.")
        text = f"Cancelled {plural(len(cancelled), 'job')}."
        if asked:
            text += f" Asked {plural(len(asked), 'running job')} to stop."
        why = "only waiting, delayed or running jobs can be cancelled, once"
        text += skipped_text(queryset, [*cancelled, *asked], why)
        changed = cancelled or asked
        self.message_user(
            request, text, messages.SUCCESS if changed else messages.WARNING
        )

    # --- The job page's buttons -------------------------------------------

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


def plural(count, word):
    """Count a word: 1 job, 2 jobs."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def held_text(refused):
    """Say which jobs were not retried because another job holds their key."""
    if not refused:
        return ""
    holders = sorted({str(holder)[:8] for holder in refused.values() if holder})
    return (
        f" Not retried {plural(len(refused), 'job')}: another job holds its "
        f"unique key ({', '.join(holders) or 'it has just let go; try again'})."
    )


def skipped_text(queryset, moved, why):
    """Say how many selected jobs were left alone, by state, and why."""
    left = queryset.exclude(pk__in=[job.pk for job in moved])
    by_status = left.values("status").annotate(n=Count("pk")).order_by("status")
    parts = [f"{row['n']} {row['status'].lower()}" for row in by_status]
    if not parts:
        return ""
    total = sum(row["n"] for row in by_status)
    return f" Skipped {plural(total, 'job')} ({', '.join(parts)}): {why}."
