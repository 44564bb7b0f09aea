"""Many logs at once: which files a folder gives, one report or one line per log, the same on
one process and on two, and one unreadable log costing only itself."""
import gzip
import json
import pickle
from pathlib import Path

import pytest

from mixed_logs import BROKEN, EXPECTED_FILES, invoke, write_mixed_logs
from postmortem.batch import (
    REPORTS,
    RESULTS,
    LogFile,
    ScanOptions,
    collect,
    find_logs,
    report_logs,
    run_time,
    scan_logs,
    split_batches,
)
from postmortem.render import render_json, render_markdown
from postmortem.scan import Scanner, build_report, scan

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def rendered(report):
    """What the user reads (reports holding NaN metric values never compare equal as objects)."""
    return render_markdown(report) + render_json(report)




@pytest.fixture
def farm(tmp_path):
    names = write_mixed_logs(tmp_path)
    return tmp_path, names


def test_a_folder_gives_its_logs_recursively_in_sorted_order(farm):
    folder, names = farm
    logs = find_logs([folder])
    assert [Path(log.source).relative_to(folder).as_posix() for log in logs] == \
        sorted([*names, BROKEN], key=lambda n: Path(n).parts)
    assert all(Path(log.path).is_absolute() for log in logs)


def test_hidden_files_binaries_and_empty_markers_are_not_logs(farm):
    folder, _ = farm
    found = {Path(log.source).name for log in find_logs([folder])}
    assert not found & {".hidden.log", "HEAD.log", "model.safetensors", "weights", "_SUCCESS"}
    assert {"g-oom", "f-dtype.o4242"} <= found  # text without a suffix; PBS job output


def test_paths_keep_the_order_given_and_a_file_named_twice_is_scanned_once(farm):
    folder, _ = farm
    odd = folder / "notes.md"  # named on the command line: scanned whatever its suffix
    odd.write_text("epoch 1 done\n")
    logs = find_logs([folder / "nested" / "e-unknown.err", odd, folder / "a-oom.log",
                      folder / "nested" / "e-unknown.err"])
    assert [Path(log.source).name for log in logs] == ["e-unknown.err", "notes.md", "a-oom.log"]


def test_a_path_that_does_not_exist_is_bad_input_not_a_clean_run(tmp_path):
    from postmortem.reader import InputError

    with pytest.raises(InputError, match="nope.log"):
        find_logs([tmp_path / "nope.log"])


def test_jsonl_gives_one_line_per_log_in_order_the_same_with_one_and_two_processes(farm):
    folder, names = farm
    one = invoke(["scan", str(folder), "--format", "jsonl", "-j", "1"])
    two = invoke(["scan", str(folder), "--format", "jsonl", "-j", "2"])
    assert one.exit_code == 0 and two.exit_code == 0
    assert one.stdout == two.stdout
    lines = [json.loads(line) for line in one.stdout.splitlines()]
    assert [Path(line["source"]).relative_to(folder).as_posix() for line in lines] == names
    files = {}
    for line in lines:
        for signature in {i["signature"] for i in line["incidents"]}:
            files[signature] = files.get(signature, 0) + 1
    assert files == EXPECTED_FILES
    assert all(line["version"] == 1 for line in lines)


def test_several_logs_give_one_report_whose_incidents_name_their_log(farm):
    folder, _ = farm
    paths = [str(folder / "a-oom.log"), str(folder / "b-dtype.txt"), str(folder / "nested" / "d-oom.log")]
    result = invoke(["scan", *paths, "--format", "json", "-j", "2"])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["sources"] == paths
    assert [(i["signature"], i["source"]) for i in report["incidents"]] == \
        [("cuda-oom", paths[0]), ("dtype-mismatch", paths[1])]
    assert report["incidents"][0]["count"] == 2  # the same OOM in two logs is one incident


def test_a_folder_report_is_the_report_of_its_logs_scanned_together(farm, kb):
    folder, names = farm
    logs = find_logs([folder])
    readable = [log.source for log in logs if not log.source.endswith(BROKEN)]
    for jobs in (1, 2):
        report, outcome = report_logs(logs, kb, jobs=jobs)
        assert rendered(report) == rendered(scan(readable, kb=kb))
        assert len(outcome.skipped) == 1 and BROKEN in outcome.skipped[0]


def test_metric_series_travel_back_from_the_workers_when_an_incident_shows_them(tmp_path, kb):
    for name in ("nan-loss-trainer.log", "cuda-oom.log", "clean-trainer.log", "dtype-lora.log"):
        (tmp_path / name).write_bytes((SAMPLES / name).read_bytes())
    logs = find_logs([tmp_path])
    on_two = rendered(report_logs(logs, kb, jobs=2)[0])
    assert "loss became NaN" in on_two
    assert on_two == rendered(report_logs(logs, kb, jobs=1)[0]) == rendered(scan([log.source for log in logs], kb=kb))


def test_an_unreadable_log_is_one_warning_and_the_others_are_scanned(farm):
    folder, names = farm
    result = invoke(["scan", str(folder), "--format", "jsonl", "-j", "2"])
    assert result.exit_code == 0
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("warning: ") and BROKEN in warnings[0]
    assert len(result.stdout.splitlines()) == len(names)
    assert invoke(["scan", str(folder), "--exit-code", "-j", "2"]).exit_code == 1


