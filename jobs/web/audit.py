"""The audit log: who retried, cancelled, paused, resumed or ran what, and
when, written as Django admin `LogEntry` rows, so the admin's "Recent
actions" and each job's history page show them.

A job's entry points at its row; a queue's at `QueuePause` and a schedule's
at `ScheduleState`, by name (those rows come and go, the entries stay). Many
jobs at once (a bulk action's batch) are one INSERT.
"""

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType

from ..models import QueuePause, ScheduleState


def jobs_changed(user, jobs, message):
    """Record that `user` changed each of `jobs` (loaded rows): `message`."""
    if jobs:
        LogEntry.objects.log_actions(user.pk, jobs, CHANGE, message)


def queue_changed(user, queue_name, message):
    """Record that `user` paused or resumed the queue `queue_name`."""
    named_changed(user, QueuePause, queue_name, f"queue {queue_name}", message)


def schedule_changed(user, name, message):
    """Record that `user` paused, resumed or ran the schedule `name`."""
    named_changed(user, ScheduleState, name, f"schedule {name}", message)


def named_changed(user, model, name, text, message):
    LogEntry.objects.create(
        user_id=user.pk,
        content_type=ContentType.objects.get_for_model(model),
        object_id=name,
        object_repr=text[:200],
        action_flag=CHANGE,
        change_message=message,
    )
