"""Pause and resume queues from the queue dashboard, behind the permission
`jobs.pause_queue`; the writes are those of `jobs.core.pausing`."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import path, reverse

from ..core import pausing
from ..exceptions import UnknownQueue
from . import audit

PERMISSION = "jobs.pause_queue"


class QueuePauses:
    """The dashboard's Pause and Resume buttons: mixed into the job's ModelAdmin."""

    def has_pause_permission(self, request):
        return request.user.has_perm(PERMISSION)

    def pause_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "dashboard/queues/<str:queue_name>/pause/",
                view(self.pause_view),
                name="jobs_job_pause_queue",
            ),
            path(
                "dashboard/queues/<str:queue_name>/resume/",
                view(self.resume_view),
                name="jobs_job_resume_queue",
            ),
        ]

    def pause_view(self, request, queue_name):
        def pause():
            _, paused = pausing.pause(queue_name, by=request.user.get_username())
            if paused:
                audit.queue_changed(request.user, queue_name, "Paused.")
            return (
                f"Paused queue {queue_name}."
                if paused
                else (f"Queue {queue_name} was already paused.")
            )

        return self._pause_button(request, pause)

    def resume_view(self, request, queue_name):
        def resume():
            if pausing.resume(queue_name):
                audit.queue_changed(request.user, queue_name, "Resumed.")
                return f"Resumed queue {queue_name}."
            return f"Queue {queue_name} was not paused."

        return self._pause_button(request, resume)

    def _pause_button(self, request, change):
        """Pause or resume (POST only), say what happened, show the dashboard."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_pause_permission(request):
            raise PermissionDenied
        try:
            self.message_user(request, change(), messages.SUCCESS)
        except UnknownQueue as e:
            self.message_user(request, str(e), messages.ERROR)
        return redirect(reverse("admin:jobs_job_dashboard"))