def test_nothing_readable_is_exit_2(tmp_path):
    broken = tmp_path / "x.log.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage")
    other = tmp_path / "y.gz"
    other.write_bytes(b"\x1f\x8b\x08\x00garbage")
    one = invoke(["scan", str(broken), "--format", "jsonl"])
    assert one.exit_code == 2 and "x.log.gz" in one.stderr and one.stderr.count("\n") == 1
    both = invoke(["scan", str(tmp_path)])
    assert both.exit_code == 2 and "none of the 2 logs could be read" in both.stderr


def test_a_folder_without_logs_is_exit_2_naming_the_rule(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"\x00\x01")
    result = invoke(["scan", str(tmp_path)])
    assert result.exit_code == 2 and "no logs found" in result.stderr and "*.log" in result.stderr


def test_jsonl_to_a_file_is_written_whole(farm):
    folder, names = farm
    out = folder.parent / f"{folder.name}.jsonl"
    assert invoke(["scan", str(folder), "--format", "jsonl", "-o", str(out), "-j", "2"]).exit_code == 0
    assert len(out.read_text().splitlines()) == len(names)
    assert invoke(["scan", str(folder), "--format", "jsonl", "-o", str(out)]).exit_code == 2  # no silent replace


def test_scheduler_needs_jsonl_for_scan(farm):
    folder, _ = farm
    result = invoke(["scan", str(folder), "--scheduler", "local"])
    assert result.exit_code == 2 and "--format jsonl" in result.stderr


def test_progress_counts_every_byte_on_disk_once(farm, kb):
    folder, _ = farm
    logs = find_logs([folder])
    for jobs in (1, 2):
        counted = []
        list(scan_logs(logs, kb, ScanOptions(REPORTS), jobs=jobs, on_bytes=counted.append))
        assert sum(counted) == sum(log.size for log in logs)


def test_results_and_reports_come_back_from_a_worker_intact(farm, kb):
    folder, _ = farm
    logs = find_logs([folder / "a-oom.log"])
    scanner = Scanner(kb)
    for keep in (RESULTS, REPORTS):
        [sent] = collect(scan_logs(logs, kb, ScanOptions(keep), jobs=1, scanner=scanner)).scans
        received = pickle.loads(pickle.dumps(sent))
        if keep == RESULTS:
            assert received.result.matches == sent.result.matches
            assert rendered(build_report([received.result], kb, "en", True)) == \
                rendered(build_report([sent.result], kb, "en", True))
        else:
            assert rendered(received.report) == rendered(sent.report)


def test_batches_are_consecutive_bounded_and_several_per_worker():
    logs = [LogFile(f"{i}.log", f"/{i}.log", 1000, 0.0) for i in range(1000)]
    batches = split_batches(logs, workers=2)
    assert [log for batch in batches for log in batch] == logs
    assert len(batches) >= 8 and max(len(b) for b in batches) <= 64
    big = [LogFile("big.log", "/big.log", 1 << 30, 0.0), *logs[:3]]
    assert split_batches(big, workers=2)[0] == [big[0]]  # a big log travels alone


def test_the_time_a_run_last_wrote_comes_from_its_last_timestamp_else_the_mtime(tmp_path):
    from datetime import datetime

    stamped = tmp_path / "a.log"
    stamped.write_text("[2026-02-01 09:00:01] start\nstep 1 loss=2.3\n[rank0]: 2026-02-03 10:20:30,123 - INFO - done\n")
    plain = tmp_path / "b.log"
    plain.write_text("step 1 loss=2.3\n")
    zoned = tmp_path / "c.log"
    zoned.write_text("2026-02-03T10:20:30.5Z worker exited\n")
    packed = tmp_path / "d.log.gz"  # a gzip stream is not read backwards: the mtime it is
    packed.write_bytes(gzip.compress(stamped.read_bytes()))
    logs = {Path(log.source).name: log for log in find_logs([tmp_path])}
    assert run_time(logs["a.log"]) == datetime(2026, 2, 3, 10, 20, 30).timestamp()
    assert run_time(logs["b.log"]) == logs["b.log"].mtime
    assert run_time(logs["d.log.gz"]) == logs["d.log.gz"].mtime
    assert run_time(logs["c.log"]) == datetime.fromisoformat("2026-02-03T10:20:30+00:00").timestamp()


def test_gzip_logs_are_scanned_like_plain_ones(tmp_path, kb):
    text = (SAMPLES / "cuda-oom.log").read_bytes()
    (tmp_path / "a.log").write_bytes(text)
    (tmp_path / "b.log.gz").write_bytes(gzip.compress(text))
    scans = collect(scan_logs(find_logs([tmp_path]), kb, ScanOptions(REPORTS), jobs=1)).scans
    first, second = (s.report.incidents for s in scans)
    assert [i.signature for i in first] == [i.signature for i in second] == ["cuda-oom"]


def test_workers_started_without_fork_give_the_same_results(farm, kb, monkeypatch):
    """With other threads running (or off Linux) the pool starts its workers from a fork server."""
    import threading

    folder, _ = farm
    logs = find_logs([folder])
    forked = [s.report for s in scan_logs(logs, kb, ScanOptions(REPORTS), jobs=2)]
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    served = [s.report for s in scan_logs(logs, kb, ScanOptions(REPORTS), jobs=2)]
    assert [rendered(r) for r in served if r] == [rendered(r) for r in forked if r]
