from django.db import models


class Run(models.Model):
    """One row per run of a test task: a second run of a key breaks `unique`."""

    key = models.CharField(max_length=100, unique=True)
    attempt = models.PositiveIntegerField(default=0)
    pid = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.key


class Span(models.Model):
    """When one run of a test task started and ended (`time.time()` of the
    worker, all on one host), to tell which runs overlapped."""

    name = models.CharField(max_length=100, unique=True)
    group = models.CharField(max_length=100, default="")
    started_at = models.FloatField()
    finished_at = models.FloatField(null=True)
    pid = models.PositiveIntegerField(default=0)

    def __str__(self):
        return self.name
