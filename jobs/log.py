"""One structured log line per job lifecycle event."""

import logging

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
