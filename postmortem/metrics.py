"""Metric series from training output: what the run's numbers were, step by step.

`MetricCollector.feed()` takes every cleaned line outside tracebacks and keeps the ones that
really are metrics lines, in three families (a line counts only when it has the shape of one):

- dict:  Hugging Face Trainer / TRL log dicts, `{'loss': 0.4321, 'grad_norm': 1.2, 'epoch': 0.12}`,
         with `nan`/`inf`/`-inf`, quoted values (`{'loss': '4.18'}`, transformers formats floats
         with `.4g` since 2025), `np.float64(...)`; also JSON lines. Eval dicts (`eval_*` keys) go to
         an eval series, the end-of-training summary (`train_runtime`) marks the run as finished.
- bar:   tqdm postfixes, `100/500 [00:10<00:40, 9.8it/s, loss=0.431, lr=1e-4]`, and Lightning's
         `Epoch 3: ... [..., v_num=0, train_loss=0.234, val_loss=0.301]`.
- line:  `key=value` / `key: value` logging lines (`step 1200 loss=0.43 lr=1e-5`,
         `Epoch 3 | loss: 0.43`, `Train Epoch: 1 [640/60000 (1%)]\tLoss: 0.3010`), Keras
         (`... 3ms/step - loss: 0.4321 - accuracy: 0.81`, epoch from the `Epoch 1/10` line above),
         nanoGPT (`iter 100: loss 3.2104, time 51.85ms`, `step 250: train loss 1.9, val loss 2.0`).
         Prose is refused: a candidate needs a loss/lr/grad_norm/reward/accuracy key, at most
         MAX_PROSE_WORDS free words, and no exception or `name = value  # comment` shape.
- megatron: the `training_log` line of Megatron-LM, Megatron-DeepSpeed, NeMo and gpt-neox,
         ` iteration  5426/ 250000 | consumed samples: ... | lm loss: 5.201453E+00 | loss scale: 1.0 |
         grad norm: 0.312 | number of skipped iterations:   0 | number of nan iterations:   0 |`, and
         its `validation loss at iteration N | lm loss value: ... | lm loss PPL: ... |`. Megatron
         leaves a loss out of that line when its average is NaN (`if avg > 0.0`, `>= 0.0` since
         2024), so a loss column that disappears is read as the NaN it was (see `_feed_megatron`).

Steps: an explicit step (`step`, `global_step`, `iter`, `iteration`) when the line has one; for a
Trainer dict, the training bar's `n` printed on the same physical line; else the order of
appearance. A step that goes back, an epoch that goes back, or `***** Running training *****`
starts a new run: each run has its own series (train and eval apart), detected on its own.

Memory is bounded whatever the length of the log: every series keeps its first and last rows,
the rows where each metric had its minimum and maximum, the boundaries of every non-finite run
(each run of NaN/Inf values is kept exactly: first and last row, count, up to MAX_NONFINITE_RUNS
runs per metric), the rows where a detector fired; of the other rows, every `stride`-th, where
`stride` doubles (and every series drops the rows off the new stride) whenever more than
MAX_KEPT_ROWS are kept across the log. Statistics (first/min/max/last, counts) and detectors are
streaming and exact (postmortem/detectors.py). The pandas DataFrame (`to_frame`) is built only
when asked for: a scan never imports pandas. What the draft shows of a series (table, sparklines)
is built in postmortem/summaries.py.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping

from . import detectors as det
from .detectors import EVAL, R_EPOCH, R_INDEX, R_LINE, R_STEP, R_VALUES, TRAIN, names_a_loss, role_of
from .model import Evidence, LogLine, MetricSummary
from .summaries import summarize

DICT, BAR, LINE, LINE_UNNUMBERED, MEGATRON = "dict", "bar", "line", "line-unnumbered", "megatron"
STEP_EXPLICIT, STEP_BAR, STEP_ORDER = "explicit", "bar", "order"

MAX_KEPT_ROWS = 50_000
MAX_NONFINITE_RUNS = 1_000
MAX_PROSE_WORDS = 2
EPOCH_TOLERANCE = 1e-6

# Literals at least one of which every line this module reads holds, as they appear in the raw
# bytes: the scan's prefilter reads only lines holding a needle (none shorter than 3 characters).
METRIC_NEEDLES = (
    "loss", "Loss", "LOSS", "reward", "grad_norm", "gnorm", "learning_rate", "lr=", "lr:", "lr ", "LR ",
    "'lr'", '"lr"', "acc", "Acc", "ppl", "iter ", "Epoch ", "epoch ", "train_runtime",
    "***** Running training", "Trainer.fit` stopped", "trainable params: 0 ",
)

# -- keys -----------------------------------------------------------------------------------------
INDEX_KEYS = {"step": "step", "global_step": "step", "iteration": "step", "iter": "step",
              "_step": "step", "epoch": "epoch"}
IGNORED_KEYS = frozenset({"total_flos", "v_num"})
EVAL_PREFIXES = ("eval_", "eval/", "val_", "val/", "valid_", "valid/", "validation_", "validation/",
                 "test_", "test/")
CORE_WORDS = frozenset({"loss", "lr", "learning_rate", "grad_norm", "gnorm", "reward", "acc", "accuracy",
                        "ppl", "perplexity"})

# -- line shapes ----------------------------------------------------------------------------------
_NUM = r"[-+]?(?:nan|inf(?:inity)?|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
DICT_PAIR_RE = re.compile(
    r"""['"]([^'"\\]+)['"]\s*:\s*(?:np\.float\d*\(|tensor\()?\s*(?:'([^']*)'|"([^"]*)"|([^,}\s()]+))\s*\)?"""
)
DICT_CORE_RE = re.compile(r"loss|reward|grad_norm|learning_rate|'lr'|\"lr\"|epoch|step|acc", re.I)
# The description runs up to the first `|` (or to the count); the percentage and the spaces
# before it are stripped in code: a lazy description followed by `\s*` split a run of spaces
# in every way (8,000 spaces took seconds).
BAR_RE = re.compile(
    r"^(?P<desc>[^|\[]*)\|[^|]*\|\s*(?P<n>\d+)/(?:\d+|\?)\s*\[(?P<info>[^\]]*)\]\s*$"
    r"|^(?P<desc2>[^|\[]*?)(?<![\d])(?P<n2>\d+)it\s*\[(?P<info2>[^\]]*)\]\s*$"
)
BAR_PERCENT_RE = re.compile(r"\s*\d{1,3}%\s*$")
BAR_EPOCH_RE = re.compile(r"\bEpoch\s+(\d+)", re.I)
POSTFIX_RE = re.compile(rf"(?:^|,)\s*([A-Za-z][\w/.\-]*)=\s*({_NUM})\s*(?=,|$)", re.I)
LINE_HINT_RE = re.compile(r"loss|\blr\b|learning_rate|grad_?norm|reward|acc|ppl|perplexity", re.I)
INDEX_RE = re.compile(
    r"(?<![\w/.\-])(global_step|iteration|iter|step|epoch)\s*(?:[:=：]\s*|\s+|(?=\[))\[?\s*(\d+(?:\.\d+)?)"
    r"(?:\s*/\s*\d+)?\]?(?![\w.])", re.I)
