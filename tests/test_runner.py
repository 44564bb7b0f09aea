"""`postmortem run`: the command runs as if alone (live output, its exit status, Ctrl-C reaches it),
its output is teed to a log, and a failure becomes a draft with the run's own figures."""
import io
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from postmortem import runner
from postmortem.cli import cli
from postmortem.scan import scan

ALLOCATE_THEN_SIGKILL = textwrap.dedent("""
    import os, signal
    hoard = bytearray(256 << 20)
    hoard[::4096] = b"\\x01" * len(hoard[::4096])   # touch every page: resident, not just reserved
    print("predicting event_18 ...", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)             # what the OOM killer would send
""")

RAISES_DTYPE = textwrap.dedent("""
    import sys
    print("{'loss': 1.204, 'grad_norm': 0.51, 'epoch': 0.1}", flush=True)
    def forward():
        raise RuntimeError("expected mat1 and mat2 to have the same dtype, but got: c10::BFloat16 != float")
    forward()
""")


@pytest.fixture
def env(tmp_path):
    return {"XDG_CONFIG_HOME": str(tmp_path / "config"), "POSTMORTEM_LANG": "", "LC_ALL": "", "LANG": ""}


def run_cli(args, env):
    return CliRunner().invoke(cli, ["run", *args], env=env)


def test_a_script_that_raises_yields_its_signature_and_its_exit_status(tmp_path, env):
    log = tmp_path / "run.log"
    result = run_cli(["--log", str(log), "--", sys.executable, "-c", RAISES_DTYPE], env)
    assert result.exit_code == 1
    assert "'grad_norm': 0.51" in result.stdout  # the child's output, streamed
    assert "<!-- postmortem: dtype-mismatch " in result.stderr
    assert "[postmortem run] exited with status 1" in result.stderr
    text = log.read_text(encoding="utf-8")
    assert text.startswith("[postmortem run] command: ")
    assert "RuntimeError: expected mat1 and mat2" in text


@pytest.mark.parametrize("status", [0, 3, 42])
def test_the_exit_status_is_passed_through(tmp_path, env, status):
    result = run_cli(["--log", str(tmp_path / f"{status}.log"), "--", sys.executable, "-c",
                      f"import sys; sys.exit({status})"], env)
    assert result.exit_code == status


def test_a_successful_run_prints_one_line_with_its_duration_and_peak_memory(tmp_path, env):
    result = run_cli(["--log", str(tmp_path / "ok.log"), "--", sys.executable, "-c", "print('done')"], env)
    assert result.exit_code == 0
    assert result.stdout == "done\n"
    [line] = result.stderr.splitlines()
    assert line.startswith("postmortem run: finished in ") and "peak RSS " in line


def test_a_sigkill_after_allocating_yields_host_oom_killed_with_its_peak_memory(tmp_path, env):
    log = tmp_path / "predict.log"
    result = run_cli(["--log", str(log), "--", sys.executable, "-c", ALLOCATE_THEN_SIGKILL], env)
    assert result.exit_code == 128 + signal.SIGKILL
    assert "<!-- postmortem: host-oom-killed " in result.stderr
    symptom = next(line for line in result.stderr.splitlines() if line.startswith("* **Symptom**"))
    assert "Killed by SIGKILL at " in symptom
    peak = float(symptom.split("Killed by SIGKILL at ")[1].split(" MiB peak RSS")[0])
    assert peak >= 256
    assert "No OOM record was readable" in symptom or "OOM-kill counter" in symptom


def test_the_summary_line_alone_is_recognised_by_a_later_scan(tmp_path):
    log = tmp_path / "predict.log"
    runner.run_command([sys.executable, "-c", ALLOCATE_THEN_SIGKILL], log, output=io.BytesIO())
    report = scan([log])
    assert [i.signature for i in report.incidents] == ["host-oom-killed"]
    assert report.incidents[0].line == len(log.read_text().splitlines())  # the summary is the last line


def test_carriage_return_redraws_reach_the_terminal_and_the_log_untouched(tmp_path):
    out = io.BytesIO()
    script = "import sys\nfor i in range(3): sys.stdout.write(f'\\r{i}/3 [00:0{i}<00:03]'); sys.stdout.flush()\nprint()"
    runner.run_command([sys.executable, "-c", script], tmp_path / "bar.log", output=out, use_pty=False)
    assert out.getvalue() == b"\r0/3 [00:00<00:03]\r1/3 [00:01<00:03]\r2/3 [00:02<00:03]\n"
    assert b"\r0/3 [00:00<00:03]\r1/3 [00:01<00:03]\r2/3 [00:02<00:03]\n" in (tmp_path / "bar.log").read_bytes()


