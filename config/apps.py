"""The admin, as the project installs it."""

from django.contrib.admin import autodiscover
from django.contrib.admin.apps import SimpleAdminConfig
from django.contrib.admin.checks import check_admin_app, check_dependencies
from django.core import checks


class AdminConfig(SimpleAdminConfig):
    """`django.contrib.admin` that imports the apps' `admin` modules when
    something needs them, not as Django starts: the URLconf (`config.urls`)
    and the admin's own system checks. A worker process never loads the
    admin pages, the job console or django-rq's dashboard."""

    def ready(self):
        checks.register(check_dependencies, checks.Tags.admin)
        checks.register(check_discovered_admin, checks.Tags.admin)


def check_discovered_admin(app_configs, **kwargs):
    """The admin's checks of every `ModelAdmin`, once all are registered."""
    autodiscover()
    return check_admin_app(app_configs, **kwargs)
