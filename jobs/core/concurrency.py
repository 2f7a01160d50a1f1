"""Concurrency keys: at most `concurrency_limit` jobs with the same key run
at once, across every worker of both kinds.

The number running is always counted from the rows (RUNNING with the key,
`jobs_job_running_key`), never kept in a counter, so a slot frees the moment
its job leaves RUNNING however it leaves (success, failure, rescue, release).
Claims of a key are serialized and count in a statement of their own
(`hot_path.claim_keyed`). This module holds the rest: the key of a call, and
which waiting jobs a freed slot lets run.
"""

import inspect
from string import Formatter

from django.tasks.exceptions import InvalidTask

from ..exceptions import InvalidTaskArguments
from ..expressions import DatabaseNow
from ..models import Job, JobStatus

KEY_LENGTH = Job._meta.get_field("concurrency_key").max_length


def template_names(template):
    """Return the argument names a key template formats, in order."""
    return [name for _, name, _, _ in Formatter().parse(template) if name is not None]


def validate(task):
    """Raise InvalidTask naming what is wrong with the concurrency options of
    `task` (its `@task(...)` or `.using(...)`)."""
    key, limit = task.concurrency_key, task.concurrency_limit
    if key is None and limit is None:
        return
    if limit is None:
        raise InvalidTask("concurrency_key needs a concurrency_limit.")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidTask(
            f"concurrency_limit must be a whole number of at least 1, not {limit!r}."
        )
    if key is None:
        return  # one key for the task: its path
    if not isinstance(key, str) or not key:
        raise InvalidTask(f"concurrency_key must be a non-empty string, not {key!r}.")
    try:
        names = template_names(key)
    except ValueError as e:
        raise InvalidTask(f"concurrency_key {key!r} is not a format string: {e}") from e
    for name in names:
        argument = name.partition(".")[0].partition("[")[0]
        if not argument.isidentifier():
            raise InvalidTask(
                f"concurrency_key {key!r} must name keyword arguments, "
                f"as {{customer_id}}, not {{{name}}}."
            )
        if not accepts(task.func, argument):
            raise InvalidTask(
                f"concurrency_key {key!r} names {argument!r}, which "
                f"{task.func.__qualname__} does not take."
            )


def accepts(func, name):
    """Say whether `func` takes a keyword argument `name`."""
    parameters = inspect.signature(func).parameters.values()
    return any(
        p.kind == p.VAR_KEYWORD
        or (p.name == name and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        for p in parameters
    )


def key_of(task, kwargs):
    """Return the concurrency key of a call of `task` with `kwargs` ("" for
    none), or raise InvalidTaskArguments naming what the call lacks."""
    if getattr(task, "concurrency_limit", None) is None:
        return ""
    template = task.concurrency_key
    if template is None:
        return task.module_path
    try:
        key = template.format_map(kwargs)
    except KeyError as e:
        raise InvalidTaskArguments(
            f"{task.module_path}: concurrency_key {template!r} names the keyword "
            f"argument {e.args[0]!r}, which this call does not pass."
        ) from None
    except (AttributeError, IndexError, TypeError, ValueError) as e:
        raise InvalidTaskArguments(
            f"{task.module_path}: concurrency_key {template!r} cannot be "
            f"formatted from this call's keyword arguments: {e}"
        ) from None
    if not key or len(key) > KEY_LENGTH:
        raise InvalidTaskArguments(
            f"{task.module_path}: concurrency_key {template!r} formats to {key!r}; "
            f"a key is 1 to {KEY_LENGTH} characters."
        )
    return key


def waiting_for(keys):
    """Return the due READY jobs of `keys` that their free slots let run next,
    in priority then enqueue order: for each key, as many as its next
    waiting job's limit leaves free beside its running jobs."""
    waiting = []
    for key in sorted(set(keys) - {""}):
        due = Job.objects.due(DatabaseNow()).filter(concurrency_key=key)
        due = due.order_by("-priority", "run_after")
        first = due.first()
        if first is None:
            continue
        running = Job.objects.filter(status=JobStatus.RUNNING, concurrency_key=key)
        free = first.concurrency_limit - running.count()
        waiting += list(due[:free]) if free > 0 else []
    return waiting
