"""How every benchmark prints: one line per figure, one line per correctness check.

The layout is fixed so that people can read it and the smoke test (tests/bench/) can parse it::

    == stream: ... ==
    pipeline (into the lake)              :      228,104 trades/s   target >= 100,000: met
    check all ids stored exactly once     : ok

A figure line is ``label : number unit``; a check line starts with ``check`` and ends in ``ok`` or
``FAILED``. Targets are reported on every run but only enforced at full size: a smoke run is too
small to time anything, while its checks still count.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

LABEL_WIDTH = 38
_COMPARE: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class Target:
    compare: str  # ">=" or "<="
    bound: float

    def met(self, value: float) -> bool:
        return _COMPARE[self.compare](value, self.bound)

    def __str__(self) -> str:
        bound = f"{self.bound:,.0f}" if self.bound == int(self.bound) else f"{self.bound:,.2f}"
        return f"target {self.compare} {bound}"


@dataclass(frozen=True)
class Figure:
    """One figure as printed, kept for bench/results.md (bench/results.py)."""

    benchmark: str  # the section's name: the title's first word
    label: str
    shown: str  # the number as printed, with its unit
    target: str  # "target >= 100,000: met", or "" when the figure has none
    note: str


@dataclass
class Report:
    """Prints one benchmark's section and remembers whether its targets and checks held."""

    title: str
    targets_met: bool = True
    checks_passed: bool = True
    _checks: int = field(default=0, repr=False)
    printed: ClassVar[list[Figure]] = []  # every figure of this process, in order, for the results file

    def __post_init__(self) -> None:
        print(f"\n== {self.title} ==", flush=True)

    @property
    def benchmark(self) -> str:
        return self.title.split(":", 1)[0]

    def figure(
        self, label: str, value: float, unit: str = "", digits: int = 0, target: Target | None = None, note: str = ""
    ) -> None:
        shown = f"{value:,.{digits}f} {unit}".rstrip()
        line = f"{label:<{LABEL_WIDTH}}: {value:>12,.{digits}f} {unit:<9}"
        judged = ""
        if target is not None:
            met = target.met(value)
            self.targets_met &= met
            judged = f"{target}: {'met' if met else 'MISSED'}"
            line += f"  {judged}"
        if note:
            line += f"  ({note})"
        print(line.rstrip(), flush=True)
        self.printed.append(Figure(self.benchmark, label, shown, judged, note))

    def check(self, label: str, ok: bool, detail: str = "") -> None:
        self._checks += 1
        self.checks_passed &= ok
        line = f"check {label:<{LABEL_WIDTH - 6}}: {'ok' if ok else 'FAILED'}"
        print(line + (f"  ({detail})" if detail else ""), flush=True)

    def passed(self, enforce_targets: bool) -> bool:
        """Every check held (and there was one), and, at full size, every target was met."""
        return self._checks > 0 and self.checks_passed and (self.targets_met or not enforce_targets)
