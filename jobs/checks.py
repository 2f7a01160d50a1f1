"""System checks (`manage.py check`, `migrate`, and `jobworker` as it
starts, which runs only these: tag `jobs`): a schedule of JOB_SCHEDULES that
cannot run is an error naming it."""

from django.core import checks

from .core import cron

TAG = "jobs"


@checks.register(TAG)
def check_schedules(app_configs, **kwargs):
    """Report each schedule whose keys, cron, time zone, task or options are
    wrong (ids jobs.E021 to jobs.E027)."""
    _, errors = cron.declared()
    return [
        checks.Error(str(error), id=error.check_id, obj="JOB_SCHEDULES")
        for error in errors
    ]
