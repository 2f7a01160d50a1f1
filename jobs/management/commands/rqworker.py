"""`manage.py rqworker` without REDIS_URL: a clear error.

With REDIS_URL set, django-rq's app is installed before this one, and its
`rqworker` is the command that runs (Django takes the first installed app's
command of a name); this one only answers when Redis is off.
"""

from ..redis_off import RedisOff


class Command(RedisOff):
    pass
