"""The targets of issue 20, section 1, checked over a soak's samples.

Per window, in every window after the first: completed >= 90% of offered;
backlog under 0.5 s of offered work; pickup p99 <= 100 ms, counted from the
enqueue's stamp and from its commit; overdue prunable
rows < 10% of the retained rows. Once: table + index size at the end <=
1.5x its size after two minutes.
"""

import math
from dataclasses import dataclass

TWO_MINUTES = 120.0  # seconds: the size every later one is held against


@dataclass(frozen=True)
class Target:
    """A limit on one value measured from a window (or from the whole run)."""

    key: str
    text: str
    op: str  # ">=", "<" or "<="
    limit: float

    def met(self, value):
        if value is None:
            return False
        if self.op == ">=":
            return value >= self.limit
        return value < self.limit if self.op == "<" else value <= self.limit


COMPLETED = Target("completed", "completed >= 90% of offered", ">=", 0.9)
BACKLOG = Target("backlog", "backlog < 0.5 s of offered work", "<", 0.5)
PICKUP = Target("pickup_p99", "pickup p99 <= 100 ms", "<=", 100.0)
# Pickup counted from when the enqueue had committed (`sample.PICKUP_SQL`).
VISIBLE = Target("visible_p99", "pickup p99 from commit <= 100 ms", "<=", 100.0)
OVERDUE = Target("overdue", "overdue prunable < 10% of retained", "<", 0.1)
SIZE = Target("size", "size at end <= 1.5x size after 2 min", "<=", 1.5)
PER_WINDOW = (COMPLETED, BACKLOG, PICKUP, VISIBLE, OVERDUE)


def measure(target, sample, rate):
    """The value `target` limits, in one window: a ratio, seconds or ms."""
    if target is COMPLETED:
        return sample.completed / sample.offered if sample.offered else 1.0
    if target is BACKLOG:
        return sample.backlog / rate  # seconds of offered work waiting
    if target in (PICKUP, VISIBLE):
        if sample.started == 0:  # nothing started: fine only if nothing came
            return 0.0 if sample.offered == 0 else None
        return sample.pickup_p99_ms if target is PICKUP else sample.visible_p99_ms
    if sample.retained == 0:
        return 0.0 if sample.overdue == 0 else math.inf
    return sample.overdue / sample.retained


def judge_windows(target, samples, rate):
    """PASS if every sample meets the target; the worst value and the misses."""
    values = [(s.elapsed, measure(target, s, rate)) for s in samples]
    if not values:
        return {"target": target.text, "pass": None, "worst": None, "missed": []}
    missed = [elapsed for elapsed, value in values if not target.met(value)]
    known = [value for _, value in values if value is not None]
    pick = min if target.op == ">=" else max
    return {
        "target": target.text,
        "pass": not missed,
        "worst": pick(known) if known else None,
        "windows": len(values),
        "missed": missed,
    }


def judge_size(samples):
    """The size at the end against the size at the first sample >= 2 min."""
    early = next((s for s in samples if s.elapsed >= TWO_MINUTES), None)
    if early is None or early is samples[-1]:
        return {"target": SIZE.text, "pass": None, "worst": None, "missed": []}
    ratio = samples[-1].total_bytes / early.total_bytes
    return {
        "target": SIZE.text,
        "pass": SIZE.met(ratio),
        "worst": ratio,
        "windows": 1,
        "missed": [] if SIZE.met(ratio) else [samples[-1].elapsed],
    }


def judge(samples, rate, after=None):
    """Every target over the windows after the first (and, with `after`,
    only those starting at least `after` seconds into the soak)."""
    windows = samples[1:]
    if after is not None:
        windows = [s for s in windows if s.elapsed - s.seconds >= after]
    verdicts = {t.key: judge_windows(t, windows, rate) for t in PER_WINDOW}
    if after is None:
        verdicts[SIZE.key] = judge_size(samples)
    return verdicts
