"""The process's Redis client for pushes, which backs off after a failure."""

import logging
import threading
import time
from functools import cache

import redis
from django.conf import settings
from redis.driver_info import DriverInfo

from .. import conf

logger = logging.getLogger("jobs.notify")


class RedisLink:
    """A Redis client with short timeouts that backs off after a failure.

    While Redis does not answer, enqueue must stay fast and the log readable:
    after a failure, pushes are skipped for `JOB_REDIS_RETRY_SECONDS`, and the
    outage is logged once as a warning, not once per job.
    """

    def __init__(self, url):
        self.client = redis.Redis.from_url(
            url,
            socket_connect_timeout=1,
            socket_timeout=2,
            health_check_interval=30,
            driver_info=driver_info(),
        )
        self.down_until = 0.0
        self.down = False
        self.lock = threading.Lock()

    def resting(self):
        return time.monotonic() < self.down_until

    def failed(self, error, count):
        retry = conf.get("JOB_REDIS_RETRY_SECONDS")
        with self.lock:
            self.down_until = time.monotonic() + retry
            first = not self.down
            self.down = True
        if first:
            logger.warning(
                "Redis is unreachable (%s): jobs stay in the database and run "
                "through jobworker or once Redis is back; %d not pushed",
                type(error).__name__,
                count,
            )

    def succeeded(self):
        if self.down:
            with self.lock:
                self.down = False
            logger.warning("Redis is reachable again; pushing jobs to RQ")


@cache
def driver_info():
    """redis-py's name and version for `CLIENT SETINFO`, read once.

    Without it, every new Redis connection reads redis-py's version from its
    package metadata, and an RQ work horse connects anew for every job.
    """
    return DriverInfo()


def share_driver_info(client):
    """Make the new connections of `client` use `driver_info()`."""
    client.connection_pool.connection_kwargs.setdefault("driver_info", driver_info())


_links = {}


def redis_link():
    """Return the process's link to `REDIS_URL` (one client per URL)."""
    url = settings.REDIS_URL
    if url not in _links:
        _links[url] = RedisLink(url)
    return _links[url]
