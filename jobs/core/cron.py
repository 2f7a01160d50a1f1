"""Recurring jobs as JOB_SCHEDULES declares them: each schedule's cron in its
time zone, read by cronsim (never by hand), and when its times fall.

Daylight-saving changes behave as cronsim documents (Debian cron's rules):
a time of day in the skipped hour runs once, at the first minute after the
jump; a time of day in the repeated hour runs once, at its first pass; an
expression with `*` in its minute or hour field runs at every real instant
it names (none in the skipped hour, both passes of the repeated one).
"""

import difflib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from django.conf import settings
from django.tasks.exceptions import InvalidTask

from ..exceptions import TaskNotFound
from .tasks import resolve_task

logger = logging.getLogger("jobs.schedules")

KEYS = ("task", "cron", "timezone", "args", "kwargs", "queue", "priority", "catch_up")
REQUIRED = ("task", "cron")
NAME_LENGTH = 100  # ScheduleState.name, ScheduledRun.schedule


class ScheduleError(ValueError):
    """A schedule of JOB_SCHEDULES that cannot run; `check_id` names its
    system check (`manage.py check`)."""

    def __init__(self, check_id, message):
        super().__init__(message)
        self.check_id = check_id


@dataclass(frozen=True)
class CronSchedule:
    """One valid entry of JOB_SCHEDULES."""

    name: str
    task_path: str
    cron: str
    timezone: str
    args: tuple = ()
    kwargs: dict | None = None
    queue: str | None = None
    priority: int | None = None
    # Enqueue the latest missed time when workers come back (True), or only
    # a time noticed within JOB_SCHEDULE_GRACE_SECONDS of it (False).
    catch_up: bool = True

    @property
    def zone(self):
        return ZoneInfo(self.timezone)

    def latest_at_or_before(self, now):
        """Return the latest scheduled time at or before `now`, in UTC."""
        # cronsim steps back from its start first: start a second after now.
        start = (now.replace(microsecond=0) + timedelta(seconds=1)).astimezone(
            self.zone
        )
        return self._first(CronSim(self.cron, start, reverse=True))

    def next_after(self, now):
        """Return the first scheduled time after `now`, in UTC."""
        return self._first(CronSim(self.cron, now.astimezone(self.zone)))

    @staticmethod
    def _first(times):
        found = next(times, None)  # None: no time within cronsim's 50 years
        return found.astimezone(UTC) if found else None

    def describe(self):
        """Say the cron and time zone in words: "At 03:00 every day, UTC"."""
        now = datetime.now(self.zone)
        return f"{CronSim(self.cron, now).explain()}, {self.timezone}"

    def task(self):
        """Return the task to enqueue, with the schedule's queue and priority."""
        return resolve_task(self.task_path).using(
            queue_name=self.queue, priority=self.priority
        )

    def enqueue(self):
        """Enqueue one job of this schedule now; return its TaskResult."""
        return self.task().enqueue(*self.args, **(self.kwargs or {}))


def declared():
    """Read JOB_SCHEDULES: return (valid schedules, ScheduleErrors)."""
    setting = getattr(settings, "JOB_SCHEDULES", None) or {}
    if not isinstance(setting, dict):
        message = f"JOB_SCHEDULES must be a dict of schedules by name, not {setting!r}."
        return [], [ScheduleError("jobs.E021", message)]
    valid, errors = [], []
    for name, spec in setting.items():
        try:
            valid.append(parse(name, spec))
        except ScheduleError as e:
            errors.append(e)
    return valid, errors


_reported = set()


def runnable():
    """Return the valid schedules; log each invalid one once per process
    (`manage.py check` reports them before a worker starts)."""
    valid, errors = declared()
    for error in errors:
        if str(error) not in _reported:
            _reported.add(str(error))
            logger.error("schedule skipped: %s", error)
    return valid


def parse(name, spec):
    """Return the schedule `name` of JOB_SCHEDULES, or raise ScheduleError
    naming it and what is wrong."""
    where = f"JOB_SCHEDULES[{name!r}]"
    if not isinstance(name, str) or not 0 < len(name) <= NAME_LENGTH:
        raise ScheduleError("jobs.E021", f"{where}: a name is 1 to 100 characters.")
    if not isinstance(spec, dict):
        raise ScheduleError("jobs.E021", f"{where} must be a dict, not {spec!r}.")
    check_keys(where, spec)
    schedule = CronSchedule(
        name=name,
        task_path=spec["task"],
        cron=spec["cron"],
        timezone=spec.get("timezone", settings.TIME_ZONE),
        args=spec.get("args", ()),
        kwargs=spec.get("kwargs"),
        queue=spec.get("queue"),
        priority=spec.get("priority"),
        catch_up=spec.get("catch_up", True),
    )
    check_cron(where, schedule.cron)
    check_timezone(where, schedule.timezone)
    check_task(where, schedule)
    check_options(where, schedule)
    return schedule


def check_keys(where, spec):
    unknown = sorted(set(spec) - set(KEYS), key=str)
    if unknown:
        hints = [
            f"{key!r} (did you mean {close[0]!r}?)"
            if (close := difflib.get_close_matches(str(key), KEYS, n=1))
            else repr(key)
            for key in unknown
        ]
        raise ScheduleError(
            "jobs.E022",
            f"{where} has unknown keys {', '.join(hints)}; "
            f"the keys are {', '.join(KEYS)}.",
        )
    missing = [key for key in REQUIRED if key not in spec]
    if missing:
        raise ScheduleError("jobs.E023", f"{where} needs {' and '.join(missing)}.")


def check_cron(where, cron):
    try:
        CronSim(cron, datetime.now(UTC))
    except (CronSimError, AttributeError, TypeError) as e:
        raise ScheduleError(
            "jobs.E024", f"{where}: cron {cron!r} does not parse ({e})."
        ) from e


def check_timezone(where, name):
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as e:
        raise ScheduleError(
            "jobs.E025",
            f"{where}: time zone {name!r} is unknown; use an IANA name "
            "such as 'Europe/Berlin' or 'UTC'.",
        ) from e


def check_task(where, schedule):
    try:
        task = resolve_task(schedule.task_path)
    except TaskNotFound as e:
        raise ScheduleError("jobs.E026", f"{where}: {e}") from e
    except (AttributeError, TypeError, ValueError) as e:  # not a dotted path
        raise ScheduleError(
            "jobs.E026", f"{where}: task {schedule.task_path!r} is not a task path."
        ) from e
    try:
        task.using(queue_name=schedule.queue, priority=schedule.priority)
    except (InvalidTask, TypeError, ValueError) as e:
        raise ScheduleError(
            "jobs.E027",
            f"{where}: queue {schedule.queue!r} or priority "
            f"{schedule.priority!r} refused: {e}",
        ) from e


def check_options(where, schedule):
    if not isinstance(schedule.args, list | tuple):
        raise ScheduleError("jobs.E027", f"{where}: args must be a list.")
    if schedule.kwargs is not None and not isinstance(schedule.kwargs, dict):
        raise ScheduleError("jobs.E027", f"{where}: kwargs must be a dict.")
    if not isinstance(schedule.catch_up, bool):
        raise ScheduleError("jobs.E027", f"{where}: catch_up must be True or False.")
    try:
        json.dumps([schedule.args, schedule.kwargs], allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ScheduleError(
            "jobs.E027", f"{where}: args and kwargs must be JSON ({e})."
        ) from e
