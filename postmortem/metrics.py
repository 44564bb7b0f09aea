"""Metric series from training output, and the detectors that read them.

This first version reads Hugging Face Trainer / TRL dict lines (`{'loss': 0.43, 'epoch': 0.1}`,
values possibly quoted or non-finite) and runs the `non-finite` detector. Its findings are
`Evidence(kind="metric")` that signatures claim with `[match] metric = "<detector>"`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import regex

from .model import Evidence, LogLine

DICT_PAIR_RE = regex.compile(r"'(?P<key>[\w/.\-]+)':\s*'?(?P<value>-?(?:nan|inf|[\d.]+(?:e[+-]?\d+)?))'?", regex.I)
NON_FINITE_WATCHED = ("loss", "grad_norm", "eval_loss", "reward")


@dataclass
class MetricRow:
    step: int
    line_number: int
    values: dict[str, float]


@dataclass
class MetricCollector:
    rows: list[MetricRow] = field(default_factory=list)

    def feed(self, line: LogLine) -> None:
        text = line.text
        if not text.startswith("{'") or "':" not in text:
            return
        values = {}
        for pair in DICT_PAIR_RE.finditer(text):
            try:
                values[pair["key"]] = float(pair["value"])
            except ValueError:
                continue
        if values:
            self.rows.append(MetricRow(len(self.rows) + 1, line.number, values))

    def findings(self, source: str) -> list[Evidence]:
        return find_non_finite(self.rows, source)


def find_non_finite(rows: list[MetricRow], source: str) -> list[Evidence]:
    """The first row at which each watched metric stops being finite."""
    found = []
    for name in NON_FINITE_WATCHED:
        last_finite: MetricRow | None = None
        for index, row in enumerate(rows):
            value = row.values.get(name)
            if value is None:
                continue
            if math.isfinite(value):
                last_finite = row
                continue
            later = [r.values[name] for r in rows[index + 1:] if name in r.values]
            recovered = any(math.isfinite(v) for v in later)
            found.append(Evidence(
                kind="metric", text="non-finite", line_number=row.line_number, source=source,
                summary=f"{name} = {value} at logged step {row.step}",
                values={
                    "metric": name, "value": str(value), "step": str(row.step),
                    "last_finite": f"{last_finite.values[name]:.4g}" if last_finite else "?",
                    "last_finite_step": str(last_finite.step) if last_finite else "?",
                    "recovered": "yes" if recovered else "no",
                },
            ))
            break
    return found
