"""Log formats: `plain` lines for people, `json` lines for machines (Render)."""

import json
import logging


class JsonFormatter(logging.Formatter):
    """Format each record as one JSON object, with a job's fields if it has them."""

    def format(self, record):
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if job := getattr(record, "job", None):
            entry["job"] = job
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
