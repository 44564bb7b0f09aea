"""Detectors over metric series: where a run's numbers went wrong, as `Evidence(kind="metric")`.

Each detector has a name that a signature claims with `[match] metric = "<name>"`:

    non-finite   a watched metric (any loss, the reward, grad_norm) became NaN or Inf: the first step,
                 the last finite value and its step, and whether it was finite again later
    divergence   the loss climbed to `factor` x its running minimum, and above its first value, with
                 no NaN after it (a rise that ends in NaN is told by `non-finite`, which then says how
                 far the loss had climbed: one incident for one failure); or (a bounded loss, which
                 cannot climb x100) the smoothed training loss fell to half its start, climbed back
                 `rebound` (0.8) of the way and stayed up
    zero-reward  an RL run whose reward, loss and grad_norm are all exactly 0 for at least
                 `min_steps` leading steps and that never broke out, or broke out only after
                 `worry_steps` (a cold start that ends sooner is how GRPO starts on a hard task)
    flat-loss    the loss did not move (its first and last quarter means differ by at most
                 `max_change`, relative) while grad_norm was 0 at every step, or, when no grad_norm is
                 logged, while PEFT reported `trainable params: 0`; or the loss was the same number to
                 about seven significant digits at every logged step
    grad-spike   grad_norm jumped to `factor` x the median of its previous `window` values (after
                 `min_history` values), with no NaN after it (else `non-finite` tells it)
    lr-anomaly   the learning rate was 0 at every logged step, or was still rising when the run
                 finished (warmup longer than the run)

Thresholds are the named constants below. They are overridden, in this order, by a signature's
`[match] thresholds = {factor = 1000}` (a personal copy of the signature in the user's patterns
folder) and by the environment: `POSTMORTEM_THRESHOLDS="divergence.factor=1000,zero-reward.worry_steps=200"`.
Every finding carries its thresholds as variables, so the signature texts can quote them.

Texts that depend on what happened (recovered or not, the shape of the rise) are built here in
both languages as `<var>` and `<var>_zh`: the draft picks the one of its language.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import median

from .model import Evidence

# -- thresholds -------------------------------------------------------------------------------
DIVERGENCE_FACTOR = 100.0  # x the running minimum: "orders of magnitude", not a bad batch
# A cross-entropy loss cannot climb x100 (from 2.3 it would need 230): it diverges by climbing back
# to where it started (BERT pretraining: 7.x -> 2.3 -> 7.x, NVIDIA/DeepLearningExamples#401). The
# rebound rule compares stretches of a REBOUND_WINDOW_PARTS-th of the logged steps (at least
# REBOUND_MIN_WINDOW) by their quartiles, so noisy batches (batch size 1, logging every step)
# cannot trigger it:
REBOUND_MIN_STEPS = 20  # fewer logged steps have no shape to judge
REBOUND_MIN_WINDOW = 5
REBOUND_WINDOW_PARTS = 10
REBOUND_MAX_POINTS = 2_000  # a longer series is read at an even stride: the shape is the same
REBOUND_LEARNED = 0.6  # the loss first fell to at most 60% of its starting level ...
REBOUND_RETURN = 0.8  # ... then climbed back 80% of the way it had come down (threshold `rebound`) ...
REBOUND_KEPT = 0.5  # ... and still held at least half of that loss of progress at its last step
# A GRPO group where every completion fails has no advantage, hence no loss and no gradient, until
# one completion scores. A few such steps are how a hard task starts (no finding); a longer cold
# start is reported as a warning that explains it and says when it broke (the draft the user would
# write: "reward 0 is not a bug, it broke at step 21"); past `worry_steps`, or never broken, it
# needs a look at the reward function.
ZERO_REWARD_MIN_STEPS = 3  # a zero first step or two is every RL run's start
ZERO_REWARD_ORDINARY_STEPS = 10  # a cold start that breaks sooner is no finding
ZERO_REWARD_WORRY_STEPS = 50
FLAT_LOSS_MIN_STEPS = 10  # fewer logged steps say nothing about learning
FLAT_LOSS_MAX_CHANGE = 0.02  # relative change of the mean loss, first quarter to last quarter
# A loss identical to about seven significant digits at every logged step has stopped depending on
# the batches: the weights no longer change or the outputs collapsed (DINO, facebookresearch/dino#246,
# 11.090352058410645 epoch after epoch). Real training noise is far above this.
FLAT_LOSS_CONSTANT_SPAN = 1e-6  # (max - min) / |mean| over the whole series
FLAT_LOSS_CONSTANT_MIN = 1e-3  # a loss rounded to 0.0000 near zero is a converged run, not this
GRAD_SPIKE_FACTOR = 100.0  # x the median of the previous window
GRAD_SPIKE_WINDOW = 50
GRAD_SPIKE_MIN_HISTORY = 10  # no spike can be judged against fewer values
LR_MIN_STEPS = 5
ROUNDED_ZERO_MIN_CHARS = 4  # "0.00" and longer: a rounded small number; "0.0" (repr) and "0" are exact
SUMMARY_EVIDENCE_CHARS = 240  # the metric line quoted as evidence is cut here (TRL lines run to 2 KB)

DEFAULT_THRESHOLDS: Mapping[str, Mapping[str, float]] = {
    "non-finite": {},
    "divergence": {"factor": DIVERGENCE_FACTOR, "rebound": REBOUND_RETURN},
    "zero-reward": {"min_steps": ZERO_REWARD_MIN_STEPS, "ordinary_steps": ZERO_REWARD_ORDINARY_STEPS,
                    "worry_steps": ZERO_REWARD_WORRY_STEPS},
    "flat-loss": {"min_steps": FLAT_LOSS_MIN_STEPS, "max_change": FLAT_LOSS_MAX_CHANGE},
    "grad-spike": {"factor": GRAD_SPIKE_FACTOR, "window": GRAD_SPIKE_WINDOW,
                   "min_history": GRAD_SPIKE_MIN_HISTORY},
    "lr-anomaly": {"min_steps": LR_MIN_STEPS},
}
DETECTORS = tuple(DEFAULT_THRESHOLDS)
THRESHOLDS_ENV = "POSTMORTEM_THRESHOLDS"

# -- what a metric is -------------------------------------------------------------------------
TRAIN, EVAL = "train", "eval"
# A row of a series: (index in its series, step, epoch, line number, {metric: value}, line text)
R_INDEX, R_STEP, R_EPOCH, R_LINE, R_VALUES, R_TEXT = range(6)
LOSS_KEYS = ("loss", "lm_loss", "reduced_train_loss", "train_loss", "train/loss", "training_loss", "train_loss_step", "train_loss_epoch",
             "loss_step", "loss_epoch")
EVAL_LOSS_KEYS = ("eval_loss", "val_loss", "eval/loss", "val/loss", "validation_loss", "valid_loss",
                  "val_loss_epoch", "test_loss")
GRAD_KEYS = ("grad_norm", "train/grad_norm", "gnorm", "grad-norm", "gradient_norm", "total_norm")
LR_KEYS = ("learning_rate", "lr", "train/learning_rate", "train/lr")
REWARD_KEYS = ("reward", "train/reward", "rewards/mean", "reward_mean", "mean_reward", "env/reward_mean")
ROLE_KEYS = {"loss": LOSS_KEYS, "eval_loss": EVAL_LOSS_KEYS, "grad": GRAD_KEYS, "lr": LR_KEYS,
             "reward": REWARD_KEYS}


def role_of(key: str) -> str | None:
    """What a metric is to the detectors: loss, eval_loss, grad, lr, reward; None for the rest."""
    if key in LOSS_KEYS:
        return "loss"
    if key in EVAL_LOSS_KEYS:
        return "eval_loss"
    if key in GRAD_KEYS:
        return "grad"
    if key in LR_KEYS or key.startswith("lr-"):  # Lightning's LearningRateMonitor: lr-AdamW
        return "lr"
    if key in REWARD_KEYS or (key.startswith(("rewards/", "reward/")) and key.endswith("/mean")):
        return "reward"
    return None


def names_a_loss(key: str) -> bool:
    """`lm_loss`, `val_loss`, `z_loss`; not the fp16 `loss_scale` (Megatron's `loss scale`, fairseq's)."""
    return "loss" in key and not key.endswith("loss_scale")


def is_watched(key: str) -> bool:
    """Metrics whose NaN is a failure: every loss, the reward, grad_norm."""
    return names_a_loss(key) or role_of(key) in ("reward", "grad")


def watch_priority(key: str) -> int:
    role = role_of(key)
    return {"loss": 0, "eval_loss": 1, "reward": 2, "grad": 3}.get(role, 1 if "loss" in key else 4)


class ThresholdError(ValueError):
    """A threshold override that names no detector or no threshold, or is not a positive number."""


def check_thresholds(detector: str, values: Mapping[str, object]) -> dict[str, float]:
    """Validate overrides for one detector; the error says which name or value is wrong."""
    if detector not in DEFAULT_THRESHOLDS:
        raise ThresholdError(f"no metric detector '{detector}' (known: {', '.join(DETECTORS)})")
    known = DEFAULT_THRESHOLDS[detector]
    checked = {}
    for name, value in values.items():
        if name not in known:
            allowed = ", ".join(known) or "none"
            raise ThresholdError(f"'{detector}' has no threshold '{name}' (allowed: {allowed})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ThresholdError(f"'{detector}.{name}' must be a positive number, got {value!r}")
        checked[name] = float(value)
    return checked


def resolve_thresholds(
    signature_overrides: Mapping[str, Mapping[str, float]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, dict[str, float]]:
    """Defaults, then the signatures' `[match] thresholds`, then $POSTMORTEM_THRESHOLDS."""
    resolved = {name: dict(values) for name, values in DEFAULT_THRESHOLDS.items()}
    for detector, values in (signature_overrides or {}).items():
        if detector in resolved:
            resolved[detector].update(check_thresholds(detector, values))
    environ = os.environ if environ is None else environ
    for item in filter(None, (part.strip() for part in environ.get(THRESHOLDS_ENV, "").split(","))):
        key, _, raw = item.partition("=")
        detector, _, name = key.strip().rpartition(".")
        try:
            value = float(raw)
        except ValueError:
            raise ThresholdError(f"${THRESHOLDS_ENV}: '{item}' is not detector.name=number") from None
        resolved.setdefault(detector, {}).update(check_thresholds(detector, {name: value}))
    return resolved


