"""Where the Celery baseline's worker and the harness meet in Redis (plain
names: the harness's venv has no Celery)."""

EXPECTED_KEY = "bench:celery:expected"  # jobs the harness waits for
STAMPS_KEY = "bench:celery:stamps"  # count, first start, last finish
