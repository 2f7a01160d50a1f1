"""Settings for reporadar-jobs, all driven by environment variables.

Every variable is listed in README.md. The defaults run the whole system on a
laptop: SQLite in the project folder, no Redis, DEBUG on. Production sets
DJANGO_ENV=production (or DEBUG=0) and real values for SECRET_KEY and
ALLOWED_HOSTS.
"""

import json
import os
from importlib.util import find_spec
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from jobs.conf import DEFAULTS as JOB_DEFAULTS
from jobs.conf import rq_queues

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name, default):
    value = os.environ.get(name, "")
    items = [item.strip() for item in value.split(",") if item.strip()]
    return items or default


def env_int(name, default):
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be a whole number, not {value!r}."
        ) from None


def env_str(name, default):
    return os.environ.get(name, "").strip() or default


def env_json(name, default):
    value = os.environ.get(name, "")
    try:
        return json.loads(value) if value.strip() else default
    except ValueError as e:
        raise ImproperlyConfigured(f"{name} must be JSON: {e}.") from None


def env_float(name, default):
    value = os.environ.get(name, "")
    try:
        return float(value) if value.strip() else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}.") from None


DEV_SECRET_KEY = "django-insecure-dev-only-do-not-use-in-production"  # noqa: S105

DEBUG = env_bool("DEBUG", default=os.environ.get("DJANGO_ENV") != "production")
SECRET_KEY = os.environ.get("SECRET_KEY") or DEV_SECRET_KEY
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)
# Render names the service's public host in RENDER_EXTERNAL_HOSTNAME.
if render_host := os.environ.get("RENDER_EXTERNAL_HOSTNAME"):
    ALLOWED_HOSTS.append(render_host)

INSTALLED_APPS = [
    "config.apps.AdminConfig",  # the admin modules load with the URLconf
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Its index operator classes (the argument search's trigram indexes);
    # it changes nothing on SQLite.
    "django.contrib.postgres",
    # (django_rq, with REDIS_URL: below)
    "jobs",
    # Our checks, /health, and django-health-check's `manage.py health_check`
    # and page (/health/status/). Its own app is not installed: its package
    # imports dnspython, smtplib and Redis's client, which no worker needs.
    "healthcheck",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

# django-health-check's templates, found without importing its package.
HEALTH_CHECK_TEMPLATES = Path(find_spec("health_check").origin).parent / "templates"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates", HEALTH_CHECK_TEMPLATES],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, workers) share one file: WAL lets readers run
    # beside the writer, IMMEDIATE takes the write lock at BEGIN so two
    # transactions never deadlock upgrading, and the timeout waits for it.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests use a file, not memory, so worker subprocesses see the same rows.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test_db.sqlite3")}

if not DEBUG:
    # Behind Render's proxy: TLS ends at the proxy, which says so in a header.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^health$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Compressed files with content hashes in their names, served by whitenoise.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# The job system. django.tasks is the public API; jobs.backend persists rows.
JOB_QUEUES = env_list("JOB_QUEUES", ["default"])
TASKS = {
    "default": {
        "BACKEND": "jobs.backend.JobsBackend",
        "QUEUES": JOB_QUEUES,
    }
}
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    # `manage.py rqworker` and the RQ dashboard. Without Redis, no worker
    # loads Redis's or RQ's modules.
    INSTALLED_APPS.insert(INSTALLED_APPS.index("jobs"), "django_rq")
# With REDIS_URL set, each queue is pushed to RQ in three priority bands.
RQ_QUEUES = rq_queues(REDIS_URL, JOB_QUEUES) if REDIS_URL else {}
# Recurring jobs by name (README, "Recurring jobs"); JSON in the environment.
JOB_SCHEDULES = env_json("JOB_SCHEDULES", {})
RQ = {"WORKER_CLASS": "jobs.rqworker.workers.JobsWorker"}
# Every other JOB_* setting has its default in one table, jobs.conf.DEFAULTS;
# the environment overrides it, read as the default's type.
_readers = {bool: env_bool, int: env_int, float: env_float, str: env_str}
for _name, _default in JOB_DEFAULTS.items():
    globals()[_name] = _readers[type(_default)](_name, _default)

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "config.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "jobs.log.StreamHandler", "formatter": LOG_FORMAT},
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "jobs": {"level": LOG_LEVEL},
        # Our own "jobs" logger reports every lifecycle event; Django's task
        # logger would say the same again. Only its errors are kept.
        "django.tasks": {
            "level": "ERROR",
            "handlers": ["console"],
            "propagate": False,
        },
    },
}
