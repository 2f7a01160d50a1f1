"""`manage.py health_check`: django-health-check's command, which this app
provides because that library's own app is not installed (`settings`)."""

from health_check.management.commands.health_check import Command

__all__ = ["Command"]
