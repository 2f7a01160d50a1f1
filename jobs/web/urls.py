from django.urls import path

from . import metrics, views

app_name = "jobs"
urlpatterns = [
    path("metrics", metrics.metrics, name="metrics"),
    path("api/jobs/<str:job_id>", views.job_detail, name="job-detail"),
    path("api/jobs/<str:job_id>/retry", views.job_retry, name="job-retry"),
    path("api/jobs/<str:job_id>/cancel", views.job_cancel, name="job-cancel"),
]
