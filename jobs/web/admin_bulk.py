"""The console's filter-wide actions: "Retry all N matching jobs" and "Cancel
all N matching jobs" act on everything the job list's current filters and
search select, not only its page. A GET shows the confirmation page with the
exact count and the filter in words; its POST (with the CSRF token) acts,
behind the same permissions as the single-job actions.

Up to `JOB_BULK_INLINE_MAX` jobs are changed in the request; more by a job
in the background (`bulk.change_all_matching`), whose page shows its progress.
"""

from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from .. import conf
from . import audit, bulk
from .admin_filters import SELECTING, in_words


class BulkActions:
    """Retry or cancel all matching jobs: mixed into the job's ModelAdmin."""

    def bulk_urls(self):
        view = self.admin_site.admin_view
        return [path("bulk/<str:action>/", view(self.bulk_view), name="jobs_job_bulk")]

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_retry_all": self.has_retry_permission(request),
            "can_cancel_all": self.has_cancel_permission(request),
            "selecting": urlencode(selecting(request.GET)),
        }
        return super().changelist_view(request, extra_context)

    def bulk_view(self, request, action):
        if action not in bulk.ACTIONS:
            raise Http404("No such action.")
        if not getattr(self, f"has_{action}_permission")(request):
            raise PermissionDenied
        params = selecting(request.GET)
        count = bulk.matching(action, params).count()
        if request.method == "POST":
            return self._bulk_act(request, action, params, count)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{bulk.ACTIONS[action].verb} all matching jobs?",
            "action": bulk.ACTIONS[action],
            "count": count,
            "count_text": f"{count:,}",
            "in_words": in_words(params),
            "selecting": urlencode(params),
            "in_background": count > conf.get("JOB_BULK_INLINE_MAX"),
        }
        return TemplateResponse(request, "admin/jobs/job/bulk_confirm.html", context)

    def _bulk_act(self, request, action, params, count):
        """Change the jobs now, or start the background job for many."""
        if count > conf.get("JOB_BULK_INLINE_MAX"):
            result = bulk.change_all_matching.enqueue(
                action=action, params=params, user_id=request.user.pk, expected=count
            )
            job = self.get_object(request, result.id)
            what = f"{bulk.ACTIONS[action].verb} all {count:,} matching jobs"
            audit.jobs_changed(
                request.user, [job], f"Started: {what.lower()} ({in_words(params)})."
            )
            link = reverse("admin:jobs_job_change", args=[job.pk])
            self.message_user(
                request,
                format_html(
                    '{} {} jobs in the background: <a href="{}">job {}</a>.',
                    bulk.ACTIONS[action].doing,
                    f"{count:,}",
                    link,
                    job.short_id,
                ),
                messages.SUCCESS,
            )
            return redirect(link)
        tally = bulk.change_all(action, params, request.user)
        changed = tally.changed or tally.asked
        self.message_user(
            request,
            bulk.describe(action, tally, params),
            messages.SUCCESS if changed else messages.WARNING,
        )
        return redirect(reverse("admin:jobs_job_changelist") + "?" + urlencode(params))


def selecting(query):
    """The job list's parameters that choose its jobs, from `query`."""
    return {name: query[name] for name in SELECTING if query.get(name)}
