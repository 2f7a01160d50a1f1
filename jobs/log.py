"""One structured log line per job lifecycle event."""

import logging

logger = logging.getLogger("jobs")


def log_enabled(level):
    return logger.isEnabledFor(level)


def log_event(event, job, level=logging.INFO, **extra):
    """Log one lifecycle event of a job as one line of key=value pairs.

    The same fields ride on the record as `record.job`, for LOG_FORMAT=json.
    """
    if not logger.isEnabledFor(level):
        return
    fields = {
        "event": event,
        "id": str(job.pk),
        "task": job.task_path,
        "queue": job.queue_name,
        "attempt": job.attempts,
        "max_attempts": job.max_attempts,
        **extra,
    }
    text = " ".join(f"{key}={value}" for key, value in extra.items())
    logger.log(
        level,
        "job %s id=%s task=%s queue=%s attempt=%s/%s %s",
        event,
        job.pk,
        job.task_path,
        job.queue_name,
        job.attempts,
        job.max_attempts,
        text,
        extra={"job": fields},
    )
