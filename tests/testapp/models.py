from django.db import models


class Run(models.Model):
    """One row per run of a test task: a second run of a key breaks `unique`."""

    key = models.CharField(max_length=100, unique=True)
    attempt = models.PositiveIntegerField(default=0)
    pid = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.key
