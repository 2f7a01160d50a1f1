"""A view that enqueues, as an application's request would."""

from django.http import JsonResponse
from django.views.decorators.http import require_POST

from .tasks import record_run


@require_POST
def enqueue_record_run(request, key):
    result = record_run.enqueue(key)
    return JsonResponse({"id": result.id}, status=201)
