"""Ring the doorbell: tell workers a row is waiting.

The row is the truth; nothing here is needed for a job to run eventually.
On PostgreSQL the first doorbell is NOTIFY, which listeners hear only once
the caller's transaction commits: sent in that transaction, or, for jobs
our enqueue just inserted, after it in a transaction of its own, from a
thread of the process (`notifier`). With `REDIS_URL` set, the
job id is also pushed to RQ once the transaction commits. A push that fails
(Redis down) loses nothing: the row stays READY, `jobworker` can run it, and
the re-dispatcher pushes it again when Redis answers.
"""

import logging
from functools import partial

from django.db import transaction

from .. import conf
from ..models import Job, on_postgresql
from .listen import notify, notify_committed
from .notifier import notifier

logger = logging.getLogger("jobs.notify")


def may_ring_now():
    """Whether an enqueue's INSERT may NOTIFY in the caller's transaction:
    not while this process's notifier has spent its NOTIFYs for now."""
    return not conf.get("JOB_NOTIFY_IN_BACKGROUND") or notifier.may_ring()


def ring(jobs, inserted=False, notified=False):
    """Tell workers that `jobs` are READY: NOTIFY, and push to RQ on commit.

    `inserted`: the jobs were just inserted by `hot_path.insert` or
    `insert_new`, whose INSERT skips the trigger's NOTIFY (`hot_path.MARK`):
    they are notified once the caller's transaction commits, outside it, by
    the notifier (`notifier.COOLDOWN`).
    `notified`: that INSERT sent the NOTIFY itself, in the caller's
    transaction (`hot_path.insert` says). Otherwise the NOTIFY is sent now,
    in the caller's transaction.
    """
    jobs = list(jobs)
    if not jobs:
        return
    db = Job.objects.db
    if notified:
        # The NOTIFY stands for every job of the queue submitted before now.
        covered = partial(notifier.rang, jobs[0].queue_name, db, notifier.submitted)
        transaction.on_commit(covered, using=db)
    elif on_postgresql():
        queues = {job.queue_name for job in jobs}
        if inserted:
            send = (
                notifier.submit
                if conf.get("JOB_NOTIFY_IN_BACKGROUND")
                else notify_committed
            )
            transaction.on_commit(partial(send, queues, db), using=db)
        else:
            notify(queues, db)
    if conf.redis_enabled():
        from .pusher import pusher  # Redis's modules load only with REDIS_URL
        from .rq_push import push

        send = pusher.submit if conf.get("JOB_REDIS_PUSH_IN_BACKGROUND") else push
        transaction.on_commit(partial(send, jobs), using=db)