# -- streaming watchers: fed every value of one metric, exact whatever the series' length ------
class DivergenceWatch:
    """The first value at `factor` x the running minimum and above the first value."""

    __slots__ = ("factor", "first", "low", "low_row", "disabled", "crossed", "peak_ratio")

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.first = None
        self.low = math.inf
        self.low_row = None
        self.disabled = False  # a loss that reaches 0 or below has no floor to rise from
        self.crossed = None  # (row, value, running_min, min_row)
        self.peak_ratio = 0.0

    def update(self, value: float, row: tuple) -> None:
        if self.disabled:
            return
        if value <= 0.0:
            if self.crossed is None:
                self.disabled = True
            return
        if self.first is None:
            self.first = value
        if value < self.low:
            self.low, self.low_row = value, row
            return
        ratio = value / self.low
        if ratio > self.peak_ratio:
            self.peak_ratio = ratio
        if self.crossed is None and ratio >= self.factor and value > self.first:
            self.crossed = (row, value, self.low, self.low_row)


class SpikeWatch:
    """Values at `factor` x the median of the previous window (checked against a median that is
    recomputed once per window, so a value costs O(1))."""

    __slots__ = ("factor", "window", "min_history", "recent", "reference", "seen", "first", "count", "worst")

    def __init__(self, factor: float, window: int, min_history: int) -> None:
        self.factor, self.window, self.min_history = factor, max(1, window), max(1, min_history)
        self.recent: list[float] = []
        self.reference = 0.0
        self.seen = 0
        self.first = None  # (row, value, reference median)
        self.count = 0
        self.worst = 0.0

    def update(self, value: float, row: tuple) -> None:
        if self.reference > 0.0 and value >= self.factor * self.reference:
            self.count += 1
            ratio = value / self.reference
            if self.first is None:
                self.first = (row, value, self.reference)
            if ratio > self.worst:
                self.worst = ratio
            return  # a spike does not raise the baseline it is judged against
        self.seen += 1
        self.recent.append(value)
        if len(self.recent) >= self.window:
            self.reference = median(self.recent)
            self.recent = []
        elif self.seen < self.window and self.seen >= self.min_history and self.seen % self.min_history == 0:
            self.reference = median(self.recent)


