from django.core.management.base import BaseCommand

from jobs.maintenance import prune, tally


class Command(BaseCommand):
    help = (
        "Delete finished jobs older than JOB_CLEANUP_AGE (failed ones: "
        "JOB_FAILED_CLEANUP_AGE) that the metrics tally has counted. Workers do "
        "this on their own; this runs it now."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="Count, delete nothing."
        )
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, *args, dry_run, batch_size, **options):
        tally.advance_tally()  # only rows the tally counted are pruned
        if dry_run:
            count = prune.prunable().count()
            self.stdout.write(f"{count} finished jobs would be pruned (dry run)")
            return
        pruned = prune.prune(batch_size=batch_size, max_batches=10**9)
        self.stdout.write(f"pruned {pruned} finished jobs")
