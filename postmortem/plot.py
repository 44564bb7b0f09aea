"""PNG plots of the metric curves behind an incident (`postmortem scan --plot DIR`).

matplotlib is an optional extra (`pip install 'postmortem[plot]'`): it is imported only here, only
when plots are asked for, with the non-interactive Agg backend (no display needed).
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path

from .model import Incident, MetricSummary, Report

INSTALL_HINT = "--plot needs matplotlib: pip install 'postmortem[plot]'"
MAX_PANELS = 4
FIGURE_WIDTH_INCHES = 8.0
PANEL_HEIGHT_INCHES = 2.2
DPI = 110
LOG_SCALE_RATIO = 100.0
UNSAFE_NAME_RE = re.compile(r"[^A-Za-z0-9._-]+")


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def check_plotting() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable(INSTALL_HINT) from None


def plot_report(report: Report, directory: str | os.PathLike, link_from: str | os.PathLike = ".") -> Report:
    """Draw one PNG per incident that has a metrics section; the Markdown links it relative to
    `link_from` (the folder the report is written to)."""
    check_plotting()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    incidents = []
    for incident in report.incidents:
        if incident.metrics is not None and incident.metrics.points:
            path = directory / plot_name(incident)
            draw_metrics(incident.metrics, path, f"{incident.signature}: {Path(incident.source).name}")
            link = os.path.relpath(path, start=link_from)
            incident = dataclasses.replace(incident, metrics=dataclasses.replace(incident.metrics, plot=link))
        incidents.append(incident)
    return dataclasses.replace(report, incidents=tuple(incidents))


def plot_name(incident: Incident) -> str:
    stem = UNSAFE_NAME_RE.sub("_", Path(incident.source).stem) or "log"
    return f"{stem}-{incident.signature}-{incident.fingerprint}.png"


def draw_metrics(summary: MetricSummary, path: Path, title: str) -> None:
    """One panel per metric (up to MAX_PANELS), steps on x, the marked step as a red line,
    non-finite values as red crosses along the top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in summary.points if p[1]][:MAX_PANELS]
    figure, axes = plt.subplots(len(panels), 1, sharex=True, squeeze=False,
                                figsize=(FIGURE_WIDTH_INCHES, PANEL_HEIGHT_INCHES * len(panels)))
    marked = float(summary.failure_step) if summary.failure_step else None
    for axis, (name, steps, values) in zip(axes[:, 0], panels):
        finite = [(s, v) for s, v in zip(steps, values) if math.isfinite(v)]
        bad = [s for s, v in zip(steps, values) if not math.isfinite(v)]
        if finite:
            axis.plot([s for s, _ in finite], [v for _, v in finite], linewidth=1.2)
            low = min(v for _, v in finite)
            high = max(v for _, v in finite)
            if low > 0 and high / low > LOG_SCALE_RATIO:
                axis.set_yscale("log")
        if bad:
            top = axis.get_ylim()[1]
            axis.scatter(bad, [top] * len(bad), marker="x", color="tab:red", label="NaN/Inf", zorder=3)
            axis.legend(loc="upper left", fontsize="small")
        if marked is not None:
            axis.axvline(marked, color="tab:red", linestyle="--", linewidth=1)
        axis.set_ylabel(name, fontsize="small")
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step" if summary.step_kind != "order" else "logged row")
    caption = title if marked is None else f"{title} (step {summary.failure_step}: {summary.failure})"
    axes[0, 0].set_title(caption, fontsize="medium")
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