class RiseWatch:
    """Whether a series (the learning rate) never went down and was still rising at its end."""

    __slots__ = ("previous", "monotone", "rising_at_end")

    def __init__(self) -> None:
        self.previous = None
        self.monotone = True
        self.rising_at_end = False

    def update(self, value: float, row: tuple) -> None:
        if self.previous is not None:
            if value < self.previous:
                self.monotone = False
            self.rising_at_end = value > self.previous
        self.previous = value


# -- texts --------------------------------------------------------------------------------------
def format_value(value: float | None) -> str:
    """A number as a journal quotes it: 1.96, 0.0431, 131; 5.6e+03 and 2e-05 outside [0.01, 1000)."""
    if value is None:
        return "?"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.3g}" if 0.01 <= abs(value) < 1000 else f"{value:.2g}"


def format_step(step: float) -> str:
    return str(int(step)) if float(step).is_integer() else f"{step:g}"


def printed_as_rounded_zero(text: str, key: str) -> bool:
    """`lr=0.0000`: a small value printed with too few decimals, not a zero. Trainer and TRL print
    the exact value (`0.0`), a custom `f"{lr:.4f}"` does not."""
    match = re.search(rf"{re.escape(key)}['\"]?\s*[:=]?\s*['\"]?(0\.0+)(?![\d.eE])", text)
    return match is not None and len(match.group(1)) >= ROUNDED_ZERO_MIN_CHARS


