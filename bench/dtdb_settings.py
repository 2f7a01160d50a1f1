"""A minimal Django project for the django-tasks-db baseline.

Runs in the baselines' own virtualenv (`bench/.venv-baselines`), on its own
scratch database, with the same job functions (`bench.djtasks`).
"""

import os
from urllib.parse import urlsplit

_url = urlsplit(os.environ["DATABASE_URL"])

SECRET_KEY = "bench-baseline-not-a-secret"  # noqa: S105
DEBUG = False
ALLOWED_HOSTS = ["localhost"]
USE_TZ = True
INSTALLED_APPS = ["django_tasks_db"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.path.lstrip("/"),
        "USER": _url.username or "",
        "HOST": _url.hostname or "",
        "PORT": _url.port or 5432,
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
