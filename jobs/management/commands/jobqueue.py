import getpass
import socket

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from jobs.core import pausing
from jobs.exceptions import UnknownQueue


class Command(BaseCommand):
    help = (
        "Pause or resume a queue, or list the queues. A paused queue takes "
        "jobs; workers start none of them until it is resumed."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        pause = actions.add_parser("pause", help="Start no more jobs of a queue.")
        pause.add_argument("queue")
        resume = actions.add_parser("resume", help="Start its jobs again.")
        resume.add_argument("queue")
        actions.add_parser("list", help="Each queue: paused or not, waiting jobs.")

    def handle(self, *args, action, queue=None, **options):
        try:
            getattr(self, action)(queue)
        except UnknownQueue as e:
            raise CommandError(str(e)) from None
        except DatabaseError as e:
            raise CommandError(f"The database refused: {e}") from e

    def pause(self, queue):
        pause, created = pausing.pause(queue, by=who())
        if created:
            self.stdout.write(f"Paused queue {queue}.")
        else:
            self.stdout.write(f"Queue {queue} was already {described(pause)}.")

    def resume(self, queue):
        if pausing.resume(queue):
            self.stdout.write(f"Resumed queue {queue}.")
        else:
            self.stdout.write(f"Queue {queue} was not paused.")

    def list(self, queue):
        rows = [("queue", "state", "waiting")]
        for name, pause, waiting in pausing.overview():
            rows.append((name, described(pause), str(waiting)))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            self.stdout.write(
                f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}"
            )


def described(pause):
    """Say whether a queue is paused, since when and by whom."""
    if pause is None:
        return "running"
    since = f"{pause.paused_at:%Y-%m-%d %H:%M:%S}"
    return f"paused since {since} UTC by {pause.paused_by or 'someone'}"


def who():
    """Name the person pausing from a shell: user@host (manage.py)."""
    return f"{getpass.getuser()}@{socket.gethostname()} (manage.py)"
