"""django-rq's worker commands, as they answer while REDIS_URL is not set."""

from django.core.management.base import BaseCommand, CommandError


class RedisOff(BaseCommand):
    """Refuse to run: RQ's workers need Redis, and without REDIS_URL
    django-rq's app, whose command this stands for, is not installed
    (`config.settings`)."""

    help = "Needs REDIS_URL (django-rq's command, installed with Redis)."
    requires_system_checks = []

    def run_from_argv(self, argv):
        # Whatever options django-rq's command takes, the answer is the same.
        self.name = argv[1]
        super().run_from_argv(argv[:2])

    def handle(self, *args, **options):
        name = getattr(self, "name", "rqworker")
        raise CommandError(
            f"REDIS_URL is not set: {name} runs RQ's workers, which need Redis. "
            "Set REDIS_URL, or run `manage.py jobworker` (the database queue)."
        )
