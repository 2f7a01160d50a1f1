"""Settings for the test suite: the project's, plus a small app of test tasks.

Worker subprocesses started by the tests use these settings too.
"""

import sys

from config.settings import *  # noqa: F403
from config.settings import INSTALLED_APPS, REDIS_URL, TASKS
from jobs.conf import rq_queues

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
# The test process turns Redis on per test (`redis_dispatch`), after these
# settings are read: it has django_rq's app whatever REDIS_URL says, where
# `config.settings` puts it with Redis. A worker it starts reads REDIS_URL
# from its environment, as in production.
TESTING = "pytest" in sys.modules
if TESTING and "django_rq" not in INSTALLED_APPS:
    INSTALLED_APPS.insert(INSTALLED_APPS.index("jobs"), "django_rq")
JOB_QUEUES = ["default", "other"]
TASKS = {"default": {**TASKS["default"], "QUEUES": JOB_QUEUES}}
RQ_QUEUES = rq_queues(REDIS_URL, JOB_QUEUES) if REDIS_URL else {}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# A fresh clone has no collectstatic output: serve static files from the apps,
# as in development, rather than warn on every request that it is missing.
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
