"""The job functions every path runs: plain functions, no framework imports.

Raw RQ enqueues these directly; our system and django-tasks-db run them
through the `@task` wrappers in `bench.djtasks`.
"""

import time


def noop():
    """Do nothing: measures the queue's own cost per job."""


def sleep10ms():
    """Sleep 10 ms, like a job waiting on I/O."""
    time.sleep(0.01)