# `：` is the full-width colon of Chinese logs (`Loss：nan`).
PAIR_RE = re.compile(rf"(?<![\w/.\-'\"])([A-Za-z][\w/.\-]*)\s*(?:=|:|：)\s*\[?({_NUM})\]?%?(?![\w./:])", re.I)
# `name value` columns: the core names, a split word before them (`train loss 1.9`) or any
# `<prefix>_` (`lm_loss 6.15`, `total_loss 2.3` of custom loops that print `| key value |`).
SPACE_PAIR_RE = re.compile(
    rf"(?<![\w/.\-])((?:(?:train|val|valid|eval|test) |[A-Za-z][A-Za-z0-9]*_)?(?:loss|lr|ppl|perplexity|acc|accuracy|grad_norm|gnorm))"
    rf"\s+({_NUM})(?![\w./:%])", re.I)
WORD_RE = re.compile(r"(?<![\w/.\-])[A-Za-z][A-Za-z_'\-]*")
FREE_WORDS = frozenset({"train", "training", "val", "valid", "validation", "eval", "evaluation", "test",
                        "testing", "epoch", "step", "iter", "iteration", "batch", "info", "debug",
                        "warning", "avg", "average", "mean", "time", "rank", "it", "s", "ms"})
CONFIG_WORDS = frozenset({"config", "configuration", "args", "arguments", "hparams", "hyperparameters",
                          "settings", "trainingarguments", "options"})
