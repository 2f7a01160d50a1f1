"""The backend contract on the database queue (`jobworker`, no Redis)."""

import threading
from contextlib import contextmanager

import pytest
from django.db import connections

from jobs.worker import Worker

from .contract import BackendContract
from .helpers import run_worker


@pytest.mark.django_db(transaction=True)
class TestDatabaseQueue(BackendContract):
    def drain(self, queues=None):
        run_worker(queues=queues, concurrency=1)

    @contextmanager
    def background_worker(self):
        worker = Worker(concurrency=2, install_signals=False)

        def run():
            try:
                worker.run()
            finally:
                connections.close_all()

        thread = threading.Thread(target=run)
        thread.start()
        try:
            yield worker
        finally:
            worker.stop()
            thread.join(timeout=20)
            assert not thread.is_alive(), "worker did not stop"
