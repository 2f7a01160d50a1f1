"""The project's URLs plus an enqueueing view (`pytest.mark.urls`)."""

from django.urls import path

from config.urls import urlpatterns as project_urls

from . import views

urlpatterns = [
    path("enqueue/<str:key>", views.enqueue_record_run),
    *project_urls,
]
