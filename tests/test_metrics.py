"""Training dynamics: the metric series read from each log format, the detectors over them, and
what the draft and the `metrics` command show. The logs are in tests/data/metrics/."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from postmortem import detectors, metrics
from postmortem.cli import cli
from postmortem.detectors import ThresholdError, resolve_thresholds
from postmortem.knowledge import SignatureError, compile_signature, load_knowledge_base
from postmortem.metrics import MetricCollector
from postmortem.summaries import sparkline
from postmortem.model import LogLine
from postmortem.render import render_json, render_markdown
from postmortem.scan import extract_metrics, scan

DATA = Path(__file__).resolve().parent / "data" / "metrics"
KB = load_knowledge_base(include_user=False)


def series_of(name):
    """{(format, split, run): [(step, epoch, {metric: value}), ...]} of a test log."""
    found = {}
    for record in extract_metrics(DATA / name).records():
        key = (record.pop("format"), record.pop("split"), record.pop("run"))
        step, epoch = record.pop("step"), record.pop("epoch")
        record.pop("line")
        found.setdefault(key, []).append((step, epoch, record))
    return found


def incidents(name, **options):
    return scan([DATA / name], kb=KB, **options).incidents


def ids(name):
    return [i.signature for i in incidents(name)]


# -- one test per input format: the extracted numbers are the ones in the log -------------------
def test_trainer_dicts_take_the_step_from_the_bar_and_keep_eval_apart():
    found = series_of("hf-trainer.log")
    assert found[("dict", "train", 1)] == [
        (20, 0.4, {"loss": 0.6931, "grad_norm": 4.1127, "learning_rate": 2.4e-05}),
        (40, 0.8, {"loss": 0.5512, "grad_norm": 3.0046, "learning_rate": 1.8e-05}),
        (60, 1.2, {"loss": 0.4218, "grad_norm": 2.5531, "learning_rate": 1.2e-05}),
        (80, 1.6, {"loss": 0.3377, "grad_norm": 2.0178, "learning_rate": 6e-06}),
        (100, 2.0, {"loss": 0.2964, "grad_norm": 1.7702, "learning_rate": 0.0}),
    ]
    # evaluated at step 60; the end-of-training summary (train_runtime) is not a row
    assert found[("dict", "eval", 1)] == [
        (60, 1.2, {"eval_loss": 0.4402, "eval_accuracy": 0.8125, "eval_runtime": 2.1,
                   "eval_samples_per_second": 190.4, "eval_steps_per_second": 11.9}),
    ]
    assert len(found) == 2


def test_quoted_values_of_recent_transformers_are_numbers_with_nan_and_inf():
    rows = series_of("hf-quoted.log")[("dict", "train", 1)]
    assert [step for step, _, _ in rows] == [1, 2, 3, 4]
    assert [(v["loss"], v["learning_rate"]) for _, _, v in rows][:2] == [(3.412, 5e-06), (2.981, 1e-05)]
    assert math.isnan(rows[2][2]["loss"]) and math.isnan(rows[2][2]["grad_norm"])
    assert rows[3][2]["grad_norm"] == math.inf


def test_trl_grpo_dicts_keep_every_reward_and_completion_key():
    rows = series_of("grpo-recovers.log")[("dict", "train", 1)]
    assert len(rows) == 30
    first, twenty_first = rows[0][2], rows[20][2]
    assert (first["reward"], first["loss"], first["grad_norm"], first["frac_reward_zero_std"]) == (0.0, 0.0, 0.0, 1.0)
    assert first["completions/mean_length"] == 310.4
    assert twenty_first["reward"] == 0.25 and twenty_first["rewards/accuracy_reward/mean"] == 0.25
    assert twenty_first["kl"] == 0.0004


def test_tqdm_postfix_values_with_the_epoch_of_the_line_above():
    assert series_of("tqdm-postfix.log") == {("bar", "train", 1): [
        (1, 1.0, {"loss": 0.912, "lr": 1e-4}),
        (2, 2.0, {"loss": 0.587, "lr": 1e-4}),
        (3, 3.0, {"loss": 0.431, "lr": 5e-5}),
    ]}


def test_lightning_bar_gives_train_loss_per_epoch_and_validation_apart_without_v_num():
    found = series_of("lightning.log")
    assert found[("bar", "train", 1)] == [
        (1, 0.0, {"train_loss": 1.204}), (2, 1.0, {"train_loss": 0.877}), (3, 2.0, {"train_loss": 0.634}),
    ]
    assert found[("bar", "eval", 1)] == [
        (2, 1.0, {"val_loss": 0.951, "val_acc": 0.662}), (3, 2.0, {"val_loss": 0.702, "val_acc": 0.756}),
    ]


def test_logging_lines_with_key_equals_value_and_explicit_steps():
    assert series_of("kv-logging.log") == {("line", "train", 1): [
        (100, 0.0, {"loss": 0.8123, "lr": 3.0e-4, "grad_norm": 1.92}),
        (200, 0.0, {"loss": 0.6011, "lr": 3.0e-4, "grad_norm": 1.41}),
        (300, 1.0, {"loss": 0.5234, "lr": 2.5e-4, "grad_norm": 1.18}),
        (400, 1.0, {"loss": 0.4712, "lr": 2.0e-4, "grad_norm": 0.97}),
    ]}


def test_epoch_pipe_key_colon_value_lines_count_rows_and_split_validation():
    found = series_of("epoch-pipe.log")
    assert found[("line-unnumbered", "train", 1)] == [
        (1, 1.0, {"loss": 1.0821, "acc": 0.612}), (2, 2.0, {"loss": 0.7436, "acc": 0.7415}),
        (3, 3.0, {"loss": 0.5902, "acc": 0.7968}),
    ]
    assert [v["val_loss"] for _, _, v in found[("line-unnumbered", "eval", 1)]] == [0.9954, 0.8127, 0.7719]


def test_nanogpt_iterations_and_eval_lines():
    found = series_of("nanogpt.log")
    assert [(s, v) for s, _, v in found[("line", "train", 1)]] == [
        (0, {"train_loss": 4.2231}), (0, {"loss": 4.2301}), (10, {"loss": 3.5118}), (20, {"loss": 3.1024}),
        (250, {"train_loss": 1.9312}), (250, {"loss": 1.972}),
    ]
    assert [(s, v) for s, _, v in found[("line", "eval", 1)]] == [(0, {"val_loss": 4.2257}), (250, {"val_loss": 2.0405})]


def test_keras_epoch_lines_old_and_new_progress_bars():
    found = series_of("keras.log")
    assert found[("line-unnumbered", "train", 1)] == [
        (1, 1.0, {"loss": 0.4873, "accuracy": 0.8612}),
        (2, 2.0, {"loss": 0.2391, "accuracy": 0.9307}),
        (3, 3.0, {"accuracy": 0.9511, "loss": 0.1702}),
    ]
    assert [v["val_accuracy"] for _, _, v in found[("line-unnumbered", "eval", 1)]] == [0.914, 0.9398, 0.9502]


def test_prose_config_summaries_and_tracebacks_give_no_metric_rows():
    assert series_of("not-metrics.log") == {}


@pytest.mark.parametrize("name", ["restart-dicts.log", "restart-steps.log"])
def test_a_restart_begins_a_new_series(name):
    runs = [key for key in series_of(name) if key[1] == "train"]
    assert [run for _, _, run in runs] == [1, 2]


# -- detectors ----------------------------------------------------------------------------------
def test_nan_at_a_known_step_names_the_step_and_the_last_finite_value():
    (incident,) = incidents("nan-at-step.log")
    assert incident.signature == "nan-output"
    assert incident.vars["metric"] == "loss"
    assert (incident.vars["step"], incident.vars["last_finite"], incident.vars["last_finite_step"]) == ("880", "5.6e+03", "870")
    assert "`loss` became NaN at step 880 (epoch 1.96), last finite 5.6e+03 at step 870" in incident.symptom
    assert incident.vars["recovered"] == "no"


def test_the_same_log_without_nan_lines_gives_divergence_and_no_nan_output():
    (incident,) = incidents("divergence-no-nan.log")
    assert incident.signature == "loss-divergence"
    assert int(incident.vars["peak"]) >= 1000


def test_grpo_zeros_for_20_steps_then_recovery_is_a_warning_that_says_step_21():
    # every completion of every group failed until step 21: no advantage, no gradient, then one
    # group scored; the draft explains the cold start and says it broke, before worry_steps (50)
    (incident,) = incidents("grpo-recovers.log")
    assert (incident.signature, incident.severity) == ("zero-reward-cold-start", "warning")
    assert incident.vars["zero_steps"] == "20" and incident.vars["recovered_step"] == "21"
    assert "It recovered at step 21" in incident.symptom and "a cold start, not a bug" in incident.symptom


GRPO_ZERO = "{'loss': 0.0, 'grad_norm': 0.0, 'learning_rate': 1e-06, 'reward': 0.0, 'reward_std': 0.0, 'frac_reward_zero_std': 1.0, 'kl': 0.0}"
GRPO_SCORED = "{'loss': 0.012, 'grad_norm': 0.31, 'learning_rate': 1e-06, 'reward': 0.125, 'reward_std': 0.33, 'frac_reward_zero_std': 0.75, 'kl': 0.0}"


def zero_reward_findings(zero_steps: int, scored_steps: int):
    log = "\n".join([GRPO_ZERO] * zero_steps + [GRPO_SCORED] * scored_steps)
    return [f for f in _collect(log).findings() if f.text == "zero-reward"]


def test_a_cold_start_of_a_few_steps_is_no_finding():
    assert zero_reward_findings(9, 20) == []


def test_a_cold_start_that_recovers_only_after_worry_steps_is_a_warning_that_says_so(monkeypatch):
    monkeypatch.setenv("POSTMORTEM_THRESHOLDS", "zero-reward.worry_steps=20")
    (incident,) = incidents("grpo-recovers.log")
    assert (incident.signature, incident.severity) == ("zero-reward-cold-start", "warning")
    assert incident.vars["zero_steps"] == "20" and incident.vars["recovered_step"] == "21"
    assert "It recovered at step 21" in incident.symptom and "only after 20 all-zero logged steps, past the 20" in incident.symptom


def test_a_cold_start_longer_than_the_default_worry_steps_is_reported_at_its_first_step():
    found = zero_reward_findings(60, 5)
    assert [(f.line_number, f.values["zero_steps"], f.values["recovered_step"]) for f in found] == [(1, "60", "61")]
    [short] = zero_reward_findings(49, 5)
    assert "past the" not in short.values["detail"]


def test_grpo_that_never_recovers_says_so():
    (incident,) = incidents("grpo-never.log")
    assert incident.signature == "zero-reward-cold-start"
    assert incident.vars["recovered"] == "no"
    assert "It never recovered" in incident.symptom
    zh = scan([DATA / "grpo-never.log"], kb=KB, lang="zh").incidents[0]
    assert "始终没有恢复" in zh.symptom


@pytest.mark.parametrize("name", ["clean-sft-overfit.log", "clean-grpo.log", "clean-fp16.log", "hf-trainer.log",
                                  "lightning.log", "keras.log", "nanogpt.log", "kv-logging.log", "epoch-pipe.log"])
def test_clean_runs_give_nothing(name):
    assert ids(name) == []


def test_thresholds_come_from_the_environment_and_are_checked():
    assert resolve_thresholds(environ={"POSTMORTEM_THRESHOLDS": "divergence.factor=10000"})["divergence"]["factor"] == 10000
    with pytest.raises(ThresholdError, match="no threshold 'facter'"):
        resolve_thresholds(environ={"POSTMORTEM_THRESHOLDS": "divergence.facter=3"})


def test_a_higher_divergence_factor_from_the_environment_silences_the_finding(monkeypatch):
    monkeypatch.setenv("POSTMORTEM_THRESHOLDS", "divergence.factor=100000")
    # the loss also climbed back past where it started: the rebound rule has its own threshold
    assert "loss-divergence" in ids("divergence-no-nan.log")
    monkeypatch.setenv("POSTMORTEM_THRESHOLDS", "divergence.factor=100000,divergence.rebound=100000")
    assert "loss-divergence" not in ids("divergence-no-nan.log")


def test_a_signature_can_set_its_detector_thresholds_and_typos_are_refused(tmp_path):
    raw = {
        "schema": 1, "id": "my-divergence", "category": "numerics", "severity": "error",
        "references": ["https://pytorch.org/docs/stable/generated/torch.nn.utils.clip_grad_norm_.html"],
        "match": {"metric": "divergence", "thresholds": {"factor": 1000}},
        "en": {k: "x" for k in ("title", "symptom", "cause", "fix", "lesson")},
        "zh": {k: "x" for k in ("title", "symptom", "cause", "fix", "lesson")},
    }
    assert compile_signature(raw, tmp_path / "my-divergence.toml").thresholds == {"factor": 1000.0}
    raw["match"]["thresholds"] = {"factr": 1000}
    with pytest.raises(SignatureError, match="match.thresholds"):
        compile_signature(raw, tmp_path / "my-divergence.toml")
    raw["match"] = {"metric": "divergance"}
    with pytest.raises(SignatureError, match="match.metric"):
        compile_signature(raw, tmp_path / "my-divergence.toml")


# -- memory ---------------------------------------------------------------------------------------
def test_millions_of_rows_keep_a_bounded_sample_with_every_nan_run_exact(monkeypatch):
    monkeypatch.setattr(metrics, "MAX_KEPT_ROWS", 1_000)
    collector = MetricCollector()
    for step in range(1, 200_001):
        loss = math.nan if 150_000 <= step < 150_010 else 2.0 / math.sqrt(step)
        collector.feed(LogLine(step, f"step {step} loss={loss} lr=1e-4"))
    (series,) = collector.series
    assert len(series.kept) <= 1_000 and series.count == 200_000
    track = series.tracks["loss"]
    assert [(first[1], last[1], count) for first, last, count in track.bad_runs] == [(150_000, 150_009, 10)]
    steps = {row[1] for row in series.rows()}
    assert {149_999, 150_000, 150_009, 150_010, 1, 200_000} <= steps
    (finding,) = collector.findings("big.log")
    assert (finding.values["step"], finding.values["recovered_step"]) == ("150000", "150010")


def test_a_log_without_metrics_never_imports_pandas(tmp_path):
    log = tmp_path / "traceback.log"
    log.write_text('Traceback (most recent call last):\n  File "/home/user/proj/train.py", line 3, in <module>\n'
                   "    main()\nValueError: something went wrong\n", encoding="utf-8")
    code = ("import sys; from postmortem import scan; scan([sys.argv[1]]); "
            "assert 'pandas' not in sys.modules, 'pandas was imported'")
    subprocess.run([sys.executable, "-c", code, str(log)], check=True)


# -- the draft ------------------------------------------------------------------------------------
def test_the_draft_shows_a_table_and_a_sparkline_marked_at_the_failure_step():
    report = scan([DATA / "nan-at-step.log"], kb=KB)
    text = render_markdown(report)
    assert "| metric | first | min | max | last | at step 880 |" in text
    assert "| `loss` | 2.24 |" in text
    spark = next(line for line in text.splitlines() if line.strip().startswith("loss ") and "×" in line)
    marker = text.splitlines()[text.splitlines().index(spark) + 1]
    assert marker.rstrip().endswith("^ step 880: loss became NaN")
    # the ^ stands under the first ×
    assert marker.index("^") == spark.index("×")


def test_json_keeps_its_contract_keys_only():
    payload = json.loads(render_json(scan([DATA / "nan-at-step.log"], kb=KB)))
    assert set(payload["incidents"][0]) == {
        "signature", "title", "category", "severity", "count", "source", "line", "evidence", "location",
        "vars", "symptom", "cause", "fix", "lesson", "references", "explained_by"}
    assert not any(key.endswith("_zh") for key in payload["incidents"][0]["vars"])


def test_an_exception_about_nan_gets_the_metrics_of_the_run_before_it():
    from postmortem.scan import scan_text

    log = (DATA / "hf-trainer.log").read_text(encoding="utf-8") + (
        "Traceback (most recent call last):\n"
        '  File "/home/user/proj/predict.py", line 41, in <module>\n'
        "    model.fit(X, y)\n"
        "ValueError: Input X contains NaN.\n")
    (incident,) = scan_text(log, kb=KB).incidents
    assert (incident.signature, incident.vars["input"]) == ("nan-output", "X")
    assert incident.metrics is not None and incident.metrics.steps == "20–100"
    assert incident.metrics.failure_step == ""  # the logged metrics stayed finite


def test_sparkline_draws_the_curve_and_crosses_for_non_finite_bins():
    line = sparkline("loss", [(1, 4.0), (2, 3.0), (3, 2.0), (4, 1.0), (5, math.nan)], mark_step=5)
    assert line.line == "█▆▃▁×" and line.marker == "    ^"


# -- the command line -----------------------------------------------------------------------------
def run(args, **env):
    result = CliRunner().invoke(cli, args, env={"POSTMORTEM_LANG": "en", **env})
    return result


def test_metrics_command_exports_csv_with_nan_and_empty_cells():
    result = run(["metrics", str(DATA / "hf-quoted.log")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "format,run,split,step,epoch,line,loss,grad_norm,learning_rate"
    assert lines[3] == "dict,1,train,3,0.03,3,nan,nan,1.5e-05"


def test_metrics_command_exports_json_and_markdown():
    payload = json.loads(run(["metrics", str(DATA / "kv-logging.log"), "--format", "json"]).output)
    assert [row["loss"] for row in payload["rows"]] == [0.8123, 0.6011, 0.5234, 0.4712]
    markdown = run(["metrics", str(DATA / "grpo-recovers.log"), "--format", "md"]).output
    assert "| `reward` | 0 | 0 |" in markdown and "▁▁▁" in markdown


def test_plot_without_matplotlib_says_how_to_install_it_and_exits_2(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    result = run(["scan", str(DATA / "nan-at-step.log"), "--plot", "plots"])
    assert result.exit_code == 2
    assert "pip install 'postmortem[plot]'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_plot_writes_a_png_linked_from_the_draft(tmp_path):
    pytest.importorskip("matplotlib")
    result = run(["scan", str(DATA / "nan-at-step.log"), "--plot", str(tmp_path / "plots"),
                  "-o", str(tmp_path / "report.md")])
    assert result.exit_code == 0, result.output
    (png,) = (tmp_path / "plots").glob("*.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"](plots/{png.name})" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_detector_names_are_the_ones_signatures_use():
    used = {sig.metric for sig in KB.signatures if sig.metric}
    assert used <= set(detectors.DETECTORS)
    assert {"non-finite", "divergence", "zero-reward", "flat-loss", "grad-spike", "lr-anomaly"} <= used


def _comparable(records):
    return [{k: "nan" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in records]


@pytest.mark.parametrize("path", sorted(DATA.glob("*.log")), ids=lambda p: p.name)
def test_the_prefiltered_scan_reads_the_same_series_as_reading_every_line(path):
    import io

    from postmortem.scan import Scanner

    data = path.read_bytes()
    fast = Scanner(KB).scan_stream(io.BytesIO(data), path.name)
    every = Scanner(KB, every_line=True).scan_stream(io.BytesIO(data), path.name)
    assert _comparable(fast.metrics.records()) == _comparable(every.metrics.records())


def test_the_chinese_draft_has_the_chinese_metrics_words_and_detail():
    text = render_markdown(scan([DATA / "nan-at-step.log"], kb=KB, lang="zh"))
    assert "| 指标 | 首个 | 最小 | 最大 | 最后 | 第 880 步 |" in text
    assert "`loss` 在第 880 步（epoch 1.96）变成 NaN" in text
    assert "第 880 步：loss 变成 NaN" in text


def test_the_dataframe_has_one_row_per_logged_step_and_a_column_per_metric():
    frame = extract_metrics(DATA / "hf-trainer.log").to_frame()
    assert list(frame.columns[:6]) == ["format", "run", "split", "step", "epoch", "line"]
    train = frame[frame["split"] == "train"]
    assert train["loss"].tolist() == [0.6931, 0.5512, 0.4218, 0.3377, 0.2964]
    assert frame[frame["split"] == "eval"]["eval_loss"].tolist() == [0.4402]


# -- bounded losses diverge by coming back up; a loss fixed to seven digits learns nothing --------
def _collect(text):
    collector = MetricCollector()
    for number, line in enumerate(text.splitlines(), 1):
        collector.feed(LogLine(number=number, text=line))
    return collector


def _rebound_log(noise=0.0, seed=0):
    import random
    rng = random.Random(seed)
    lines = []
    for i in range(1, 41):
        if i <= 20:
            loss = 2.3 + 5.0 * math.exp(-i / 4)
        elif i <= 24:
            loss = 2.35 + (i - 20) * 1.2
        else:
            loss = 7.1
        lines.append(f"step {i * 100} loss={loss * math.exp(rng.gauss(0, noise)):.4f} lr=3.0e-04")
    return "\n".join(lines)


def test_a_cross_entropy_loss_back_at_its_start_is_a_divergence_at_the_step_it_came_back():
    found = [f for f in _collect(_rebound_log()).findings() if f.text == "divergence"]
    assert len(found) == 1
    assert found[0].values["case"] == "rebound" and found[0].values["step"] == "2200"  # 4.75, past 80% of the way back to the start (~4.7)
    assert "climbed back" in found[0].values["detail"]


def test_step_to_step_noise_and_one_bad_batch_are_not_a_rebound():
    import random
    rng = random.Random(3)
    lines = [f"step {i} loss={(0.9 + 1.2 * math.exp(-i / 6)) * math.exp(rng.gauss(0, 0.5)):.4f}" for i in range(1, 81)]
    lines[50] = "step 51 loss=3.9000"
    assert not [f for f in _collect("\n".join(lines)).findings() if f.text == "divergence"]


def test_the_rebound_threshold_can_be_raised_like_any_other():
    collector = MetricCollector(resolve_thresholds(environ={"POSTMORTEM_THRESHOLDS": "divergence.rebound=5"}))
    for number, line in enumerate(_rebound_log().splitlines(), 1):
        collector.feed(LogLine(number=number, text=line))
    assert not [f for f in collector.findings() if f.text == "divergence"]


def test_a_loss_identical_to_seven_digits_is_no_learning_but_a_rounded_zero_is_not():
    constant = "\n".join('{"train_loss": 11.090352058410645, "train_lr": %s, "epoch": %d}' % (1e-4 - i * 1e-6, i)
                         for i in range(12))
    found = [f for f in _collect(constant).findings() if f.text == "flat-loss"]
    assert found and found[0].values["constant"] == "yes"
    rounded = "\n".join("{'loss': 0.0001, 'grad_norm': 0.002, 'learning_rate': 1e-05, 'epoch': %d.0}" % i for i in range(12))
    assert not _collect(rounded).findings()


def test_name_value_columns_with_any_prefix_before_loss_are_read():
    collector = _collect("[train] iter    500 | lm_loss 6.1574 | lr 3.000e-04 | 42275 tok/s\n"
                         "[train] iter   1000 | lm_loss 5.2236 | lr 3.000e-04 | 41523 tok/s")
    rows = [(r["step"], r["lm_loss"], r["lr"]) for r in collector.records()]
    assert rows == [(500, 6.1574, 0.0003), (1000, 5.2236, 0.0003)]


# -- Megatron-LM / Megatron-DeepSpeed / NeMo / gpt-neox `training_log` lines ----------------------
def _megatron(step, middle, skipped=0, nan=0, stamp=""):
    return (f"{stamp} iteration {step:8d}/{250000:8d} | consumed samples: {step * 512:12d} | elapsed time per iteration (ms): "
            f"1010.2 | learning rate: 5.996E-04 | global batch size: {512:5d} |{middle} number of skipped iterations: "
            f"{skipped:3d} | number of nan iterations: {nan:3d} |")


def test_megatron_iteration_lines_give_the_step_losses_grad_norm_lr_and_loss_scale():
    collector = _collect("\n".join([
        _megatron(5426, " lm loss: 5.201453E+00 | loss scale: 1.0 | grad norm: 0.312 |"),
        _megatron(5427, " lm loss: 5.198100E+00 | z_loss: 1.2E-03 | loss scale: 1.0 | grad norm: 0.305 |",
                  stamp=" [2026-03-02 09:12:44.101332]"),
        " validation loss at iteration 5427 on validation set | lm loss value: 5.310000E+00 | lm loss PPL: 2.02E+02 | ",
    ]))
    rows = [(r["split"], r["step"], r.get("lm_loss"), r.get("grad_norm"), r.get("learning_rate"), r.get("loss_scale"),
             r.get("eval_lm_loss")) for r in collector.records()]
    assert rows == [("train", 5426, 5.201453, 0.312, 5.996e-04, 1.0, None),
                    ("train", 5427, 5.1981, 0.305, 5.996e-04, 1.0, None),
                    ("eval", 5427, None, None, None, None, 5.31)]
    assert not collector.findings()


def test_a_megatron_loss_column_that_disappears_with_no_skipped_iteration_is_a_nan():
    # Megatron prints a loss only `if avg > 0.0`: a NaN average leaves the column out
    # (bigscience-workshop/Megatron-DeepSpeed#396: "I do not find loss in the logs").
    lines = [_megatron(s, f" lm loss: {2.3 - s * 1e-4:.6E} | loss scale: 1.0 | grad norm: 0.29 |") for s in range(100, 110)]
    lines += [_megatron(s, " loss scale: 1.0 | grad norm: nan |") for s in range(110, 115)]
    (finding,) = _collect("\n".join(lines)).findings()
    assert (finding.text, finding.values["metric"], finding.values["step"]) == ("non-finite", "lm_loss", "110")
    assert finding.values["inferred"] == "yes" and finding.values["recovered"] == "no"
    assert "column is missing" in finding.values["detail"]


def test_fp16_skipped_iterations_without_a_loss_are_the_loss_scaler_not_a_nan():
    lines = [_megatron(10, " loss scale: 8388608.0 |", skipped=10)]  # the loss-scale search at the start
    lines += [_megatron(s, f" lm loss: {9 - s / 100:.6E} | loss scale: 32768.0 | grad norm: 5.2 |") for s in range(20, 200, 10)]
    lines.append(_megatron(200, " loss scale: 16384.0 |", skipped=10))  # a whole interval skipped: no loss printed
    lines.append(_megatron(210, " lm loss: 0.000000E+00 | loss scale: 8192.0 |", skipped=10))  # `avg >= 0.0`: 0 over nothing
    lines += [_megatron(s, f" lm loss: {9 - s / 100:.6E} | loss scale: 8192.0 | grad norm: 5.0 |") for s in range(220, 300, 10)]
    collector = _collect("\n".join(lines))
    assert not collector.findings()
    assert [r["step"] for r in collector.records() if "lm_loss" in r][:3] == [20, 30, 40]
    assert not [r for r in collector.records() if r.get("lm_loss") == 0.0]


def test_megatron_nan_iterations_without_a_loss_are_a_nan_loss():
    lines = [_megatron(s, f" lm loss: {3 - s / 1000:.6E} | loss scale: 4096.0 | grad norm: 1.1 |") for s in range(10, 110, 10)]
    lines += [_megatron(s, " loss scale: 1.0 |", skipped=10, nan=10) for s in range(110, 160, 10)]
    (finding,) = _collect("\n".join(lines)).findings()
    assert (finding.text, finding.values["metric"], finding.values["step"]) == ("non-finite", "lm_loss", "110")


def test_an_auxiliary_loss_that_drops_out_is_not_a_nan():
    lines = [_megatron(s, f" lm loss: {3 - s / 1000:.6E} | mtp loss: 2.1E+00 | loss scale: 1.0 | grad norm: 1.1 |")
             for s in range(10, 200, 10)]
    lines.insert(5, _megatron(60, " lm loss: 2.94E+00 | loss scale: 1.0 | grad norm: 1.1 |"))
    assert not _collect("\n".join(lines)).findings()


@pytest.mark.parametrize("nan_field", [" lm loss: nan |", " lm_loss: NAN |"])
def test_a_printed_megatron_or_gpt_neox_nan_loss_is_nan_output_through_the_whole_scan(nan_field):
    from postmortem.scan import scan_bytes
    lines = [_megatron(s, f" lm loss: {4 - s / 1000:.6E} | loss scale: 1.0 | grad norm: 0.4 |") for s in range(1, 30)]
    lines += [_megatron(s, nan_field + " loss scale: 1.0 | grad norm: nan |") for s in range(30, 40)]
    report = scan_bytes("\n".join(lines).encode(), kb=KB, source="megatron.log", redact=False)
    assert [(i.signature, i.vars["step"]) for i in report.incidents] == [("nan-output", "30")]


def test_nemo2_progress_lines_take_the_global_step_and_the_reduced_train_loss():
    collector = _collect(
        "Training epoch 0, iteration 120/149 | lr: 3e-05 | consumed_samples: 121 | global_batch_size: 1 | "
        "global_step: 120 | reduced_train_loss: 1.233 | train_step_timing in s: 0.03146 | val_loss: 4.106")
    rows = [(r["split"], r["step"], r["epoch"], r.get("reduced_train_loss"), r.get("lr"), r.get("val_loss"))
            for r in collector.records()]
    assert rows == [("train", 120, 0.0, 1.233, 3e-05, None), ("eval", 120, 0.0, None, None, 4.106)]


def test_the_full_width_colon_of_chinese_logs_is_read():
    found = [f for f in _collect("训练次数：1200, Loss：0.4312\n训练次数：1300, Loss：0.4107\n训练次数：1400, Loss：nan\n")
             .findings() if f.text == "non-finite"]
    assert [(f.line_number, f.values.get("last_finite")) for f in found] == [(3, "0.411")]