EVAL_WORDS = frozenset({"val", "valid", "validation", "eval", "evaluation", "test", "testing"})
EXCEPTION_RE = re.compile(r"\b\w*(?:Error|Exception|Warning)\b:")
# `name = value` alone on a line with a comment (a config echoed) or aligned by padding (Trainer's
# `***** train metrics *****` summary): not a logged step.
ASSIGNMENT_RE = re.compile(
    r"^\s*[\w/.\-]+\s*=\s*\S+\s+#.*$|^\s{2,}[\w/.\-]+\s+=\s+\S+\s*$|^\s*[\w/.\-]+(?:\s{2,}=\s*|\s*=\s{2,})\S+\s*$")
# A number as the line-shape cache sees it; the parser's values must start where one of these does.
NUMBER_RE = re.compile(
    r"(?<![\w.])[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|(?:nan|inf(?:inity)?)(?!\w))", re.I)
# Megatron's `training_log` line (the `[2024-08-01 09:44:55]` of recent versions before it, `/infinity`
# for gpt-neox's open-ended runs) and its validation line; the fields are `| name: value |`.
MEGATRON_TRAIN_RE = re.compile(
    r"^\s*(?:\[[^\]]*\]\s*)?(?:Training epoch (?P<epoch>\d+), )?iteration\s+(?P<step>\d+)\s*/\s*(?:\d+|\?|infinity)\s*\|(?P<fields>.*)$")
MEGATRON_EVAL_RE = re.compile(
    r"^\s*-*\s*(?:validation|test) (?:loss|results) at iteration\s+(?P<step>\d+)[^|]*\|(?P<fields>.*)$")
# NeMo 2's progress line (`Training epoch 0, iteration 120/149 | lr: 3e-05 | global_step: 120 |
# reduced_train_loss: 1.233 | ...`) has the same shape, with its own names.
MEGATRON_NAMES = {"learning rate": "learning_rate", "lr": "lr", "grad norm": "grad_norm", "grad_norm": "grad_norm",
                  "loss scale": "loss_scale", "global_step": "global_step",
                  "number of skipped iterations": "skipped_iterations", "number of nan iterations": "nan_iterations"}
MEGATRON_FLOAT_RE = re.compile(rf"^\s*({_NUM})\s*$", re.I)
MAX_SHAPES = 4096  # line shapes remembered; past it the cache starts again
STEP_SLOT, EPOCH_SLOT = "\x00step", "\x00epoch"
REJECTED = ()  # the plan of a line shape that is not a metrics line
RUNNING_TRAINING = "***** Running training *****"
ZERO_TRAINABLE = "trainable params: 0 ||"

def is_eval_key(key: str) -> bool:
    return key.startswith(EVAL_PREFIXES)


class Track:
    """Exact running statistics of one metric in one series, non-finite runs included."""

    __slots__ = ("key", "count", "finite", "first", "first_row", "min", "min_row", "max", "max_row",
                 "last", "last_row", "last_any", "bad_total", "bad_open", "bad_runs", "bad_runs_dropped",
                 "first_bad_row", "first_bad_value", "before_bad_row", "recovered_row", "open_run", "watch")

    def __init__(self, key: str) -> None:
        self.key = key
        self.count = self.finite = self.bad_total = self.bad_runs_dropped = 0
        self.first = self.first_row = self.min_row = self.max_row = self.last_row = None
        self.min, self.max = math.inf, -math.inf
        self.last = self.last_any = None
        self.bad_open = False
        self.bad_runs: list[list] = []  # [first row, last row, count]
        self.first_bad_row = self.first_bad_value = self.before_bad_row = self.recovered_row = None
        self.open_run = None
        self.watch = None

    def add_bad(self, value: float, row: tuple) -> None:
        self.bad_total += 1
        if self.bad_open:
            if self.open_run is not None:
                self.open_run[1] = row
                self.open_run[2] += 1
            return
        self.bad_open = True
        if self.first_bad_row is None:
            self.first_bad_row, self.first_bad_value, self.before_bad_row = row, value, self.last_row
        if len(self.bad_runs) < MAX_NONFINITE_RUNS:
            self.open_run = [row, row, 1]
            self.bad_runs.append(self.open_run)
        else:
            self.open_run = None
            self.bad_runs_dropped += 1