def nonfinite_word(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Inf" if value > 0 else "-Inf"


class ZeroRewardWatch:
    """The leading stretch of rows where reward, loss and grad_norm are all exactly 0."""

    __slots__ = ("reward_key", "loss_key", "grad_key", "zero_rows", "first_row", "last_zero_row",
                 "broken_row", "done", "all_groups_flat")

    def __init__(self, reward_key: str, loss_key: str | None, grad_key: str | None) -> None:
        self.reward_key, self.loss_key, self.grad_key = reward_key, loss_key, grad_key
        self.zero_rows = 0
        self.first_row = self.last_zero_row = self.broken_row = None
        self.done = False
        self.all_groups_flat = True  # TRL's frac_reward_zero_std stayed 1.0 through the stretch

    def update(self, values: Mapping[str, float], row: tuple) -> None:
        reward = values.get(self.reward_key)
        if reward is None:
            return
        loss = values.get(self.loss_key, 0.0) if self.loss_key else 0.0
        grad = values.get(self.grad_key, 0.0) if self.grad_key else 0.0
        if reward == 0.0 and loss == 0.0 and grad == 0.0:
            self.zero_rows += 1
            if self.first_row is None:
                self.first_row = row
            self.last_zero_row = row
            if values.get("frac_reward_zero_std", 1.0) != 1.0:
                self.all_groups_flat = False
            return
        self.done = True
        if self.zero_rows:
            self.broken_row = row


# -- findings ---------------------------------------------------------------------------------
@dataclass
class Finding:
    """One detector's finding on one series: the row it cites and the variables of the draft."""

    detector: str
    series: object  # metrics.Series
    row: tuple  # cited as the evidence: its line is the incident's line
    metric: str | None  # the metric that went wrong, marked in the metrics section
    values: dict[str, str] = field(default_factory=dict)
    failure_row: tuple | None = None  # the step marked with ^ under the sparkline
    label: str = ""  # what happened at the marked step, for the metrics section
    label_zh: str = ""

    def evidence(self, source: str) -> Evidence:
        text = self.row[R_TEXT].strip()
        if len(text) > SUMMARY_EVIDENCE_CHARS:
            text = text[: SUMMARY_EVIDENCE_CHARS - 1] + "…"
        return Evidence(kind="metric", text=self.detector, line_number=self.row[R_LINE], source=source,
                        summary=text, values=dict(self.values))


def detect(series, collector) -> list[Finding]:
    """Every detector over one series."""
    limits = collector.thresholds
    divergence = _divergence(series, limits["divergence"])
    found = [_non_finite(series), divergence]
    if series.split == TRAIN:
        found += [
            _zero_reward(series, limits["zero-reward"]),
            _flat_loss(series, limits["flat-loss"], collector.zero_trainable),
            # gradients spiking while the loss diverges are part of the divergence: one incident
            None if divergence is not None else _grad_spike(series, limits["grad-spike"]),
            _lr_anomaly(series, limits["lr-anomaly"]),
        ]
    return [f for f in found if f is not None]


def first_nonfinite(series) -> str | None:
    """The watched metric that became non-finite first in a series (None: none did)."""
    bad = [t for k, t in series.tracks.items() if t.first_bad_row is not None and is_watched(k)]
    if not bad:
        return None
    return min(bad, key=lambda t: (t.first_bad_row[R_INDEX], watch_priority(t.key))).key


def _at(row: tuple) -> tuple[str, str]:
    """'step 110 (epoch 0.23)' in English and Chinese."""
    step = format_step(row[R_STEP])
    if row[R_EPOCH] is None:
        return f"step {step}", f"第 {step} 步"
    epoch = f"{row[R_EPOCH]:g}"
    return f"step {step} (epoch {epoch})", f"第 {step} 步（epoch {epoch}）"


def _non_finite(series) -> Finding | None:
    bad = [t for k, t in series.tracks.items() if t.first_bad_row is not None and is_watched(k)]
    # grad_norm alone going Inf/NaN for a few steps and then finite again is fp16's loss scaler
    # skipping steps and lowering its scale: normal, not a failure.
    bad = [t for t in bad if not (role_of(t.key) == "grad" and t.recovered_row is not None)]
    if not bad:
        return None
    track = min(bad, key=lambda t: (t.first_bad_row[R_INDEX], watch_priority(t.key)))
    row = track.first_bad_row
    word = nonfinite_word(track.first_bad_value)
    at, at_zh = _at(row)
    en = [f"`{track.key}` became {word} at {at}"]
    zh = [f"`{track.key}` 在{at_zh}变成 {word}"]
    before = track.before_bad_row
    values = {
        "metric": track.key, "value": format_value(track.first_bad_value), "step": format_step(row[R_STEP]),
        "split": series.split, "nonfinite_steps": str(track.bad_total),
        "last_finite": "?", "last_finite_step": "?",
    }
    if track.key in getattr(series, "inferred_nan", {}):
        values["inferred"] = "yes"
        en.append(" (Megatron drops a NaN average from its iteration line: the column is missing from there on)")
        zh.append("（Megatron 会把 NaN 的平均值从迭代日志行里去掉：从这一行起这一列就不见了）")
    if before is not None:
        last, last_step = format_value(before[R_VALUES][track.key]), format_step(before[R_STEP])
        values.update(last_finite=last, last_finite_step=last_step)
        en.append(f", last finite {last} at step {last_step}.")
        zh.append(f"；最后一个有限值是第 {last_step} 步的 {last}。")
    else:
        en.append(", already at its first logged value.")
        zh.append("，从第一条记录起就不是有限值。")
    watch = track.watch
    if isinstance(watch, DivergenceWatch) and watch.crossed is not None \
            and watch.crossed[0][R_INDEX] < row[R_INDEX]:
        low, low_row = watch.low, watch.crossed[3]
        peak = before[R_VALUES][track.key] / low if before is not None and low > 0 else watch.peak_ratio
        ratio = f"{peak:.0f}"
        values.update(diverged_step=format_step(watch.crossed[0][R_STEP]), rise=ratio)
        en.append(f" Before that it had climbed x{ratio} above its minimum {format_value(low)} "
                  f"(step {format_step(low_row[R_STEP])}): it diverged first.")
        zh.append(f"在此之前，它已从最小值 {format_value(low)}（第 {format_step(low_row[R_STEP])} 步）"
                  f"上涨到 {ratio} 倍：先发散，后变成 {word}。")
    if track.recovered_row is not None:
        again = format_step(track.recovered_row[R_STEP])
        values.update(recovered="yes", recovered_step=again)
        en.append(f" It was finite again from step {again} ({track.bad_total} non-finite logged steps in all).")
        zh.append(f"从第 {again} 步起又恢复为有限值（共 {track.bad_total} 条非有限记录）。")
    else:
        last_step = format_step(series.last_row[R_STEP])
        values.update(recovered="no", recovered_step="")
        en.append(f" It never came back: non-finite to the last logged step ({last_step}).")
        zh.append(f"之后再也没有恢复，直到最后一条记录（第 {last_step} 步）。")
    others = [t for t in bad if t is not track]
    if others:
        names = ", ".join(f"`{t.key}` (step {format_step(t.first_bad_row[R_STEP])})" for t in others)
        names_zh = "，".join(f"`{t.key}`（第 {format_step(t.first_bad_row[R_STEP])} 步起）" for t in others)
        values["also"] = ", ".join(t.key for t in others)
        en.append(f" Also non-finite: {names}.")
        zh.append(f"同时变成非有限值的还有：{names_zh}。")
    values.update(detail="".join(en), detail_zh="".join(zh))
    return Finding("non-finite", series, row, track.key, values, row,
                   f"{track.key} became {word}", f"{track.key} 变成 {word}")


def _divergence(series, limits: Mapping[str, float]) -> Finding | None:
    if series.primary("reward") is not None:
        return None  # RL losses are not bounded below: a rise from near 0 means nothing
    role = "loss" if series.split == TRAIN else "eval_loss"
    candidates = [t for k, t in series.tracks.items() if (role_of(k) == role or (role == "eval_loss"
                  and "loss" in k)) and isinstance(t.watch, DivergenceWatch) and t.watch.crossed is not None]
    # A rise that ends in NaN is told once, by the non-finite finding (which says how far it rose).
    candidates = [t for t in candidates if t.first_bad_row is None]
    if not candidates:
        return _rebound(series, limits["rebound"]) if series.split == TRAIN else None
    track = min(candidates, key=lambda t: watch_priority(t.key))
    watch = track.watch
    row, value, low, low_row = watch.crossed
    factor = limits["factor"]
    at, at_zh = _at(row)
    ratio = f"{value / low:.0f}"
    values = {
        "metric": track.key, "step": format_step(row[R_STEP]), "value": format_value(value),
        "min": format_value(low), "min_step": format_step(low_row[R_STEP]), "ratio": ratio,
        "peak": f"{watch.peak_ratio:.0f}", "first": format_value(watch.first),
        "last": format_value(track.last_any), "factor": f"{factor:g}", "split": series.split,
    }
    values["detail"] = (
        f"`{track.key}` climbed to {format_value(value)} at {at}, x{ratio} its running minimum "
        f"{format_value(low)} (step {format_step(low_row[R_STEP])}) and above its first value "
        f"{format_value(watch.first)}; it peaked at x{values['peak']} and ended at {values['last']}, "
        f"without turning NaN."
    )
    values["detail_zh"] = (
        f"`{track.key}` 在{at_zh}涨到 {format_value(value)}，是此前最小值 {format_value(low)}"
        f"（第 {format_step(low_row[R_STEP])} 步）的 {ratio} 倍，也高于它的初始值 {format_value(watch.first)}；"
        f"峰值达到最小值的 {values['peak']} 倍，最后停在 {values['last']}，没有变成 NaN。"
    )
    return Finding("divergence", series, row, track.key, values, row,
                   f"{track.key} x{ratio} its minimum", f"{track.key} 达到最小值的 {ratio} 倍")


def _rebound_key(series) -> str | None:
    """The training loss the rebound rule follows: the primary one, else the first key named *loss*
    (dllogger's `average_loss`, a custom `total_loss`)."""
    key = series.primary("loss")
    if key is not None:
        return key
    return next((k for k in series.tracks if names_a_loss(k) and not k.startswith(("val", "eval", "test"))), None)


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    last = len(ordered) - 1
    return ordered[last // 4], median(ordered), ordered[-(-3 * last // 4)]


def _rebound(series, share_back: float) -> Finding | None:
    """The training loss fell to half its start or lower, then climbed back most of the way and
    stayed up: a divergence no x100 factor can see on a bounded loss."""
    key = _rebound_key(series)
    if key is None:
        return None
    track = series.tracks[key]
    if track.bad_total or track.finite < REBOUND_MIN_STEPS:
        return None
    rows = [r for r in series.rows() if key in r[R_VALUES]]
    if len(rows) > REBOUND_MAX_POINTS:
        rows = rows[:: -(-len(rows) // REBOUND_MAX_POINTS)]
    values = [r[R_VALUES][key] for r in rows]
    # Consecutive stretches of the series, each summarised by its quartiles; two levels count as
    # different only when their stretches do not overlap (the lower one's 3rd quartile below the
    # higher one's 1st): noise around one level never passes that, a real fall and rise does.
    size = max(REBOUND_MIN_WINDOW, len(values) // REBOUND_WINDOW_PARTS)
    bounds = list(range(0, len(values) - size + 1, size))
    if len(bounds) < 3:
        return None
    stretches = [values[b:b + size] if b != bounds[-1] else values[b:] for b in bounds]
    quart = [_quartiles(stretch) for stretch in stretches]
    start = quart[0][1]
    low_at = min(range(len(quart)), key=lambda i: quart[i][1])
    low, low_top = quart[low_at][1], quart[low_at][2]
    if start <= 0.0 or low > start * REBOUND_LEARNED or quart[0][0] <= low_top:
        return None
    back = low + share_back * (start - low)
    crossed = next((i for i in range(low_at + 1, len(quart)) if quart[i][1] >= back and quart[i][0] > low_top), None)
    if crossed is None or quart[-1][1] < low + REBOUND_KEPT * (start - low) or quart[-1][0] <= low_top:
        return None
    first_up = next((j for j in range(bounds[crossed], len(values)) if values[j] >= back), bounds[crossed])
    row = rows[first_up]
    low_row = rows[bounds[low_at] + len(stretches[low_at]) // 2]
    peak = max(q[1] for q in quart[crossed:])
    smooth_last = quart[-1][1]
    at, at_zh = _at(row)
    lost = (smooth_last - low) / (start - low)
    values_out = {
        "metric": key, "step": format_step(row[R_STEP]), "value": format_value(values[first_up]),
        "min": format_value(low), "min_step": format_step(low_row[R_STEP]),
        "ratio": f"{values[first_up] / low:.1f}" if low > 0 else "?", "peak": f"{peak / low:.1f}" if low > 0 else "?",
        "first": format_value(start), "last": format_value(track.last_any),
        "split": series.split, "case": "rebound",
    }
    values_out["detail"] = (
        f"`{key}` came down from about {format_value(start)} to {format_value(low)} (step "
        f"{format_step(low_row[R_STEP])}), then climbed back to {format_value(values[first_up])} at {at} and stayed "
        f"up: it ended at {values_out['last']}, having lost {lost:.0%} of what it had learned, without turning NaN."
    )
    values_out["detail_zh"] = (
        f"`{key}` 从大约 {format_value(start)} 降到 {format_value(low)}（第 {format_step(low_row[R_STEP])} 步），"
        f"随后在{at_zh}又回升到 {format_value(values[first_up])} 并一直没有降下来：最后停在 {values_out['last']}，"
        f"之前学到的下降丢掉了 {lost:.0%}，但没有变成 NaN。"
    )
    return Finding("divergence", series, row, key, values_out, row,
                   f"{key} back near its start", f"{key} 回升到接近初始值")


def _zero_reward(series, limits: Mapping[str, float]) -> Finding | None:
    watch = series.zero_watch
    if watch is None or watch.zero_rows < limits["min_steps"]:
        return None
    worry = limits["worry_steps"]
    if watch.broken_row is not None and watch.zero_rows < limits["ordinary_steps"]:
        return None
    names = [f"`{k}`" for k in (watch.reward_key, watch.loss_key, watch.grad_key) if k]
    listed = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
    listed_zh = "、".join(names)
    first, last = format_step(watch.first_row[R_STEP]), format_step(watch.last_zero_row[R_STEP])
    values = {
        "reward_metric": watch.reward_key, "zero_steps": str(watch.zero_rows), "first_zero_step": first,
        "last_zero_step": last, "worry_steps": f"{worry:g}", "min_steps": f"{limits['min_steps']:g}",
    }
    en = [f"{listed} were all exactly 0 for the first {watch.zero_rows} logged steps (steps {first}–{last})"]
    zh = [f"{listed_zh} 在最初的 {watch.zero_rows} 条记录（第 {first}–{last} 步）里全部恰好为 0"]
    if watch.all_groups_flat and "frac_reward_zero_std" in series.tracks:
        en.append(", with `frac_reward_zero_std` at 1.0: every group's completions scored alike")
        zh.append("，`frac_reward_zero_std` 一直是 1.0：每一组的所有回答得分都相同")
    broken = watch.broken_row
    label = label_zh = ""
    if broken is not None:
        step = format_step(broken[R_STEP])
        got = [f"{k} {format_value(broken[R_VALUES][k])}"
               for k in (watch.reward_key, watch.loss_key, watch.grad_key) if k and k in broken[R_VALUES]]
        values.update(recovered="yes", recovered_step=step)
        if watch.zero_rows >= worry:
            en.append(f". It recovered at step {step} ({', '.join(got)}), but only after {watch.zero_rows} all-zero "
                      f"logged steps, past the {worry:g} a cold start normally lasts: so long without one rewarded "
                      f"completion is worth a look at the reward function and the completions.")
            zh.append(f"。训练在第 {step} 步恢复（{'，'.join(got)}），但此前已经有 {watch.zero_rows} 条全零记录，超过了正常"
                      f"冷启动的 {worry:g} 步：这么久都没有一个得分的回答，值得检查一下奖励函数和生成的回答。")
        else:
            en.append(f". It recovered at step {step} ({', '.join(got)}): a cold start, not a bug; it would need a "
                      f"look only past {worry:g} all-zero steps.")
            zh.append(f"。训练在第 {step} 步恢复（{'，'.join(got)}）：这是冷启动，不是 bug；只有全零持续超过 {worry:g} 步"
                      f"才需要检查。")
        label, label_zh = "first non-zero reward", "第一个非零奖励"
    else:
        values.update(recovered="no", recovered_step="")
        en.append(f". It never recovered: the log ends at step {format_step(series.last_row[R_STEP])} "
                  f"without one non-zero reward, so the policy never received a gradient.")
        zh.append(f"。训练始终没有恢复：直到最后一条记录（第 {format_step(series.last_row[R_STEP])} 步）"
                  f"都没有出现一次非零奖励，策略一次梯度也没有得到。")
        if watch.zero_rows >= worry:
            en.append(f" That is past {worry:g} steps: this is no longer a cold start.")
            zh.append(f"已经超过 {worry:g} 步：这不再是正常的冷启动。")
    values.update(detail="".join(en), detail_zh="".join(zh))
    return Finding("zero-reward", series, watch.first_row, watch.reward_key, values, broken, label, label_zh)


def _flat_loss(series, limits: Mapping[str, float], zero_trainable: bool) -> Finding | None:
    if series.primary("reward") is not None:
        return None  # an RL run with no gradient is the zero-reward finding
    loss_key = series.primary("loss")
    if loss_key is None:
        return None
    track = series.tracks[loss_key]
    if track.finite < limits["min_steps"] or track.bad_total:
        return None
    grad_key = series.primary("grad")
    constant = _constant(track)
    if grad_key is not None:
        grad = series.tracks[grad_key]
        if grad.finite < limits["min_steps"] or grad.bad_total or grad.min != 0.0 or grad.max != 0.0 \
                or printed_as_rounded_zero(series.first_row[R_TEXT], grad_key):
            if not constant:
                return None
            grad_key = None  # gradients were logged and not 0: the constant loss is the evidence
    elif not zero_trainable and not constant:
        return None  # a flat loss alone can be a tiny learning rate: not enough to say "no learning"
    losses = [r[R_VALUES][loss_key] for r in series.rows() if loss_key in r[R_VALUES]]
    quarter = max(1, len(losses) // 4)
    head, tail = losses[:quarter], losses[-quarter:]
    head_mean, tail_mean = sum(head) / len(head), sum(tail) / len(tail)
    change = abs(tail_mean - head_mean) / abs(head_mean) if head_mean else abs(tail_mean - head_mean)
    if change > limits["max_change"]:
        return None
    mean = sum(losses) / len(losses)
    spread = math.sqrt(sum((x - mean) ** 2 for x in losses) / len(losses))
    first, last = format_step(series.first_row[R_STEP]), format_step(series.last_row[R_STEP])
    values = {
        "metric": loss_key, "mean": f"{mean:.3g}", "spread": f"{spread:.2g}", "steps": str(track.finite),
        "change": f"{change:.1%}", "max_change": f"{limits['max_change']:.0%}",
        "zero_trainable": "yes" if zero_trainable else "no",
    }
    en = [f"`{loss_key}` stayed at {mean:.3g} ± {spread:.2g} over all {track.finite} logged steps "
          f"(steps {first}–{last}; first-quarter mean {head_mean:.3g}, last-quarter mean {tail_mean:.3g})"]
    zh = [f"`{loss_key}` 在全部 {track.finite} 条记录（第 {first}–{last} 步）里一直停在 {mean:.3g} ± {spread:.2g}"
          f"（前四分之一均值 {head_mean:.3g}，后四分之一均值 {tail_mean:.3g}）"]
    if grad_key is not None:
        values["grad_metric"] = grad_key
        en.append(f", and `{grad_key}` was 0 at every step")
        zh.append(f"，`{grad_key}` 每一步都是 0")
    elif constant:
        values["constant"] = "yes"
        en.append(f"; it was the same number to about seven significant digits at every step "
                  f"({format_value(track.min)}), which no batch-to-batch noise produces")
        zh.append(f"；每一步都是同一个数（{format_value(track.min)}），前七位有效数字都不变，"
                  f"正常训练中不同批次的噪声不可能这样")
    else:
        en.append(", no grad_norm is logged")
        zh.append("，日志里没有 grad_norm")
    if zero_trainable:
        en.append(", and PEFT reported `trainable params: 0`")
        zh.append("，而且 PEFT 报告了 `trainable params: 0`")
    values.update(detail="".join(en) + ".", detail_zh="".join(zh) + "。")
    return Finding("flat-loss", series, series.first_row, loss_key, values, None, "", "")


def _constant(track) -> bool:
    """The loss was the same number (to FLAT_LOSS_CONSTANT_SPAN, relative) at every logged step."""
    if track.finite == 0 or track.bad_total:
        return False
    mean = (track.max + track.min) / 2
    return abs(mean) >= FLAT_LOSS_CONSTANT_MIN and (track.max - track.min) <= FLAT_LOSS_CONSTANT_SPAN * abs(mean)


def _grad_spike(series, limits: Mapping[str, float]) -> Finding | None:
    key = series.primary("grad")
    if key is None:
        return None
    track = series.tracks[key]
    watch = track.watch
    if not isinstance(watch, SpikeWatch) or watch.first is None:
        return None
    row, value, reference = watch.first
    # A spike that ends in NaN is told once, by the non-finite finding.
    for other in series.tracks.values():
        if is_watched(other.key) and other.first_bad_row is not None \
                and other.first_bad_row[R_INDEX] >= row[R_INDEX] and other.recovered_row is None:
            return None
    ratio = f"{value / reference:.0f}"
    at, at_zh = _at(row)
    values = {
        "metric": key, "step": format_step(row[R_STEP]), "value": format_value(value),
        "median": format_value(reference), "ratio": ratio, "spikes": str(watch.count),
        "worst": f"{watch.worst:.0f}", "factor": f"{limits['factor']:g}", "window": f"{limits['window']:g}",
    }
    values["detail"] = (
        f"`{key}` jumped to {format_value(value)} at {at}, x{ratio} the median {format_value(reference)} "
        f"of the steps before it; {watch.count} such spike(s) in {track.count} logged steps "
        f"(worst x{values['worst']})."
    )
    values["detail_zh"] = (
        f"`{key}` 在{at_zh}跳到 {format_value(value)}，是之前若干步中位数 {format_value(reference)} 的 "
        f"{ratio} 倍；{track.count} 条记录中共有 {watch.count} 次这样的尖峰（最大 {values['worst']} 倍）。"
    )
    return Finding("grad-spike", series, row, key, values, row, f"{key} x{ratio}", f"{key} {ratio} 倍")


def _lr_anomaly(series, limits: Mapping[str, float]) -> Finding | None:
    key = series.primary("lr")
    if key is None:
        return None
    track = series.tracks[key]
    if track.finite < limits["min_steps"]:
        return None
    first, last = format_step(series.first_row[R_STEP]), format_step(series.last_row[R_STEP])
    values = {"metric": key, "steps": str(track.finite), "min_steps": f"{limits['min_steps']:g}"}
    if track.min == 0.0 and track.max == 0.0 and not printed_as_rounded_zero(series.first_row[R_TEXT], key):
        values.update(
            case="zero",
            detail=f"The learning rate `{key}` was 0 at all {track.finite} logged steps (steps {first}–{last}): "
                   f"the optimizer never moved a weight.",
            detail_zh=f"学习率 `{key}` 在全部 {track.finite} 条记录（第 {first}–{last} 步）里都是 0："
                      f"优化器从未更新过任何权重。",
        )
        return Finding("lr-anomaly", series, series.first_row, key, values, None, "", "")
    watch = track.watch
    if series.completed and isinstance(watch, RiseWatch) and watch.monotone and watch.rising_at_end \
            and track.last > track.first:
        start, end = format_value(track.first), format_value(track.last)
        values.update(
            case="warmup", first=start, last=end,
            detail=f"The learning rate `{key}` rose at every logged step, from {start} at step {first} to "
                   f"{end} at step {last}, and training finished there: the warmup never ended, the "
                   f"schedule never reached its peak.",
            detail_zh=f"学习率 `{key}` 每一步都在上升，从第 {first} 步的 {start} 升到第 {last} 步的 {end}，"
                      f"训练就在这里结束了：预热（warmup）一直没有结束，学习率从未达到设定的峰值。",
        )
        return Finding("lr-anomaly", series, series.last_row, key, values, None, "", "")
    return None
