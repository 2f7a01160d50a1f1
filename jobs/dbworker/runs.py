"""A job in a database worker's thread, and the time limits on its run."""

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from inspect import iscoroutinefunction

from .. import conf
from ..core import execution
from ..exceptions import JobTimeout
from ..upstream import raise_in_thread


@dataclass
class Running:
    """A job handed to a thread, and what the loop needs to stop it in time.

    A timeout has two limits, as Celery's soft and hard time limits. At the
    deadline the task function gets a JobTimeout (a BaseException, so an
    `except Exception:` in the task does not swallow it; asyncio cancels a
    coroutine task instead). A run still going JOB_TIMEOUT_GRACE_SECONDS
    later (it swallowed the JobTimeout, or is blocked in C) is ended by the
    loop: see `pool.Pool._abandon`.
    """

    job: object
    wake: object  # the loop's Wakeup, told of a new deadline
    thread: threading.Thread  # the job thread running it
    deadline: float | None = None  # monotonic: JobTimeout raised in the task
    hard_deadline: float | None = None  # monotonic: the loop ends the run
    timeout: float | None = None
    abandoned: bool = False  # ended by the loop; its outcome is dropped
    lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def deadline_guard(self, task):
        """Let the loop stop the task function once its timeout passes.

        Python code stops at its next bytecode; a call blocked in C (a long
        sleep, a socket read without a timeout) does not, and meets the hard
        limit. Coroutine tasks are cancelled by asyncio at the deadline.
        """
        timeout = getattr(task, "timeout", None)
        if not timeout:
            yield
            return
        now = time.monotonic()
        with self.lock:
            self.timeout = timeout
            if not iscoroutinefunction(task.func):
                self.deadline = now + timeout
            self.hard_deadline = now + timeout + conf.get("JOB_TIMEOUT_GRACE_SECONDS")
        self.wake.set()  # the loop's next wait must end by the deadline
        try:
            yield
        except JobTimeout:
            raise JobTimeout(execution.timeout_message(timeout)) from None
        finally:
            with self.lock:
                self.deadline = self.hard_deadline = None
                # Withdraw an interruption that was raised but not delivered.
                raise_in_thread(threading.get_ident(), None)

    def interrupt_if_late(self, now):
        """Raise JobTimeout in the task at its deadline, once."""
        with self.lock:
            if self.deadline and now >= self.deadline:
                self.deadline = None
                raise_in_thread(self.thread.ident, JobTimeout)

    def overdue(self, now):
        """Say whether the run outlived its deadline and grace."""
        with self.lock:
            return bool(self.hard_deadline) and now >= self.hard_deadline

    def deadlines(self):
        with self.lock:
            return [d for d in (self.deadline, self.hard_deadline) if d]
