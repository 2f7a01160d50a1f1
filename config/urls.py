from django.contrib import admin
from django.urls import include, path
from health_check.views import HealthCheckView

from healthcheck.checks import CHECKS
from healthcheck.views import HealthView

admin.autodiscover()  # every app's `admin` module (`config.apps.AdminConfig`)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("jobs.web.urls")),
    # For Render and monitors: JSON, 503 only when the service cannot work.
    path("health", HealthView.as_view(), name="health"),
    # For people: django-health-check's page over the same checks.
    path(
        "health/status/", HealthCheckView.as_view(checks=CHECKS), name="health_status"
    ),
]
