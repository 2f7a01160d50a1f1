from django.contrib import admin

from .models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    """Read-only view of jobs (the full console comes with the admin issue)."""

    list_display = [
        "short_id",
        "task_name",
        "queue_name",
        "status",
        "priority",
        "attempts",
        "max_attempts",
        "progress",
        "enqueued_at",
        "finished_at",
    ]
    list_filter = ["status", "queue_name"]
    search_fields = ["task_path"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
