"""One structured log line per job lifecycle event; a batch's lines in one
write (`batched`, `StreamHandler`)."""

import logging
import threading
from contextlib import contextmanager

logger = logging.getLogger("jobs")


# The line of one event; its fields, in order, as `log_event` passes them.
MESSAGE = "job %s id=%s task=%s queue=%s attempt=%s/%s %s"


def log_enabled(level):
    return logger.isEnabledFor(level)


def log_event(event, job, level=logging.INFO, **extra):
    """Log one lifecycle event of a job as one line of key=value pairs.

    The same fields ride on the record as `record.job`, for LOG_FORMAT=json.
    The record is made here and handed to the logger's handlers as
    `logger.log` would, without looking up the caller: it would always be
    this function.
    """
    if not logger.isEnabledFor(level):
        return
    job_id = str(job.pk)
    fields = {
        "event": event,
        "id": job_id,
        "task": job.task_path,
        "queue": job.queue_name,
        "attempt": job.attempts,
        "max_attempts": job.max_attempts,
        **extra,
    }
    text = " ".join(f"{key}={value}" for key, value in extra.items())
    args = (
        event,
        job_id,
        job.task_path,
        job.queue_name,
        job.attempts,
        job.max_attempts,
        text,
    )
    record = logger.makeRecord(
        logger.name, level, __file__, 0, MESSAGE, args, None, extra={"job": fields}
    )
    logger.handle(record)


# The lines each `StreamHandler` holds for this thread's `batched` block.
_held = threading.local()


@contextmanager
def batched():
    """Hold what this thread logs through a `StreamHandler` until the block
    ends, then write it in one write per handler: recording a batch of jobs
    logs a line for each. A write is a system call, and each lets the job
    threads take the worker's GIL away from the thread that records."""
    if getattr(_held, "lines", None) is not None:  # in an enclosing block
        yield
        return
    _held.lines = {}
    try:
        yield
    finally:
        held, _held.lines = _held.lines, None
        for handler, lines in held.items():
            handler.write_held(lines)


class StreamHandler(logging.StreamHandler):
    """`logging.StreamHandler`, whose records logged in a `batched` block
    reach the stream together as the block ends (settings.LOGGING)."""

    def emit(self, record):
        held = getattr(_held, "lines", None)
        if held is None:
            return super().emit(record)
        try:
            held.setdefault(self, []).append(self.format(record) + self.terminator)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def write_held(self, lines):
        """Write `lines` at once; a failure is reported as `emit` reports
        one (logging never breaks the recording of jobs)."""
        try:
            with self.lock:
                self.stream.write("".join(lines))
                self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": lines[0].rstrip()}))
