"""The long-transaction experiment: another session that, like an analytics
query, opens a REPEATABLE READ transaction, reads once (which takes its
snapshot) and sits there. No vacuum can remove a row deleted or updated
after that snapshot until it ends.
"""

import threading
import time

import psycopg
from psycopg import IsolationLevel

READ = "SELECT count(*) FROM jobs_job WHERE status = 'FAILED'"


def parse(text):
    """Read `AT_MIN:SECONDS` (minutes into the soak, seconds held)."""
    at, _, seconds = text.partition(":")
    try:
        return float(at), float(seconds)
    except ValueError:
        message = f"--hold-transaction wants AT_MIN:SECONDS, not {text!r}"
        raise ValueError(message) from None


class LongTransaction(threading.Thread):
    """Hold a snapshot from `at_minute` into the soak for `seconds`."""

    def __init__(self, url, started, at_minute, seconds):
        super().__init__(name="long-transaction", daemon=True)
        self.url = url
        self.started = started  # time.monotonic() when the soak began
        self.at = at_minute * 60
        self.seconds = seconds
        self.began = self.ended = None  # seconds into the soak
        self.error = None
        self._release = threading.Event()

    def run(self):
        if self._release.wait(max(0.0, self.started + self.at - time.monotonic())):
            return
        try:
            self._hold()
        except Exception as e:  # reported in the JSON; the soak goes on
            self.error = f"{type(e).__name__}: {e}"

    def _hold(self):
        with psycopg.connect(self.url) as conn:
            conn.isolation_level = IsolationLevel.REPEATABLE_READ
            conn.execute(READ).fetchone()  # BEGIN, then the snapshot is taken
            self.began = time.monotonic() - self.started
            self._release.wait(self.seconds)
            conn.commit()
            self.ended = time.monotonic() - self.started

    def finish(self):
        """End the transaction now if it is still open, and wait for it."""
        self._release.set()
        if self.is_alive():
            self.join(timeout=30)

    def as_json(self):
        return {
            "at_seconds": self.at,
            "seconds": self.seconds,
            "began": self.began,
            "ended": self.ended,
            "error": self.error,
        }
