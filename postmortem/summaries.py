"""What the draft shows of a metric series: a table of values, Unicode sparklines with the failure
step marked, and the points a plot needs (`MetricSummary`, built from a `metrics.Series`).

The sparkline is one character per bin of steps (the bin's mean): `▁▂▃▄▅▆▇█`, `×` for a bin that
holds a NaN/Inf, a log scale when the curve spans more than LOG_SCALE_RATIO, a flat line when it
moves less than SPARK_FLAT_SPAN of its size; a second line puts `^` under the marked step.
"""
from __future__ import annotations

import math

from . import detectors as det
from .detectors import EVAL, R_LINE, R_STEP, R_VALUES, role_of
from .model import MetricStat, MetricSummary, Sparkline

SPARK_WIDTH = 48
SPARK_CHARS = "▁▂▃▄▅▆▇█"
SPARK_NONFINITE = "×"
LOG_SCALE_RATIO = 100.0  # a curve spanning more than this is drawn on a log scale
SPARK_FLAT_SPAN = 0.02  # a curve moving less than this (relative) is drawn flat: noise is not shape
PLOT_POINTS = 2_000  # per metric, for `scan --plot`; non-finite points are always kept
SUMMARY_METRICS = 6  # rows of the table: loss, eval loss, reward, grad_norm, lr, and the failing one


def summarize(series, failure_row: tuple | None, failure_metric: str | None,
              label: str, label_zh: str) -> MetricSummary:
    names = []
    for role in ("loss", "eval_loss", "reward", "grad", "lr"):
        key = series.primary(role)
        if key is not None:
            names.append(key)
    if failure_metric and failure_metric not in names:
        names.insert(1, failure_metric)
    names = names[:SUMMARY_METRICS]
    rows = series.rows()
    stats = []
    for name in names:
        track = series.tracks[name]
        at_failure = failure_row[R_VALUES].get(name) if failure_row is not None else None
        stats.append(MetricStat(
            name=name, first=_table_value(track.first), min=_table_value(track.min if track.finite else None),
            max=_table_value(track.max if track.finite else None), last=_table_value(track.last_any),
            at_failure=_table_value(at_failure) if failure_row is not None else "",
        ))
    failure_step = failure_row[R_STEP] if failure_row is not None else None
    spark_names = [n for n in names if role_of(n) in ("loss", "eval_loss", "reward")
                   or (series.split == EVAL and "loss" in n)] or names[:1]
    if failure_metric and failure_metric not in spark_names:
        spark_names.append(failure_metric)
    sparklines = tuple(sparkline(name, [(r[R_STEP], r[R_VALUES][name]) for r in rows if name in r[R_VALUES]],
                                 failure_step) for name in spark_names)
    points = tuple(_plot_points(name, rows) for name in names)
    first, last = series.first_row[R_STEP], series.last_row[R_STEP]
    return MetricSummary(
        series=series.label, format=series.format, step_kind=series.step_kind,
        steps=f"{det.format_step(first)}–{det.format_step(last)}", rows=series.count,
        lines=f"{series.first_row[R_LINE]}–{series.last_row[R_LINE]}",
        failure_step=det.format_step(failure_step) if failure_step is not None else "",
        failure=label, failure_zh=label_zh or label, stats=tuple(stats), sparklines=sparklines,
        points=points,
    )


def _table_value(value: float | None) -> str:
    if value is None:
        return "–"
    if not math.isfinite(value):
        return det.format_value(value)
    return f"{value:.4g}"


def _plot_points(name: str, rows: list[tuple]) -> tuple[str, tuple[float, ...], tuple[float, ...]]:
    pairs = [(r[R_STEP], r[R_VALUES][name]) for r in rows if name in r[R_VALUES]]
    if len(pairs) > PLOT_POINTS:
        every = math.ceil(len(pairs) / PLOT_POINTS)
        pairs = [p for i, p in enumerate(pairs) if i % every == 0 or not math.isfinite(p[1])]
    return name, tuple(float(s) for s, _ in pairs), tuple(v for _, v in pairs)


def sparkline(name: str, points: list[tuple[float, float]], mark_step: float | None,
              width: int = SPARK_WIDTH) -> Sparkline:
    """A Unicode sparkline of a curve: one character per bin of steps (its mean), `×` for a bin
    holding a non-finite value, a log scale when the curve spans more than LOG_SCALE_RATIO; and a
    marker line with `^` under the bin of `mark_step`."""
    if not points:
        return Sparkline(name, "", "", False)
    width = max(1, min(width, len(points)))
    low_step, high_step = points[0][0], points[-1][0]
    span = (high_step - low_step) or 1.0
    bins: list[list[float]] = [[] for _ in range(width)]

    def bin_of(step: float) -> int:
        return min(width - 1, max(0, int((step - low_step) / span * width)))

    for step, value in points:
        bins[bin_of(step)].append(value)
    means: list[float | None] = []
    for values in bins:
        if not values:
            means.append(None)
        elif any(not math.isfinite(v) for v in values):
            means.append(math.nan)
        else:
            means.append(sum(values) / len(values))
    finite = [m for m in means if m is not None and math.isfinite(m)]
    log = bool(finite) and min(finite) > 0 and max(finite) / min(finite) > LOG_SCALE_RATIO
    scaled = [math.log10(m) if log and m is not None and math.isfinite(m) else m for m in means]
    finite_scaled = [m for m in scaled if m is not None and math.isfinite(m)]
    low = min(finite_scaled, default=0.0)
    high = max(finite_scaled, default=0.0)
    # a curve that moves less than SPARK_FLAT_SPAN of its size is drawn flat: noise is not shape
    flat = high - low <= SPARK_FLAT_SPAN * max(abs(high), abs(low)) if not log else high == low
    chars = []
    previous = " "
    for m in scaled:
        if m is None:
            chars.append(previous)  # an empty bin (steps not logged there): continue the curve
            continue
        if not math.isfinite(m):
            previous = SPARK_NONFINITE
        elif flat:
            previous = SPARK_CHARS[len(SPARK_CHARS) // 2]
        else:
            previous = SPARK_CHARS[round((m - low) / (high - low) * (len(SPARK_CHARS) - 1))]
        chars.append(previous)
    marker = ""
    if mark_step is not None and low_step <= mark_step <= high_step:
        marker = " " * bin_of(mark_step) + "^"
    return Sparkline(name, "".join(chars), marker, log)
