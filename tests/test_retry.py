"""The retry decision is pure: no database, no clock."""

from datetime import timedelta

import pytest

from jobs.exceptions import PermanentFailure
from jobs.retry import RetryPolicy, decide

POLICY = RetryPolicy(max_attempts=5, backoff_base=1.0, backoff_max=10.0, jitter=0.2)


@pytest.mark.parametrize(
    ("attempt", "expected"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)]
)
def test_delay__doubles_from_the_base(attempt, expected):
    assert POLICY.delay(attempt, rand=lambda: 0.5) == expected


def test_delay__jitter_stays_within_its_band():
    assert POLICY.delay(1, rand=lambda: 0.0) == pytest.approx(0.8)
    assert POLICY.delay(1, rand=lambda: 1.0) == pytest.approx(1.2)


def test_delay__is_capped():
    assert POLICY.delay(20, rand=lambda: 1.0) == 10.0


def test_decide__retries_while_attempts_remain():
    decision = decide(POLICY, 2, ValueError("boom"), rand=lambda: 0.5)

    assert not decision.gives_up
    assert decision.retry_in == timedelta(seconds=2)


def test_decide__gives_up_on_the_last_attempt():
    assert decide(POLICY, 5, ValueError("boom")).gives_up


def test_decide__gives_up_at_once_on_permanent_failure():
    assert decide(POLICY, 1, PermanentFailure("no")).gives_up