class Series:
    """One metric series: a run's train (or eval) rows of one format."""

    def __init__(self, collector: MetricCollector, fmt: str, split: str, run: int, step_kind: str) -> None:
        self.collector = collector
        self.format, self.split, self.run, self.step_kind = fmt, split, run, step_kind
        self.count = 0
        self.tracks: dict[str, Track] = {}
        self.kept: list[tuple] = []
        self.first_row = self.last_row = None
        self.last_step = None
        self.last_epoch = None
        self.completed = False  # the run printed its end-of-training summary
        self.zero_watch = None
        self.inferred_nan: dict[str, int] = {}  # Megatron loss columns that disappeared: key -> line

    # -- feeding ------------------------------------------------------------------------------
    def add(self, values: dict[str, float], step: float, epoch: float | None, line: int, text: str) -> None:
        # The hot loop of a long log: one pass over the row's values, locals over attributes.
        self.count = count = self.count + 1
        row = (count, step, epoch, line, values, text)
        if count == 1:
            self.first_row = row
        self.last_row = row
        self.last_step = step
        if epoch is not None:
            self.last_epoch = epoch
        tracks = self.tracks
        for key, value in values.items():
            track = tracks.get(key)
            if track is None:
                track = tracks[key] = self._new_track(key)
            track.count += 1
            track.last_any = value
            if value - value == 0.0:  # finite: inf - inf and nan - nan are nan
                track.finite += 1
                if value < track.min:
                    track.min = value
                    track.min_row = row
                    if track.first_row is None:
                        track.first, track.first_row = value, row
                if value > track.max:
                    track.max = value
                    track.max_row = row
                track.last = value
                track.last_row = row
                if track.bad_open:
                    track.bad_open = False
                    if track.recovered_row is None:
                        track.recovered_row = row
                watch = track.watch
                if watch is not None:
                    watch.update(value, row)
            else:
                track.add_bad(value, row)
        if count == 1 and self.split == TRAIN:
            reward = self.primary("reward", among=values)
            if reward is not None:
                self.zero_watch = det.ZeroRewardWatch(reward, self.primary("loss", among=values),
                                                      self.primary("grad", among=values))
        zero = self.zero_watch
        if zero is not None and not zero.done:
            zero.update(values, row)
        collector = self.collector
        if count % collector.stride == 0:
            self.kept.append(row)
            collector.kept_total += 1
            if collector.kept_total > MAX_KEPT_ROWS:
                collector.thin()

    def _new_track(self, key: str) -> Track:
        track = Track(key)
        role = role_of(key)
        limits = self.collector.thresholds
        if role in ("loss", "eval_loss") or (self.split == EVAL and key == "eval_loss"):
            track.watch = det.DivergenceWatch(limits["divergence"]["factor"])
        elif role == "grad":
            spike = limits["grad-spike"]
            track.watch = det.SpikeWatch(spike["factor"], int(spike["window"]), int(spike["min_history"]))
        elif role == "lr":
            track.watch = det.RiseWatch()
        return track

    def thin(self, stride: int) -> None:
        self.kept = [row for row in self.kept if row[R_INDEX] % stride == 0]

    # -- reading ------------------------------------------------------------------------------
    def primary(self, role: str, among: Mapping[str, float] | None = None) -> str | None:
        """The key that plays `role` (loss, grad, lr, reward, eval_loss) in this series, if any."""
        keys = among if among is not None else self.tracks
        for key in det.ROLE_KEYS[role]:
            if key in keys:
                return key
        return next((k for k in keys if role_of(k) == role), None)

    def rows(self) -> list[tuple]:
        """Kept rows and every pinned row, in order."""
        pinned = {row[R_INDEX]: row for row in self.kept}
        for row in self._pinned():
            if row is not None:
                pinned.setdefault(row[R_INDEX], row)
        return [pinned[i] for i in sorted(pinned)]

    def _pinned(self) -> Iterator[tuple | None]:
        yield self.first_row
        yield self.last_row
        for track in self.tracks.values():
            yield from (track.min_row, track.max_row, track.first_bad_row, track.before_bad_row, track.recovered_row)
            for first, last, _count in track.bad_runs:
                yield first
                yield last
            watch = track.watch
            if isinstance(watch, det.DivergenceWatch) and watch.crossed is not None:
                yield watch.crossed[0]
                yield watch.crossed[3]
            elif isinstance(watch, det.SpikeWatch) and watch.first is not None:
                yield watch.first[0]
        if self.zero_watch is not None:
            yield from (self.zero_watch.first_row, self.zero_watch.last_zero_row, self.zero_watch.broken_row)

    @property
    def label(self) -> str:
        return f"{self.split} run {self.run}" if self.run > 1 else self.split


