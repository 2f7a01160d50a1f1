"""Figures, their baselines and targets, the printed table and the JSON."""

import json
import math
import statistics
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    """A goal for a figure's median: absolute (`value`), against its baseline,
    or against another figure (`against`)."""

    op: str  # ">=" or "<="
    value: float
    relative: bool = False  # True: `value` times the baseline's median
    against: str | None = None  # relative to this figure, not the baseline

    def met(self, median, baseline_median):
        goal = self.value
        if self.relative:
            if baseline_median is None:
                return None
            goal *= baseline_median
        return median >= goal if self.op == ">=" else median <= goal

    def __str__(self):
        against = f" {self.against.split('.', 1)[1]}" if self.against else ""
        return f"{self.op}{self.value:g}{'x' if self.relative else ''}{against}"


def at_least(value, relative=False, against=None):
    """Aim for a median of at least `value` (times the baseline's if relative,
    or times the median of the figure `against`)."""
    return Target(">=", value, relative or against is not None, against)


def at_most(value):
    """Aim for a median of at most `value`."""
    return Target("<=", value)


@dataclass
class Figure:
    name: str
    unit: str  # "jobs/s" (higher is better) or "ms" (lower is better)
    baseline: str | None = None
    targets: tuple = ()
    values: list = field(default_factory=list)
    note: str = ""

    def stats(self):
        if not self.values:
            return None
        return {
            "min": min(self.values),
            "median": statistics.median(self.values),
            "max": max(self.values),
        }


def percentile(values, fraction):
    """The nearest-rank percentile of `values` (0 < fraction <= 1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


class Report:
    def __init__(self):
        self.figures = {}
        self.errors = []
        self.details = {}  # per run: job counts, drain wall times

    def define(self, name, unit, baseline=None, targets=()):
        self.figures[name] = Figure(name, unit, baseline, tuple(targets))

    def add(self, name, value):
        self.figures[name].values.append(value)

    def detail(self, name, **values):
        self.details.setdefault(name, []).append(values)

    def note(self, name, text):
        self.figures[name].note = text

    def error(self, names, message):
        self.errors.append({"figures": list(names), "error": message})
        for name in names:
            self.figures[name].note = f"error: {message[:60]}"

    def _median(self, name):
        figure = self.figures.get(name)
        stats = figure.stats() if figure else None
        return stats["median"] if stats else None

    def _base_of(self, target, base):
        return self._median(target.against) if target.against else base

    def _ratio(self, stats, name):
        base = self._median(name)
        return stats["median"] / base if stats and base else None

    def evaluate(self, figure):
        stats = figure.stats()
        base = self._median(figure.baseline) if figure.baseline else None
        ratio = stats["median"] / base if stats and base else None
        verdicts = [
            target.met(stats["median"], self._base_of(target, base)) if stats else None
            for target in figure.targets
        ]
        others = [t.against for t in figure.targets if t.against]
        passed = None
        if figure.targets and all(v is not None for v in verdicts):
            passed = all(verdicts)
        return {
            "unit": figure.unit,
            "values": figure.values,
            **(stats or {"min": None, "median": None, "max": None}),
            "baseline": figure.baseline,
            "baseline_median": base,
            "ratio": ratio,
            # ratios of medians against the figures named by targets
            "ratios": {name: self._ratio(stats, name) for name in others},
            "targets": [str(t) for t in figure.targets],
            "pass": passed,
            "note": figure.note,
        }

    def as_json(self, meta):
        return {
            "meta": meta,
            "figures": {
                name: self.evaluate(figure) for name, figure in self.figures.items()
            },
            "errors": self.errors,
            "runs": self.details,
        }

    def write_json(self, path, meta):
        with open(path, "w") as out:
            json.dump(self.as_json(meta), out, indent=2, default=str)
            out.write("\n")

    def table(self):
        header = (
            f"{'figure':<{WIDTH}} {'unit':>6} {'min':>9} {'median':>9} {'max':>9} "
            f"{'baseline':>9} {'ratio':>7}  {'target':<14} result"
        )
        lines = [header, "-" * len(header)]
        for name, figure in self.figures.items():
            row = self.evaluate(figure)
            verdict = {True: "PASS", False: "MISS", None: ""}[row["pass"]]
            if figure.note and row["median"] is None:
                verdict = figure.note
            lines.append(
                f"{name:<{WIDTH}} {row['unit']:>6} {fmt(row['min'])} "
                f"{fmt(row['median'])} {fmt(row['max'])} "
                f"{fmt(row['baseline_median'])} {fmt(row['ratio'], ratio=True)}  "
                f"{targets_text(figure, row):<14} {verdict}"
            )
        return "\n".join(lines)


WIDTH = 40  # of the figure column: the longest names end in `.1w.cold`


def targets_text(figure, row):
    """The targets, each against another figure followed by that ratio."""
    texts = []
    for target, text in zip(figure.targets, row["targets"], strict=True):
        ratio = row["ratios"].get(target.against)
        texts.append(f"{text} ({ratio:.2f}x)" if ratio is not None else text)
    return " ".join(texts)


def fmt(value, ratio=False):
    if value is None:
        return f"{'-':>7}" if ratio else f"{'-':>9}"
    if ratio:
        return f"{value:>6.3f}x" if value < 0.1 else f"{value:>6.2f}x"
    if value >= 100:
        return f"{value:>9.0f}"
    return f"{value:>9.2f}"
