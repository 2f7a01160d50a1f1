"""Maintenance duties, run by the workers themselves, one process at a time.

Each duty is a small named function; `run_due_duties` runs them under a
shared lease so that with many workers only one does the work at a time.
"""

import logging
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from . import conf, execution
from .models import Lease

logger = logging.getLogger("jobs.maintenance")

LEASE_NAME = "maintenance"


def acquire_lease(name, holder, seconds):
    """Take or renew the named lease for `seconds`; True if `holder` has it."""
    now = timezone.now()
    expires_at = now + timedelta(seconds=seconds)
    taken = Lease.objects.filter(
        Q(expires_at__lt=now) | Q(holder=holder), name=name
    ).update(holder=holder, expires_at=expires_at)
    if taken:
        return True
    try:
        with transaction.atomic(using=Lease.objects.db):
            Lease.objects.create(name=name, holder=holder, expires_at=expires_at)
    except IntegrityError:
        return False  # someone else holds it
    return True


def rescue():
    """Put back jobs whose worker stopped heartbeating."""
    return execution.rescue_stalled()


DUTIES = [rescue]


def run_due_duties(holder):
    """Run every duty if this process holds the maintenance lease."""
    seconds = conf.get("JOB_MAINTENANCE_SECONDS") * 2
    if not acquire_lease(LEASE_NAME, holder, seconds):
        return False
    for duty in DUTIES:
        try:
            duty()
        except Exception:
            logger.exception("maintenance duty %s failed", duty.__name__)
    return True
