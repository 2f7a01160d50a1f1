"""The exchange between a database worker's loop and its job threads: the
loop is woken as seldom as it can be, and never too late."""

from types import SimpleNamespace

from jobs.dbworker.exchange import Exchange


def test_finished_runs__wake_the_loop_to_arm_its_timer_then_once_per_full_batch(
    monkeypatch,
):
    # Every wake is a write that costs the job thread its turn at the GIL.
    exchange = Exchange(concurrency=5, ack_batch=50)
    exchange.put([SimpleNamespace(pk=i) for i in range(120)], claimed_at=0.0)
    runs = [exchange.take() for _ in range(120)]
    exchange.arm([])  # nothing finished: the next run handed back wakes it
    woken_at = []
    monkeypatch.setattr(
        exchange.wake, "set", lambda: woken_at.append(len(exchange.finished))
    )

    for running in runs:
        exchange.hand_back(running, SimpleNamespace(job=running.job))

    assert woken_at == [1, 50]  # the loop collects nothing meanwhile


def test_a_batch_collected__the_next_full_one_wakes_the_loop_again(monkeypatch):
    exchange = Exchange(concurrency=5, ack_batch=50)
    exchange.put([SimpleNamespace(pk=i) for i in range(100)], claimed_at=0.0)
    runs = [exchange.take() for _ in range(100)]
    woken_at = []
    monkeypatch.setattr(
        exchange.wake, "set", lambda: woken_at.append(len(exchange.finished))
    )
    for running in runs[:50]:
        exchange.hand_back(running, SimpleNamespace(job=running.job))

    assert len(exchange.collect()) == 50
    for running in runs[50:]:
        exchange.hand_back(running, SimpleNamespace(job=running.job))

    assert woken_at == [1, 50, 50]
