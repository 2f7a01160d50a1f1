"""The job API: one job's state as JSON, and the admin's retry and cancel.

Answers are always JSON: 401 for anonymous callers (no login redirect), 403
without the permission, 404 for an unknown or malformed id.
"""

from functools import wraps
from uuid import UUID

from django.http import JsonResponse
from django.views.decorators.http import require_GET, require_POST

from ..core import interventions
from ..models import Job, JobStatus
from . import audit


def error(status, message):
    return JsonResponse({"error": message}, status=status)


def job_endpoint(permission):
    """Check the caller and its `jobs.<permission>`, then pass the job row."""

    def decorate(view):
        @wraps(view)
        def wrapper(request, job_id):
            if not request.user.is_authenticated:
                return error(401, "Sign in to read jobs.")
            if not request.user.has_perm(f"jobs.{permission}"):
                return error(403, f"You need the permission jobs.{permission}.")
            job = find_job(job_id)
            if job is None:
                return error(404, "No such job.")
            return view(request, job)

        return wrapper

    return decorate


def find_job(job_id):
    """Return the job `job_id`, or None when it is unknown or not an id."""
    try:
        return Job.objects.filter(pk=UUID(job_id)).first()
    except ValueError:
        return None


def job_json(job):
    """Describe a job for API callers (never a traceback)."""
    data = {
        "id": str(job.pk),
        "task": job.task_path,
        "queue": job.queue_name,
        "status": job.status,
        "progress": job.progress,
        "progress_message": job.progress_message,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "cancel_requested": job.cancel_requested,
    }
    for name in ("enqueued_at", "run_after", "started_at", "last_attempted_at"):
        data[name] = iso(getattr(job, name))
    data["finished_at"] = iso(job.finished_at)
    if job.status == JobStatus.SUCCESSFUL:
        data["return_value"] = job.return_value
    if job.status == JobStatus.FAILED and job.errors:
        last = job.errors[-1]
        data["error"] = {
            "class": last.get("exception_class_path", ""),
            "message": last.get("message", ""),
        }
    return data


def iso(moment):
    return moment.isoformat() if moment else None


@require_GET
@job_endpoint("view_job")
def job_detail(request, job):
    return JsonResponse(job_json(job))


@require_POST
@job_endpoint("retry_job")
def job_retry(request, job):
    held = {}
    moved = interventions.retry_jobs([job], held)
    audit.jobs_changed(request.user, moved, "Retried through the job API.")
    if not moved:
        if job.pk in held:
            return refused(
                request,
                job,
                f"Job {held[job.pk]} holds this job's unique key; "
                "retry it once that job has finished.",
            )
        return refused(request, job, "Only failed or cancelled jobs can be retried.")
    return changed(request, job)


@require_POST
@job_endpoint("cancel_job")
def job_cancel(request, job):
    cancelled, asked = interventions.cancel_jobs([job])
    audit.jobs_changed(request.user, cancelled, "Cancelled through the job API.")
    audit.jobs_changed(request.user, asked, "Asked to stop through the job API.")
    if not (cancelled or asked):
        return refused(
            request, job, "Only waiting, delayed or running jobs can be cancelled."
        )
    return changed(request, job)


def changed(request, job):
    return JsonResponse(with_job_if_viewable(request, job, {"changed": True}))


def refused(request, job, message):
    answer = {"changed": False, "error": message}
    return JsonResponse(with_job_if_viewable(request, job, answer), status=409)


def with_job_if_viewable(request, job, answer):
    """Add the job's state to `answer` only for a caller allowed to view it."""
    if request.user.has_perm("jobs.view_job"):
        job.refresh_from_db()
        answer["job"] = job_json(job)
    return answer
