"""One soak: the worker and the producer run for the whole duration while
the monitor samples a window every `every` seconds."""

import time

from tests.services import wait_for

from ..log import log
from . import table
from .hold import LongTransaction
from .load import producer_result
from .sample import Monitor, retention_of
from .verdict import judge

SERVER_SETTINGS = ("server_version", "autovacuum", "shared_buffers", "max_connections")
PRODUCER_SLACK = 2.0  # seconds the producer runs past the last sample
FIRST_JOBS_SECONDS = 60  # the producer's start-up: interpreter, Django


class Soak:
    """Feed `load`'s worker `rate` no-ops/s for `minutes`, sampling as it goes."""

    def __init__(self, load, rate, minutes, every, hold=None):
        self.load = load
        self.rate = rate
        self.duration = minutes * 60
        self.every = every
        self.hold_at = hold  # (minute, seconds) or None
        self.samples = []
        self.hold = None
        self.producer = None
        self.server = {}
        self.worker_log = None

    def run(self):
        """Run the soak; return its samples, verdicts and side results."""
        worker = self.load.start_worker()
        self.worker_log = worker.log_path
        monitor = Monitor(self.load.database_url, retention_of(self.load.retention_ms))
        try:
            self.server = {name: monitor.setting(name) for name in SERVER_SETTINGS}
            self._feed_and_sample(worker, monitor)
            produced = self._producer_done()
        finally:
            if self.hold:
                self.hold.finish()
            if self.producer:
                self.producer.terminate()
            worker.terminate()
            monitor.close()
        return self.as_json(produced)

    def _feed_and_sample(self, worker, monitor):
        self.producer = self.load.start_producer(
            self.rate, self.duration + PRODUCER_SLACK
        )
        wait_for(
            lambda: self.producer.popen.poll() is not None or monitor.any_jobs(),
            FIRST_JOBS_SECONDS,
            "the producer's first jobs",
        )
        t0, started = monitor.now(), time.monotonic()
        if self.hold_at:
            self.hold = LongTransaction(self.load.database_url, started, *self.hold_at)
            self.hold.start()
        print(table.header(), flush=True)
        for k in range(1, max(1, round(self.duration / self.every)) + 1):
            time.sleep(max(0.0, started + k * self.every - time.monotonic()))
            for process, name in ((worker, "worker"), (self.producer, "producer")):
                if process.popen.poll() is not None:
                    raise RuntimeError(f"the {name} exited; log: {process.log_path}")
            sample = monitor.sample(t0, time.monotonic() - started)
            t0 = sample.window_end
            self.samples.append(sample)
            print(table.row(sample, self._held(sample)), flush=True)

    def _producer_done(self):
        """Let the producer finish its last ticks and read what it says."""
        try:
            self.producer.wait(timeout=PRODUCER_SLACK + 30)
        except TimeoutError:
            log("the producer was still enqueueing at the end: killed")
            return None
        return producer_result(self.producer)

    def _held(self, sample):
        """Whether the long transaction was open at some time in the window."""
        hold = self.hold
        if hold is None or hold.began is None:
            return False
        ended = hold.ended if hold.ended is not None else sample.elapsed
        return hold.began < sample.elapsed and ended > sample.elapsed - sample.seconds

    def as_json(self, produced=None):
        """Everything measured so far (all of it, once `run` has returned)."""
        result = {
            "rate": self.rate,
            "minutes": self.duration / 60,
            "server": self.server,
            "samples_every": self.every,
            "samples": [sample.as_json() for sample in self.samples],
            "verdicts": judge(self.samples, self.rate),
            "producer": produced,
            "worker_log": str(self.worker_log),
            "hold": self.hold.as_json() if self.hold else None,
        }
        if self.hold and self.hold.ended is not None:
            # Recovered to the targets within a minute of the transaction's end?
            after = self.hold.ended + 60
            result["verdicts_after_hold"] = judge(self.samples, self.rate, after)
        return result