def test_through_a_pseudo_terminal_the_child_sees_a_terminal_and_its_newlines_stay_plain(tmp_path):
    pytest.importorskip("pty")
    out = io.BytesIO()
    record = runner.run_command([sys.executable, "-c", "import sys; print(sys.stdout.isatty())"],
                                tmp_path / "tty.log", output=out, use_pty=True)
    assert record.ok
    assert out.getvalue() == b"True\n"


def test_ctrl_c_is_passed_to_the_child_and_its_ending_is_recorded(tmp_path):
    log = tmp_path / "interrupted.log"
    script = "import time\nprint('ready', flush=True)\ntime.sleep(30)"

    done = threading.Event()

    def press_ctrl_c():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not done.is_set():
            # The header line quotes the script, so wait for the child's own line.
            if log.exists() and "\nready\n" in log.read_text():
                os.kill(os.getpid(), signal.SIGINT)  # as the terminal would, to our process group
                return
            time.sleep(0.05)

    presser = threading.Thread(target=press_ctrl_c, daemon=True)
    presser.start()
    started = time.monotonic()
    pytest_handler = signal.getsignal(signal.SIGINT)
    try:
        record = runner.run_command([sys.executable, "-c", script], log, output=io.BytesIO())
    finally:
        # A press that comes too late must not reach pytest as a KeyboardInterrupt.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        done.set()
        presser.join(timeout=30)
        signal.signal(signal.SIGINT, pytest_handler)
    assert time.monotonic() - started < 20
    assert record.interrupted
    assert record.signal == signal.SIGINT and record.status == 130
    text = log.read_text()
    assert "KeyboardInterrupt" in text
    assert text.rstrip("\n").splitlines()[-1].startswith("[postmortem run] interrupted by signal 2: SIGINT")


def test_an_existing_log_is_never_overwritten(tmp_path, env):
    log = tmp_path / "run.log"
    log.write_text("yesterday's only copy of a failure\n")
    result = run_cli(["--log", str(log), "--", sys.executable, "-c", "pass"], env)
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert log.read_text() == "yesterday's only copy of a failure\n"


def test_the_default_log_name_has_the_time_and_the_command_and_avoids_existing_files(tmp_path):
    import datetime as dt

    started = dt.datetime(2026, 2, 6, 21, 4, 5)
    first = runner.default_log_path(["python", "/home/user/flood/predict.py", "--split", "test"], started, tmp_path)
    assert first.name == "20260206-210405-python-predict.py.log"
    first.write_text("")
    assert runner.default_log_path(["python", "/home/user/flood/predict.py"], started, tmp_path).name == \
        "20260206-210405-python-predict.py-2.log"


def test_a_failed_run_with_a_journal_adds_the_draft_to_todays_section(tmp_path, env):
    journal = tmp_path / "review.md"
    journal.write_text("# Daily Review\n\n## 20200101\n1. old notes\n", encoding="utf-8")
    result = run_cli(["--log", str(tmp_path / "run.log"), "--journal", str(journal), "--", sys.executable, "-c",
                      RAISES_DTYPE], env)
    assert result.exit_code == 1
    text = journal.read_text(encoding="utf-8")
    assert text.startswith("# Daily Review\n\n## 20200101\n1. old notes\n\n## ")
    assert "\n1. Mixed dtypes in one operation\n" in text


def test_a_failure_no_signature_knows_still_gets_a_draft_with_placeholders(tmp_path, env):
    result = run_cli(["--log", str(tmp_path / "run.log"), "--", sys.executable, "-c", "import sys; sys.exit(7)"], env)
    assert result.exit_code == 7
    assert "Unrecognised error: exit status 7" in result.stderr
    assert "_(to be written)_" in result.stderr


def test_a_command_that_does_not_exist_is_one_clear_line(tmp_path, env):
    result = run_cli(["--log", str(tmp_path / "run.log"), "--", "no-such-program-xyz"], env)
    assert result.exit_code == 2
    assert "no-such-program-xyz" in result.stderr


def _v1_memory_cgroup() -> Path | None:
    """A memory cgroup (v1) this test may create children in, or None."""
    v2, v1 = runner._cgroup_dirs()
    if v1 is None or os.geteuid() != 0:
        return None
    parent = v1[0]
    return parent if os.access(parent, os.W_OK) and (parent / "memory.limit_in_bytes").exists() else None


def _v2_memory_cgroup() -> Path | None:
    v2, _v1 = runner._cgroup_dirs()
    if v2 is None or os.geteuid() != 0:
        return None
    controllers = (v2[0] / "cgroup.subtree_control")
    try:
        if "memory" not in controllers.read_text():
            return None
    except OSError:
        return None
    return v2[0] if os.access(v2[0], os.W_OK) else None


