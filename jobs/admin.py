"""The job console, found by the admin's autodiscovery (`jobs.web.admin`)."""

from .web import admin  # noqa: F401 (registers the console's ModelAdmins)
