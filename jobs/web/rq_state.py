"""What Redis holds about a job's current attempt, for the job page.

Never shows the Redis URL; Redis being down is a line of text, not an error.
"""

import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob

from .. import conf
from ..notify import link, rq_push


def describe(job):
    """Say what RQ knows of the job's current RQ job (`<id>-<attempts>`)."""
    if not conf.redis_enabled():
        return "Redis is off (database queue only)"
    rq_id = rq_push.rq_job_id(job)
    try:
        rq_job = RQJob.fetch(rq_id, connection=link.redis_link().client)
        status = rq_job.get_status(refresh=False)
    except NoSuchJobError:
        return f"{rq_id}: not in Redis"
    except redis.RedisError:
        return "Redis unreachable"
    status = getattr(status, "value", status)
    return f"{rq_id}: {status} on RQ queue {rq_job.origin}"
