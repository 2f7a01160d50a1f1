"""Our RQ worker classes, which `manage.py rqworker` runs (settings `RQ`).

They add what RQ does not know about: the priority bands, the scheduler
(for delays and retries) and our maintenance (rescue, re-dispatch). Name
them here, as settings and `--worker-class` do: `base` holds what both
share, `forking` and `simple` one class each.
"""

from .forking import JobsWorker
from .simple import JobsSimpleWorker

__all__ = ["JobsSimpleWorker", "JobsWorker"]
