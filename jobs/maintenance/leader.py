"""The leader lock: a named row with an expiry, so that one process at a time
runs a duty (the maintenance duties, under `MAINTENANCE`)."""

from django.db import IntegrityError, transaction
from django.db.models import Q

from ..core.guard import db_now_plus
from ..expressions import DatabaseNow
from ..models import LeaderLock

MAINTENANCE = "maintenance"


def take_leader_lock(name, holder, seconds):
    """Take or renew the named lock for `seconds`; True if `holder` has it.

    Expiry is read and written on the database's clock, as job leases are.
    """
    expires_at = db_now_plus(seconds)
    taken = LeaderLock.objects.filter(
        Q(expires_at__lt=DatabaseNow()) | Q(holder=holder), name=name
    ).update(holder=holder, expires_at=expires_at)
    if taken:
        return True
    try:
        with transaction.atomic(using=LeaderLock.objects.db):
            LeaderLock.objects.create(name=name, holder=holder, expires_at=expires_at)
    except IntegrityError:
        return False  # someone else holds it
    return True
