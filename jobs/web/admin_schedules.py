"""The console's schedules page: each schedule of JOB_SCHEDULES with its cron
in words, its next and last scheduled times and its last job; pause, resume
and run now, behind the permission `jobs.manage_schedule`.

The only writes are those of `jobs.maintenance.recurring`.
"""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from ..core import cron
from ..core.guard import database_now
from ..maintenance import recurring
from ..models import Job, ScheduledRun, ScheduleState
from . import audit

# Each button: what it does, and what the message says when it did not.
ACTIONS = {
    "pause": (recurring.pause, "Paused {name}.", "{name} was paused already."),
    "resume": (
        recurring.resume,
        "Resumed {name}: times missed while paused are not caught up.",
        "{name} was not paused.",
    ),
    "run": (recurring.run_now, "Enqueued a job of {name} now.", ""),
}


class ScheduleViews:
    """The schedules page and its buttons: mixed into the job's ModelAdmin."""

    def has_manage_schedule_permission(self, request):
        return request.user.has_perm("jobs.manage_schedule")

    def schedule_urls(self):
        view = self.admin_site.admin_view
        return [
            path("schedules/", view(self.schedules_view), name="jobs_job_schedules"),
            path(
                "schedules/<path:name>/<str:action>/",
                view(self.schedule_action_view),
                name="jobs_job_schedule_action",
            ),
        ]

    def schedules_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        valid, errors = cron.declared()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Schedules",
            "schedules": [self.schedule_row(s, database_now()) for s in valid],
            "errors": [str(error) for error in errors],
            "can_manage": self.has_manage_schedule_permission(request),
        }
        return TemplateResponse(request, "admin/jobs/schedules.html", context)

    def schedule_row(self, schedule, now):
        """What the page shows of one schedule."""
        state = ScheduleState.objects.filter(name=schedule.name).first()
        paused = bool(state and state.paused)
        last_run = (
            ScheduledRun.objects.filter(schedule=schedule.name)
            .order_by("-enqueued_at")
            .first()
        )
        job = last_run and Job.objects.filter(pk=last_run.job_id).first()
        return {
            "schedule": schedule,
            "described": schedule.describe(),
            "paused": paused,
            "next_at": None if paused else schedule.next_after(now),
            "last_at": recurring.latest_scheduled([schedule.name]).get(schedule.name),
            "last_run": last_run,
            "job": job,
            "job_badge": self.status_badge(job) if job else "",
        }

    def schedule_action_view(self, request, name, action):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_manage_schedule_permission(request):
            raise PermissionDenied
        if action not in ACTIONS:
            raise Http404("No such action.")
        do, done, not_done = ACTIONS[action]
        arguments = {"by": request.user.get_username()} if action == "run" else {}
        try:
            changed = do(name, **arguments)
        except LookupError as e:
            raise Http404(str(e)) from None
        if changed:
            message = done.format(name=name)
            job = f" Job {changed.job_id}." if action == "run" else ""
            audit.schedule_changed(request.user, name, message + job)
            self.message_user(request, message, messages.SUCCESS)
        else:
            self.message_user(request, not_done.format(name=name), messages.WARNING)
        return redirect(reverse("admin:jobs_job_schedules"))
