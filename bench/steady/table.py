"""The soak's printed output: one row per sample, then a line per target."""

from datetime import UTC, datetime

from .verdict import PICKUP

COLUMNS = (
    ("t s", 6),
    ("offer/s", 8),
    ("done/s", 8),
    ("backlog", 8),
    ("p50 ms", 8),
    ("p99 ms", 8),
    ("vis p99", 8),
    ("size MB", 8),
    ("idx MB", 7),
    ("dead", 9),
    ("live", 9),
    ("vac", 4),
    ("anl", 4),
    ("overdue", 8),
    ("retained", 9),
    ("load", 5),
)
MB = 1024 * 1024


def header():
    line = " ".join(f"{name:>{width}}" for name, width in COLUMNS)
    return f"{line}\n{'-' * len(line)}"


def row(sample, held=False):
    """One sample; `held` marks a window the long transaction overlapped."""
    s = sample
    cells = (
        f"{s.elapsed:.0f}{'H' if held else ''}",
        f"{s.offered / s.seconds:.0f}",
        f"{s.completed / s.seconds:.0f}",
        f"{s.backlog}",
        ms(s.pickup_p50_ms),
        ms(s.pickup_p99_ms),
        ms(s.visible_p99_ms),
        f"{s.total_bytes / MB:.1f}",
        f"{s.index_bytes / MB:.1f}",
        f"{s.dead_tuples}",
        f"{s.live_tuples}",
        f"{s.vacuums}",
        f"{s.analyzes}",
        f"{s.overdue}",
        f"{s.retained}",
        f"{s.load_average:.2f}",
    )
    return " ".join(
        f"{cell:>{width}}" for cell, (_, width) in zip(cells, COLUMNS, strict=True)
    )


def ms(value):
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def verdict_lines(verdicts):
    """`target  PASS|MISS  worst ...; missed in n of m windows`."""
    lines = []
    for verdict in verdicts.values():
        result = {True: "PASS", False: "MISS", None: "n/a"}[verdict["pass"]]
        detail = ""
        if verdict["worst"] is not None:
            detail = f"worst {verdict['worst']:.3g}"
        if verdict["missed"]:
            detail += f"; missed in {len(verdict['missed'])} of "
            detail += f"{verdict['windows']} windows"
        lines.append(f"  {verdict['target']:<40} {result:<5} {detail}")
    return lines


def slow_pickup_lines(run):
    """A line per window whose pickup p99 missed its target, naming the
    producer's enqueues in it that took longer than a tick: jobs wait from
    the time they were stamped, before their INSERT committed."""
    slow = (run.get("producer") or {}).get("slow_enqueues") or []
    lines = []
    for s in run["samples"][1:]:
        p99 = s.get("pickup_p99_ms")
        if p99 is None or p99 <= PICKUP.limit:
            continue
        start, end = (moment(s[key]) for key in ("window_start", "window_end"))
        inside = [
            f"{took * 1000:.0f} ms at {datetime.fromtimestamp(at, UTC):%H:%M:%S}"
            for at, took in slow
            if start <= at <= end
        ]
        cause = ", ".join(inside) if inside else "none"
        lines.append(
            f"  window t={s['elapsed']:.0f} s, p99 {p99:.0f} ms: "
            f"producer enqueues slower than a tick in it: {cause}"
        )
    return lines


def moment(value):
    """Seconds since the epoch of a datetime, or of one written as text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.timestamp()
