"""`django.tasks` wrappers of `bench.tasks`, for our system and django-tasks-db.

The same module serves both: `@task` binds to whichever backend the running
settings call "default" (`jobs.backend.JobsBackend` or django-tasks-db's).
"""

from django.tasks import task

from bench import tasks


@task(queue_name="default")
def noop():
    tasks.noop()


@task(queue_name="default")
def sleep10ms():
    tasks.sleep10ms()
