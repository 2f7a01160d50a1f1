import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from jobs.examples import enqueue_examples


class Command(BaseCommand):
    help = (
        "Run the whole system locally: migrate, enqueue example jobs, then the "
        "web server and a database worker together until Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument("--addrport", default="127.0.0.1:8000")
        parser.add_argument(
            "--no-examples", action="store_true", help="Enqueue no example jobs."
        )

    def handle(self, *args, addrport, no_examples, **options):
        call_command("migrate", interactive=False, verbosity=0)
        self._ensure_dev_admin()
        if not no_examples:
            for result in enqueue_examples():
                self.stdout.write(f"enqueued {result.task.name} {result.id}")
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        children = [
            subprocess.Popen([*manage, "jobworker"], start_new_session=True),  # noqa: S603
            subprocess.Popen(  # noqa: S603
                [*manage, "runserver", addrport, "--noreload"], start_new_session=True
            ),
        ]
        self.stdout.write(
            f"web on http://{addrport}/admin/ (admin / admin), worker running. "
            "Ctrl-C stops both; running jobs finish first."
        )
        self._wait(children)

    def _ensure_dev_admin(self):
        if not settings.DEBUG:
            return
        users = get_user_model().objects
        if not users.exists():
            users.create_superuser("admin", "admin@example.org", "admin")  # noqa: S106

    def _wait(self, children):
        """Stop both children on Ctrl-C or SIGTERM, and the other when one
        exits. Each stop is a SIGTERM: a child may ignore SIGINT (inherited
        from a shell's background job), and the worker takes SIGTERM as
        Ctrl-C. A child is not told twice unless a signal comes twice: a
        second one makes the worker put its running jobs back."""
        signalled = []

        def stop(signum=None, frame=None):
            signalled.append(signum)
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while all(child.poll() is None for child in children):
            time.sleep(0.2)
        if not signalled:
            stop()
        for child in children:
            child.wait()
        os._exit(max(child.returncode or 0 for child in children))
