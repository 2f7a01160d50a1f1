"""Retry or cancel every job the job list's filters and search select, for the
console (`admin_bulk`): in the request up to `JOB_BULK_INLINE_MAX` jobs, else
in the background by `change_all_matching`, a job of our own queue whose
progress says how far it got.

Each batch's transitions and its audit entries (one per job, one INSERT) share
the batch's transaction (`core.bulk`).
"""

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.tasks import task

from .. import conf
from ..core import bulk
from ..exceptions import PermanentFailure
from . import audit
from .admin_filters import in_words, select


@dataclass(frozen=True)
class Action:
    verb: str  # "Retry"
    doing: str  # "Retrying"
    done: str  # "Retried"
    applies_to: object  # the jobs of a selection it applies to
    run: object  # core.bulk's function


ACTIONS = {
    "retry": Action("Retry", "Retrying", "Retried", bulk.retryable, bulk.retry_all),
    "cancel": Action(
        "Cancel", "Cancelling", "Cancelled", bulk.cancellable, bulk.cancel_all
    ),
}


def matching(action, params):
    """Select the jobs `action` would change among those `params` select."""
    return ACTIONS[action].applies_to(select(params))


def change_all(action, params, user, queryset=None, progress=None):
    """Apply `action` to every job `params` select (or `queryset`), in batches,
    recording each changed job for `user`; return the `core.bulk.Tally`."""
    queryset = select(params) if queryset is None else queryset
    note = f"all matching jobs ({in_words(params)}), in the console."

    def each_batch(changed, tally):
        if action == "cancel":
            cancelled, asked = changed
            audit.jobs_changed(user, cancelled, f"Cancelled with {note}")
            audit.jobs_changed(user, asked, f"Asked to stop with {note}")
        else:
            audit.jobs_changed(user, changed, f"Retried with {note}")
        if progress:
            progress(tally)

    return ACTIONS[action].run(queryset, conf.get("JOB_BULK_BATCH"), each_batch)


def describe(action, tally, params):
    """Say what a bulk action did, for a message or a job's progress."""
    text = f"{ACTIONS[action].done} {tally.changed:,} of {tally.seen:,} jobs"
    text += f" ({in_words(params)})."
    if tally.asked:
        text += f" Asked {tally.asked:,} running jobs to stop."
    if tally.refused:
        text += f" Not retried {tally.refused:,}: another job holds its unique key."
    if tally.skipped:
        text += f" Skipped {tally.skipped:,}: changed state meanwhile."
    return text


# One attempt: a run cut short is not repeated blindly (its progress says how
# far it got; the operator starts it again, and it skips what was done).
@task(takes_context=True, max_attempts=1)
def change_all_matching(context, action, params, user_id, expected):
    """Apply `action` ("retry", "cancel") to every job `params` select, as
    `user_id`; report progress against the `expected` count."""
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None or action not in ACTIONS:
        raise PermanentFailure("The user or the action no longer exists.")
    itself = context.job.pk  # "cancel all running jobs" leaves this one alone

    def progress(tally):
        percent = min(99, tally.seen * 100 // max(expected, 1))
        context.report_progress(percent, describe(action, tally, params)[:255])

    tally = change_all(
        action, params, user, select(params).exclude(pk=itself), progress
    )
    context.report_progress(100, describe(action, tally, params)[:255])
    return {**tally.__dict__, "message": describe(action, tally, params)}
