"""Ring the doorbell: tell workers a row is waiting.

The row is the truth; nothing here is needed for a job to run eventually.
On PostgreSQL the first doorbell is NOTIFY, which is transactional: listeners
hear it only when the caller's transaction commits. With `REDIS_URL` set, the
job id is also pushed to RQ once the transaction commits. A push that fails
(Redis down) loses nothing: the row stays READY, `jobworker` can run it, and
the re-dispatcher pushes it again when Redis answers.
"""

import logging
from functools import partial

from django.db import transaction

from .. import conf
from ..models import Job, on_postgresql
from .listen import notify
from .pusher import pusher
from .rq_push import push, redis_enabled

logger = logging.getLogger("jobs.notify")


def ring(jobs, inserted=False):
    """Tell workers that `jobs` are READY: NOTIFY now, push to RQ on commit.

    `inserted`: the jobs were just inserted, and on PostgreSQL the INSERT's
    own trigger (migration 0004) sent the NOTIFY.
    """
    jobs = list(jobs)
    if not jobs:
        return
    db = Job.objects.db
    if on_postgresql() and not inserted:
        notify({job.queue_name for job in jobs}, db)
    if redis_enabled():
        send = pusher.submit if conf.get("JOB_REDIS_PUSH_IN_BACKGROUND") else push
        transaction.on_commit(partial(send, jobs), using=db)