def test_a_real_oom_kill_in_a_memory_cgroup_is_recorded_with_its_evidence(tmp_path):
    import subprocess

    parent_v1, parent_v2 = _v1_memory_cgroup(), _v2_memory_cgroup()
    if parent_v1 is None and parent_v2 is None:
        pytest.skip("no memory cgroup this test may create a limited child in")
    limit = 200 << 20
    if parent_v2 is not None:
        group = parent_v2 / f"postmortem-test-{os.getpid()}"
        group.mkdir()
        (group / "memory.max").write_text(str(limit))
        (group / "memory.swap.max").write_text("0") if (group / "memory.swap.max").exists() else None
    else:
        group = parent_v1 / f"postmortem-test-{os.getpid()}"
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(limit))
    procs = group / "cgroup.procs"
    log = tmp_path / "oom.log"
    try:
        hog = "hoard = []\nwhile True:\n    hoard.append(bytearray(16 << 20)); hoard[-1][::4096] = b'1' * len(hoard[-1][::4096])"
        completed = subprocess.run(
            [sys.executable, "-m", "postmortem", "run", "--log", str(log), "--", sys.executable, "-c", hog],
            preexec_fn=lambda: procs.write_text(str(os.getpid())),  # the wrapper and its child in the cgroup
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "POSTMORTEM_LANG": "en"},
        )
    finally:
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)
    if completed.returncode != 128 + signal.SIGKILL:
        pytest.skip(f"the kernel did not OOM-kill the child here (exit {completed.returncode})")
    assert "<!-- postmortem: host-oom-killed " in completed.stderr
    summary = log.read_text().rstrip("\n").splitlines()[-1]
    assert "killed by signal 9: SIGKILL" in summary and "of 200.0 MiB cgroup" in summary
    assert "oom_kill 0 -> 1" in summary
    assert "OOM-kill counter went from 0 to 1" in completed.stderr


def test_a_ctrl_c_while_the_child_starts_is_delivered_to_it_not_lost_or_fatal_to_us():
    import subprocess

    with runner._SignalForwarder() as forwarder:
        os.kill(os.getpid(), signal.SIGINT)  # pressed before there is a child
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
        forwarder.attach(child.pid)
        assert child.wait(timeout=20) == -signal.SIGINT
    assert forwarder.forwarded


def _interrupted_run(monkeypatch, tmp_path, log_text):
    """`run` as if the user had pressed Ctrl-C: the child's log and the record the runner gives."""
    import datetime as dt

    log = tmp_path / "run.log"
    log.write_text(log_text + "[postmortem run] interrupted by signal 2: SIGINT\n")
    record = runner.RunRecord(command=("python", "train.py"), log=log, started=dt.datetime(2026, 2, 6, 21, 4),
                              duration=12.0, exit_status=None, signal=signal.SIGINT, peak_rss_bytes=None,
                              interrupted=True, summary_at=log_text.count("\n") + 1)
    monkeypatch.setattr(runner, "run_command", lambda command, log_path: record)


KEYBOARD_INTERRUPT = ('Traceback (most recent call last):\n  File "/home/user/proj/train.py", line 9, in <module>\n'
                      '    time.sleep(30)\nKeyboardInterrupt\n')


def test_a_run_the_user_stopped_drafts_nothing_and_leaves_the_journal_alone(monkeypatch, tmp_path, env):
    _interrupted_run(monkeypatch, tmp_path, "epoch 1 loss=0.5\n" + KEYBOARD_INTERRUPT)
    journal = tmp_path / "review.md"
    journal.write_text("## 20260206\n1. old notes\n", encoding="utf-8")
    result = run_cli(["--journal", str(journal), "--", "python", "train.py"], env)
    assert result.exit_code == 130
    assert "stopped by you" in result.stderr and "KeyboardInterrupt" not in result.stderr
    assert journal.read_text(encoding="utf-8") == "## 20260206\n1. old notes\n"


def test_a_failure_before_the_users_ctrl_c_is_still_drafted(monkeypatch, tmp_path, env):
    hung = "[rank1]:[E ProcessGroupNCCL.cpp:616] [Rank 1] Watchdog caught collective operation timeout: " \
           "WorkNCCL(SeqNum=12, OpType=ALLREDUCE, Timeout(ms)=600000) ran for 600123 milliseconds before timing out.\n"
    _interrupted_run(monkeypatch, tmp_path, hung + KEYBOARD_INTERRUPT)
    result = run_cli(["--", "python", "train.py"], env)
    assert result.exit_code == 130
    assert "distributed-timeout" in result.stderr and "Unrecognised error: KeyboardInterrupt" not in result.stderr
