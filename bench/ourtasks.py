"""Tasks with our own options, for the drains of unique and limited jobs.

Apart from `bench.djtasks` because django-tasks-db's Task takes none of
these options: only our system imports this module.
"""

from django.tasks import task

from bench import tasks

# Jobs of the limited drain spread over this many keys.
LIMITED_KEYS = 50


@task(queue_name="default", unique=True)
def noop_unique(n):
    tasks.noop()


@task(queue_name="default", concurrency_key="bench:{group}", concurrency_limit=2)
def noop_limited(group):
    tasks.noop()


def calls(name, jobs):
    """The `(args, kwargs)` of `jobs` calls of the task `name`: each unique
    job its own key; the limited ones over LIMITED_KEYS keys."""
    if name == "noop_unique":
        return [((), {"n": i}) for i in range(jobs)]
    return [((), {"group": i % LIMITED_KEYS}) for i in range(jobs)]
