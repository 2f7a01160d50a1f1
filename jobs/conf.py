"""Job settings with their defaults, read when used (never at import time)."""

from django.conf import settings

DEFAULTS = {
    "JOB_CONCURRENCY": 5,
    "JOB_MAX_ATTEMPTS": 3,
    "JOB_BACKOFF_BASE_SECONDS": 1.0,
    "JOB_BACKOFF_MAX_SECONDS": 3600.0,
    "JOB_LEASE_SECONDS": 60.0,
    "JOB_POLL_SECONDS": 1.0,
    "JOB_MAINTENANCE_SECONDS": 10.0,
}


def get(name):
    """Return the setting `name`, or its default."""
    return getattr(settings, name, DEFAULTS[name])
