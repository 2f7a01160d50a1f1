"""/health: our checks as JSON, with warnings as "degraded" rather than errors.

The stock HealthCheckView answers 500 on any warning; Render restarts a
service whose health check fails, so here only a critical check that is down
(the database) answers 503.
"""

import asyncio

from django.http import JsonResponse
from health_check.exceptions import ServiceWarning
from health_check.views import HealthCheckView

from .checks import CHECKS

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
STATUS_CODES = {HEALTHY: 200, DEGRADED: 200, UNHEALTHY: 503}


def check_status(result):
    """Return the status of one check result."""
    if result.error is None:
        return HEALTHY
    return DEGRADED if isinstance(result.error, ServiceWarning) else UNHEALTHY


def overall_status(results):
    """Return the service's status: unhealthy only when a critical check is."""
    statuses = [(check_status(r), r.check.critical) for r in results]
    if any(status == UNHEALTHY and critical for status, critical in statuses):
        return UNHEALTHY
    return HEALTHY if all(s == HEALTHY for s, _ in statuses) else DEGRADED


def check_report(result):
    """Render one check result: status, latency in ms, message, details."""
    check = result.check
    report = {
        "status": check_status(result),
        "latency": round(result.time_taken * 1000),
        "message": result.error.message if result.error else check.message,
    }
    if check.details is not None:
        report["details"] = check.details
    return report


class HealthView(HealthCheckView):
    """Answer the health of the database, Redis and the queue as JSON."""

    checks = CHECKS

    async def get(self, request, *args, **kwargs):
        with self.get_executor() as executor:
            results = await asyncio.gather(
                *(check.get_result(executor) for check in self.get_checks())
            )
        status = overall_status(results)
        body = {
            "status": status,
            "checks": {r.check.name: check_report(r) for r in results},
        }
        return JsonResponse(body, status=STATUS_CODES[status])
