# ruff: noqa: N999 (django-rq names the command with a hyphen)
"""`manage.py rqworker-pool` without REDIS_URL: a clear error (see `rqworker`)."""

from ..redis_off import RedisOff


class Command(RedisOff):
    pass
