"""One structured log line per job lifecycle event, as text or JSON."""

import json
import logging

import pytest

from config.logging import JsonFormatter
from tests.testapp import tasks

from .helpers import run_worker

pytestmark = pytest.mark.django_db(transaction=True)


def test_lifecycle_events__one_json_line_each_with_the_job_fields(caplog):
    with caplog.at_level(logging.DEBUG, logger="jobs"):
        ok = tasks.add.enqueue(1, 2)
        bad = tasks.always_fail.using(max_attempts=1).enqueue()
        run_worker()

    lines = [
        json.loads(JsonFormatter().format(record))
        for record in caplog.records
        if hasattr(record, "job")
    ]
    events = {(line["job"]["id"], line["job"]["event"]) for line in lines}
    assert {(ok.id, "enqueued"), (ok.id, "started"), (ok.id, "succeeded")} <= events
    # At INFO a job that succeeds at once is one line: its end, with a duration.
    info = [
        line["job"]["event"]
        for line in lines
        if line["job"]["id"] == ok.id and line["level"] != "DEBUG"
    ]
    assert info == ["succeeded"]
    assert (bad.id, "failed") in events
    succeeded = next(
        line["job"] for line in lines if line["job"]["event"] == "succeeded"
    )
    assert succeeded["task"] == "tests.testapp.tasks.add"
    assert succeeded["queue"] == "default"
    assert succeeded["attempt"] == 1
    assert succeeded["duration_ms"] >= 0
    failed = next(line for line in lines if line["job"]["event"] == "failed")
    assert failed["level"] == "WARNING"
    assert "ValueError: this task always fails" in failed["job"]["error"]


class Writes(list):
    """A stream that keeps each write."""

    def write(self, text):
        self.append(text)

    def flush(self):
        pass


def test_lines_logged_in_a_batch__reach_the_stream_together_as_it_ends():
    # Recording a batch of jobs logs a line for each (`recording.finish`).
    from jobs.log import StreamHandler, batched

    stream = Writes()
    logger = logging.getLogger("jobs.tests.batched")
    logger.addHandler(StreamHandler(stream))
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        with batched():
            for i in range(3):
                logger.info("line %s", i)
            during = list(stream)
        logger.info("after")
    finally:
        logger.handlers.clear()

    assert during == []
    assert stream == ["line 0\nline 1\nline 2\n", "after\n"]


class Broken(Writes):
    def write(self, text):
        raise OSError("the stream is gone")


def test_a_batch_the_stream_refuses__is_reported_and_the_block_goes_on(capsys):
    from jobs.log import StreamHandler, batched

    logger = logging.getLogger("jobs.tests.batched_broken")
    logger.addHandler(StreamHandler(Broken()))
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        with batched():  # raises nothing
            logger.info("lost line")
    finally:
        logger.handlers.clear()

    assert "the stream is gone" in capsys.readouterr().err
