from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.tasks import task_backends

from jobs import checks, conf
from jobs.core.postgres import check_prepared_statements
from jobs.dbworker.worker import Worker
from jobs.models import Job


class Command(BaseCommand):
    help = "Run jobs from the database queue until stopped (SIGTERM finishes them)."
    # Only the checks of what a worker runs (`jobs.checks`): the URLconf,
    # the admin and the models are checked by `manage.py check` and by the
    # release's `migrate`, and a worker does not load them.
    requires_system_checks = [checks.TAG]

    def add_arguments(self, parser):
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            help="Queue to take jobs from; repeat for several (default: all).",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            help="Jobs run at once (default: JOB_CONCURRENCY, 5).",
        )
        parser.add_argument(
            "--burst", action="store_true", help="Exit once no job is due."
        )
        parser.add_argument(
            "--max-jobs", type=int, help="Exit after running this many jobs."
        )
        parser.add_argument(
            "--backend", default="default", help="Alias in settings.TASKS."
        )

    def handle(self, *args, queues, concurrency, burst, max_jobs, backend, **opts):
        known = task_backends[backend].queues
        unknown = sorted(set(queues or ()) - known)
        if unknown:
            raise CommandError(
                f"Unknown queue(s) {', '.join(unknown)}; "
                f"configured queues: {', '.join(sorted(known))} (JOB_QUEUES)."
            )
        if concurrency is None:
            concurrency = conf.get("JOB_CONCURRENCY")
        if concurrency < 1:
            raise CommandError("--concurrency must be at least 1.")
        if max_jobs is not None and max_jobs < 1:
            raise CommandError("--max-jobs must be at least 1.")
        conf.check_database()
        try:
            check_prepared_statements(Job.objects.db)
        except ImproperlyConfigured as e:
            raise CommandError(str(e)) from None
        code = Worker(
            queues=queues,
            concurrency=concurrency,
            burst=burst,
            max_jobs=max_jobs,
            backend_alias=backend,
        ).run()
        if code:
            raise CommandError(
                "Job threads were stuck past their time limit; exiting so that "
                "the supervisor starts a fresh process.",
                returncode=code,
            )
