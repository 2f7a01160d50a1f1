"""Settings of our system under benchmark: the project's, production-like.

`DATABASE_URL` and `REDIS_URL` come from the harness (scratch database,
private Redis). DEBUG is off (no query log); static files need no manifest
and nothing redirects to HTTPS, so the test client can render the admin.
"""

import os

os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret-" + "x" * 40)
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")

from config.settings import *  # noqa: E402, F403
from config.settings import STORAGES  # noqa: E402

ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
