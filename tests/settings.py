"""Settings for the test suite: the project's, plus a small app of test tasks.

Worker subprocesses started by the tests use these settings too.
"""

from config.settings import *  # noqa: F403
from config.settings import INSTALLED_APPS, TASKS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
TASKS = {"default": {**TASKS["default"], "QUEUES": ["default", "other"]}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