class MetricCollector:
    """Reads metric lines as they stream by; `findings()` runs the detectors at the end."""

    def __init__(self, thresholds: Mapping[str, Mapping[str, float]] | None = None) -> None:
        self.thresholds = {k: dict(v) for k, v in (thresholds or det.resolve_thresholds()).items()}
        self.series: list[Series] = []
        self._open: dict[tuple[str, str], Series] = {}
        self._runs: dict[str, int] = {}
        self.stride = 1
        self.kept_total = 0
        self._bar: tuple[int, int] | None = None  # (line number, n) of the last progress bar
        self._pending_epoch: float | None = None  # Keras' `Epoch 3/10` line, for the row below it
        self.zero_trainable = False  # PEFT printed `trainable params: 0 || ...`
        self._findings: list[det.Finding] | None = None
        self._shapes: dict[str, tuple] = {}  # line shape -> plan (REJECTED: not a metrics line)
        self._offsets: dict[str, int] = {}  # of the line last parsed: value -> offset in the line
        self._key_plans: dict[tuple[str, ...], tuple] = {}  # a row's keys -> (index keys, train, eval)

    @property
    def has_rows(self) -> bool:
        return bool(self.series)

    # -- feeding ------------------------------------------------------------------------------
    def feed(self, line: LogLine) -> None:
        text = line.text
        if not text:
            return
        head = text.lstrip()
        if head[:1] == "{":
            self._feed_dict(head, line)
            return
        if "|" in text and "[" in text and text.endswith("]"):
            if self._feed_bar(text, line):
                return
        if "*****" in text and RUNNING_TRAINING in text:
            self._open.clear()
            return
        if "stopped:" in text and "Trainer.fit` stopped" in text:
            self._mark_completed()
            return
        if text.startswith(ZERO_TRAINABLE):
            self.zero_trainable = True
            return
        if "iteration" in text and "|" in text and self._feed_megatron(text, line):
            return
        if LINE_HINT_RE.search(text) is not None:
            self._feed_line(text, line)
        elif text[:6] in ("Epoch ", "epoch "):
            match = INDEX_RE.match(text)
            if match is not None and match.end() >= len(text.rstrip()) - 1:
                self._pending_epoch = float(match.group(2))

    def _feed_dict(self, text: str, line: LogLine) -> None:
        if text[-1] != "}" or DICT_CORE_RE.search(text) is None:
            return
        values: dict[str, float] = {}
        others = 0
        for key, single, double, bare in DICT_PAIR_RE.findall(text):
            raw = bare or single or double
            try:
                values[key] = float(raw)
            except ValueError:
                if bare:
                    return  # True, None, a list: a config or a batch printed, not a log of metrics
                others += 1
        if not values or others > len(values):
            return
        if "train_runtime" in values:
            self._mark_completed()
            return
        bar_step = self._bar[1] if self._bar is not None and self._bar[0] == line.number else None
        self._add_row(DICT, values, line, bar_step=bar_step)

    def _feed_bar(self, text: str, line: LogLine) -> bool:
        match = BAR_RE.match(text)
        if match is None:
            return False
        desc = match.group("desc") if match.group("n") is not None else match.group("desc2")
        desc = BAR_PERCENT_RE.sub("", desc).rstrip()
        n = match.group("n") or match.group("n2")
        info = match.group("info") if match.group("n") is not None else match.group("info2")
        self._bar = (line.number, int(n))
        if "=" not in info:
            return True
        values = {key.lower(): float(value) for key, value in POSTFIX_RE.findall(info)}
        values = {k: v for k, v in values.items() if k not in IGNORED_KEYS}
        if not values:
            return True
        epoch_match = BAR_EPOCH_RE.search(desc or "")
        epoch = float(epoch_match.group(1)) if epoch_match else self._pending_epoch
        self._pending_epoch = None
        train = self._open.get((BAR, TRAIN))
        if train is not None and train.last_row is not None and train.last_epoch == epoch and \
                train.last_row[R_VALUES] == {k: v for k, v in values.items() if not is_eval_key(k)}:
            return True  # the same final frame printed again when the bar closes
        self._add_row(BAR, values, line, epoch=epoch)
        return True

    def _feed_megatron(self, text: str, line: LogLine) -> bool:
        """A Megatron `training_log` or validation line; False when the line is neither."""
        train = MEGATRON_TRAIN_RE.match(text)
        match = train or MEGATRON_EVAL_RE.match(text)
        if match is None:
            return False
        values = {}
        for field in match.group("fields").split("|"):
            name, _, raw = field.partition(":")
            number = MEGATRON_FLOAT_RE.match(raw)
            if number is None:
                continue
            name = " ".join(name.split())
            if train is None:  # `lm loss value` (its `lm loss PPL` is exp of it: left out)
                name = name.removesuffix(" value")
                key = "eval_" + name.replace(" ", "_") if "loss" in name and "ppl" not in name.lower() else None
            else:
                key = MEGATRON_NAMES.get(name) or (name.replace(" ", "_") if names_a_loss(name.replace(" ", "_")) else None)
            if key is not None:
                values[key] = float(number.group(1))
        if train is not None:
            self._infer_megatron_nan(values, line)
        step = values.pop("global_step", None)
        epoch = float(train.group("epoch")) if train is not None and train.group("epoch") is not None else None
        if values:
            self._add_row(MEGATRON, values, line, step=int(step if step is not None else match.group("step")), epoch=epoch)
        return True

    def _infer_megatron_nan(self, values: dict[str, float], line: LogLine) -> None:
        """A loss is printed as its average over the interval's advanced (not skipped) iterations,
        and only if that average is > 0 (>= 0 since Megatron-LM 0.9): a NaN average disappears
        from the line (bigscience-workshop/Megatron-DeepSpeed#396, "I do not find loss in the
        logs", with `grad norm: nan`). So a loss this run printed before and misses now, while no
        iteration was skipped, was NaN; so was one whose skipped iterations were counted as NaN
        iterations. A loss of exactly 0 over skipped iterations is an average over nothing."""
        skipped, nan_iterations = values.get("skipped_iterations"), values.get("nan_iterations")
        if skipped is None:
            return
        for key in [k for k in values if names_a_loss(k) and values[k] == 0.0 and skipped > 0]:
            if nan_iterations:
                values[key] = math.nan
            else:
                del values[key]
        series = self._open.get((MEGATRON, TRAIN))
        if series is None or not (skipped == 0 or nan_iterations):
            return
        # Only when the run's main loss is gone: an auxiliary loss some batches lack also averages
        # to 0 and drops out, and is no NaN.
        main = series.primary("loss") or next((k for k in series.tracks if names_a_loss(k)), None)
        if main is None or main in values:
            return
        for key, track in series.tracks.items():
            if names_a_loss(key) and key not in values and track.count:
                values[key] = math.nan
                series.inferred_nan.setdefault(key, line.number)

    def _feed_line(self, text: str, line: LogLine) -> None:
        """A logging line, parsed once per shape: lines that differ only in their numbers (the
        same f-string of the same logger) share a plan that maps number positions to metrics."""
        numbers = NUMBER_RE.findall(text)
        shape = NUMBER_RE.sub("#", text)
        plan = self._shapes.get(shape)
        if plan is None:
            parsed = self._parse_line(text)
            plan = _line_plan(text, parsed, self._offsets) if parsed is not None else REJECTED
            if plan is not None:
                if len(self._shapes) >= MAX_SHAPES:
                    self._shapes.clear()
                self._shapes[shape] = plan
            elif parsed is not None:  # numbers the plan could not place: use this parse once
                fmt, values, step, epoch = parsed
                self._add_line_row(fmt, values, line, step, epoch)
                return
        if plan is REJECTED:
            return
        fmt, keys, step_at, epoch_at = plan
        values = {key: float(numbers[at]) for key, at in keys}
        step = float(numbers[step_at]) if step_at is not None else None
        epoch = float(numbers[epoch_at]) if epoch_at is not None else None
        self._add_line_row(fmt, values, line, step, epoch)

    def _add_line_row(self, fmt: str, values: dict[str, float], line: LogLine, step: float | None,
                      epoch: float | None) -> None:
        if epoch is None and self._pending_epoch is not None:
            epoch = self._pending_epoch
        self._pending_epoch = None
        self._add_row(fmt, values, line, step=step, epoch=epoch)

    def _parse_line(self, text: str) -> tuple[str, dict[str, float], float | None, float | None] | None:
        """(format, {metric: value}, step, epoch) of a logging line, or None when it is not a
        metrics line. Each value's offset in the line is kept in `self._offsets` for the plan."""
        self._offsets = offsets = {}
        if EXCEPTION_RE.search(text) is not None or ASSIGNMENT_RE.match(text) is not None:
            return None
        step = epoch = None
        spans: list[tuple[int, int]] = []
        for match in INDEX_RE.finditer(text):
            word, number = match.group(1).lower(), float(match.group(2))
            if word == "epoch":
                epoch = number
                offsets[EPOCH_SLOT] = match.start(2)
            else:
                step = number
                offsets[STEP_SLOT] = match.start(2)
            spans.append(match.span())
        values: dict[str, float] = {}
        for regex in (PAIR_RE, SPACE_PAIR_RE):
            for match in regex.finditer(text):
                start, end = match.span()
                if any(s < end and start < e for s, e in spans):
                    continue
                key = match.group(1).lower().replace(" ", "_")
                spans.append((start, end))
                if key in INDEX_KEYS:
                    if INDEX_KEYS[key] == "epoch":
                        epoch = float(match.group(2))
                        offsets[EPOCH_SLOT] = match.start(2)
                    else:
                        step = float(match.group(2))
                        offsets[STEP_SLOT] = match.start(2)
                    continue
                values[key] = float(match.group(2))
                offsets[key] = match.start(2)
        core = sum(1 for k in values if _is_core(k))
        if not core or core < len(values) - core:
            return None  # mostly other numbers: a config or a summary line that mentions lr, not a step
        spans.sort()
        leftover, cursor = [], 0
        for start, end in spans:
            leftover.append(text[cursor:start])
            cursor = max(cursor, end)
        leftover.append(text[cursor:])
        words = [w.lower() for w in WORD_RE.findall(" ".join(leftover))]
        if sum(1 for w in words if w not in FREE_WORDS) > MAX_PROSE_WORDS or CONFIG_WORDS.intersection(words):
            return None
        if words and words[0] in EVAL_WORDS:
            renamed = {k: k if is_eval_key(k) else f"eval_{k}" for k in values}
            values = {renamed[k]: v for k, v in values.items()}
            self._offsets = {renamed.get(k, k): at for k, at in offsets.items()}
        return (LINE if step is not None else LINE_UNNUMBERED), values, step, epoch

    def _add_row(self, fmt: str, values: dict[str, float], line: LogLine, step: float | None = None,
                 epoch: float | None = None, bar_step: int | None = None) -> None:
        keys = tuple(values)
        plan = self._key_plans.get(keys)
        if plan is None:
            if len(self._key_plans) >= MAX_SHAPES:
                self._key_plans.clear()
            plan = self._key_plans[keys] = (
                tuple((k, INDEX_KEYS.get(k)) for k in keys if k in INDEX_KEYS or k in IGNORED_KEYS),
                tuple(k for k in keys if k not in INDEX_KEYS and k not in IGNORED_KEYS and not is_eval_key(k)),
                tuple(k for k in keys if k not in INDEX_KEYS and is_eval_key(k)),
            )
        index_keys, train_keys, eval_keys = plan
        for key, kind in index_keys:
            value = values.pop(key)
            if kind == "epoch":
                epoch = value
            elif kind == "step" and step is None and value - value == 0.0:
                step = value
        if type(step) is float and step.is_integer():
            step = int(step)
        if eval_keys:
            eval_values = {k: values.pop(k) for k in eval_keys}
        elif not train_keys:
            return
        else:
            eval_values = None
        self._findings = None
        train = self._open.get((fmt, TRAIN))
        if train_keys:
            if step is not None:
                kind, row_step = STEP_EXPLICIT, step
            elif bar_step is not None:
                kind, row_step = STEP_BAR, bar_step
            else:
                kind, row_step = STEP_ORDER, (train.last_step + 1 if train is not None else 1)
            if train is not None and (row_step < train.last_step or (
                    epoch is not None and train.last_epoch is not None and epoch < train.last_epoch - EPOCH_TOLERANCE)):
                self._open.pop((fmt, EVAL), None)  # a restart: this run's series end here
                train = None
                if kind == STEP_ORDER:
                    row_step = 1
            if train is None:
                train = self._start(fmt, TRAIN, kind)
            train.add(values, row_step, epoch, line.number, line.text)
        if eval_values:
            evals = self._open.get((fmt, EVAL))
            if step is not None:
                row_step = step
            elif train is not None and train.last_step is not None:
                row_step = train.last_step
            else:
                row_step = evals.last_step + 1 if evals is not None else 1
            if evals is not None and train is None and _goes_back(evals, row_step, epoch):
                evals = None
            if evals is None:
                evals = self._start(fmt, EVAL, STEP_EXPLICIT if step is not None else STEP_ORDER)
            evals.add(eval_values, row_step, epoch, line.number, line.text)

    def _start(self, fmt: str, split: str, step_kind: str) -> Series:
        run = self._runs[(fmt, split)] = self._runs.get((fmt, split), 0) + 1
        series = Series(self, fmt, split, run, step_kind)
        self._open[(fmt, split)] = series
        self.series.append(series)
        return series

    def _mark_completed(self) -> None:
        for series in self._open.values():
            series.completed = True

    def thin(self) -> None:
        """Halve the rows kept: every series keeps only the rows on the doubled stride."""
        self.stride *= 2
        self.kept_total = 0
        for series in self.series:
            series.thin(self.stride)
            self.kept_total += len(series.kept)

    # -- results ------------------------------------------------------------------------------
    def findings(self, source: str = "") -> list[Evidence]:
        """Run every detector over every series; one piece of evidence per finding."""
        return [finding.evidence(source) for finding in self._all_findings()]

    def _all_findings(self) -> list[det.Finding]:
        if self._findings is None:
            self._findings = [f for series in self.series for f in det.detect(series, self)]
        return self._findings

    def summary_for(self, line_number: int, detector: str | None = None) -> MetricSummary | None:
        """The metrics section of the incident reported at `line_number`: the series a detector
        fired on, or (for an error that is not a detector's) the train series around that line."""
        for finding in self._all_findings():
            if finding.row[R_LINE] == line_number and (detector is None or finding.detector == detector):
                return summarize(finding.series, finding.failure_row, finding.metric, finding.label,
                                 finding.label_zh)
        trains = [s for s in self.series if s.split == TRAIN and s.first_row[R_LINE] <= line_number]
        if not trains:
            trains = [s for s in self.series if s.split == TRAIN]
        if not trains:
            return None
        series = trains[-1]
        failing = det.first_nonfinite(series)
        if failing is None:
            return summarize(series, None, None, "", "")
        track = series.tracks[failing]
        word = det.nonfinite_word(track.first_bad_value)
        return summarize(series, track.first_bad_row, failing, f"{failing} became {word}", f"{failing} 变为 {word}")

    def summaries(self) -> list[MetricSummary]:
        return [summarize(series, None, None, "", "") for series in self.series]

    def records(self) -> Iterator[dict]:
        """The kept rows of every series, as flat records (format, run, split, step, epoch, line, metrics)."""
        for series in self.series:
            for row in series.rows():
                record = {"format": series.format, "run": series.run, "split": series.split,
                          "step": row[R_STEP], "epoch": row[R_EPOCH], "line": row[R_LINE]}
                record.update(row[R_VALUES])
                yield record

    def to_frame(self):
        """The extracted series as a pandas DataFrame, one row per kept logged step."""
        import pandas as pd

        return pd.DataFrame.from_records(list(self.records()))


def _line_plan(text: str, parsed: tuple, offsets: Mapping[str, int]) -> tuple | None:
    """Where each value of a parsed line sits among the line's numbers; None if one does not."""
    fmt, values, step, epoch = parsed
    starts = {m.start(): i for i, m in enumerate(NUMBER_RE.finditer(text))}
    try:
        keys = tuple((key, starts[offsets[key]]) for key in values)
        step_at = starts[offsets[STEP_SLOT]] if step is not None else None
        epoch_at = starts[offsets[EPOCH_SLOT]] if epoch is not None else None
    except KeyError:
        return None
    return fmt, keys, step_at, epoch_at


def _is_core(key: str) -> bool:
    last = key.rsplit("/", 1)[-1]
    return "loss" in key or last in CORE_WORDS or last.rsplit("_", 1)[-1] in CORE_WORDS


def _goes_back(series: Series, step: float, epoch: float | None) -> bool:
    if series.last_step is not None and step < series.last_step:
        return True
    return epoch is not None and series.last_epoch is not None and epoch < series.last_epoch - EPOCH_TOLERANCE
