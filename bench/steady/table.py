"""The soak's printed output: one row per sample, then a line per target."""

COLUMNS = (
    ("t s", 6),
    ("offer/s", 8),
    ("done/s", 8),
    ("backlog", 8),
    ("p50 ms", 8),
    ("p99 ms", 8),
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
