import gc

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401 (registers the system checks)

        resume_garbage_collector()


def resume_garbage_collector():
    """Turn the garbage collector back on, if `manage.py` paused it for
    start-up, and set aside (freeze) what start-up made: no collection
    walks those objects again, nor touches their pages in a forked process."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()
