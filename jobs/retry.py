"""The retry decision: a pure function of (exception, attempt, policy)."""

import random
from dataclasses import dataclass
from datetime import timedelta

from .exceptions import PermanentFailure


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff_base: float  # seconds before the second attempt
    backoff_max: float  # no delay is longer than this
    jitter: float = 0.2  # each delay is scaled by a random 1 +/- jitter

    def delay(self, attempt, rand=random.random):
        """Return the seconds to wait after failed attempt number `attempt`."""
        exponential = self.backoff_base * 2 ** (attempt - 1)
        scaled = exponential * (1 - self.jitter + 2 * self.jitter * rand())
        return min(self.backoff_max, scaled)


@dataclass(frozen=True)
class Decision:
    retry_in: timedelta | None  # None: give up, the job is FAILED

    @property
    def gives_up(self):
        return self.retry_in is None


def decide(policy, attempt, exception, rand=random.random):
    """Retry after `attempt` failed, or give up (permanent or out of attempts)."""
    if isinstance(exception, PermanentFailure) or attempt >= policy.max_attempts:
        return Decision(retry_in=None)
    return Decision(retry_in=timedelta(seconds=policy.delay(attempt, rand)))
