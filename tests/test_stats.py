"""`postmortem stats`: which failures a folder of runs keeps hitting, counted exactly, the same on
one process, on two, and on a Dask cluster."""
import csv
import io
import json
import sys
from datetime import datetime

import pytest

from mixed_logs import BROKEN, EXPECTED_FILES, FAILED, RUNS, invoke, write_mixed_logs
from postmortem.batch import SUMMARIES, ScanOptions, collect, find_logs, scan_logs
from postmortem.stats import build_stats, combine_partials, partial_table, render_stats




@pytest.fixture
def farm(tmp_path):
    write_mixed_logs(tmp_path)
    return tmp_path


def stats_json(folder, *options):
    result = invoke(["stats", str(folder), "--format", "json", *options])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result


def test_a_folder_of_mixed_runs_gives_the_known_counts(farm):
    table, result = stats_json(farm, "-j", "1")
    assert table["runs"] == {"total": RUNS, "failed": FAILED, "skipped": 1}
    rows = {row["signature"]: row for row in table["signatures"]}
    assert {sig: row["files"] for sig, row in rows.items()} == EXPECTED_FILES
    assert [row["signature"] for row in table["signatures"]] == ["cuda-oom", "dtype-mismatch", "unknown"]
    assert rows["cuda-oom"]["count"] == 3 and rows["cuda-oom"]["severity"] == "error"
    assert rows["cuda-oom"]["share_of_failed"] == round(3 / FAILED, 4)
    assert rows["dtype-mismatch"]["category"] == "dtype"
    assert BROKEN in result.stderr and result.stderr.count("warning: ") == 1


def test_first_and_last_seen_come_from_the_logs_own_timestamps(farm):
    table, _ = stats_json(farm, "-j", "1")
    rows = {row["signature"]: row for row in table["signatures"]}
    # the tracebacks carry no timestamp: the last one before them is when the run last wrote
    assert (rows["cuda-oom"]["first_seen"], rows["cuda-oom"]["last_seen"]) == \
        ("2026-02-01T09:30:00", "2026-02-07T09:30:00")
    assert rows["dtype-mismatch"]["last_seen"] == "2026-02-06T09:30:00"


def test_unknown_errors_that_differ_only_in_numbers_and_paths_are_one_row(farm):
    table, _ = stats_json(farm, "-j", "1")
    [row] = table["unknown"]
    assert row["files"] == 2 and row["count"] == 2
    assert row["message"] == ("flood.schema.EventSchemaError: event_<num>: rainfall series has <num> steps "
                              "but <path> has <num> timesteps")


def test_one_and_two_processes_give_the_same_tables_in_every_format(farm):
    for fmt in ("json", "table", "md", "csv"):
        one = invoke(["stats", str(farm), "--format", fmt, "-j", "1"])
        two = invoke(["stats", str(farm), "--format", fmt, "-j", "2"])
        assert one.exit_code == two.exit_code == 0
        assert one.stdout == two.stdout, fmt


def test_since_keeps_the_runs_modified_at_or_after_the_date(farm):
    # write_mixed_logs gives the logs mtimes one day apart from 2026-02-13 (1_771_000_000)
    cutoff = datetime.fromtimestamp(1_771_000_000 + 6 * 86_400).strftime("%Y-%m-%d %H:%M:%S")
    table, _ = stats_json(farm, "--since", cutoff, "-j", "1")
    assert table["runs"]["total"] == 3  # the last three logs (and the broken one, newer, skipped)
    nothing, _ = stats_json(farm, "--since", "2100-01-01", "-j", "1")
    assert nothing["runs"]["total"] == 0 and nothing["signatures"] == []


def test_table_and_markdown_lead_with_the_run_counts(farm):
    text = invoke(["stats", str(farm), "-j", "1"]).stdout
    assert text.startswith(f"{RUNS} runs, {FAILED} failed (78%), 2 without an error; 1 unreadable, skipped")
    assert "Top unknown errors" in text
    md = invoke(["stats", str(farm), "--format", "md", "-j", "1"]).stdout
    assert "| signature | title | category | severity | files | count | share_of_failed |" in md
    assert "| cuda-oom | CUDA out of memory | memory | error | 3 | 3 | 43% |" in md


def test_csv_is_the_signatures_table(farm):
    rows = list(csv.DictReader(io.StringIO(invoke(["stats", str(farm), "--format", "csv", "-j", "1"]).stdout)))
    assert [(r["signature"], r["files"]) for r in rows] == [("cuda-oom", "3"), ("dtype-mismatch", "2"),
                                                           ("unknown", "2")]


def test_partial_tables_add_up_to_the_whole_in_any_grouping(farm, kb):
    logs = find_logs([farm])
    summaries = [s.summary for s in collect(scan_logs(logs, kb, ScanOptions(SUMMARIES), jobs=1)).scans]
    whole = render_stats(build_stats(partial_table(summaries), kb), "json")
    for split in (1, 3, 4):
        parts = [partial_table(summaries[:split]), partial_table(summaries[split:])]
        assert render_stats(build_stats(combine_partials(parts), kb), "json") == whole
    nested = combine_partials([combine_partials([partial_table(summaries[:2]), partial_table(summaries[2:5])]),
                               partial_table(summaries[5:]), partial_table([])])
    assert render_stats(build_stats(nested, kb), "json") == whole


def test_no_logs_in_the_folders_is_exit_2(tmp_path):
    result = invoke(["stats", str(tmp_path)])
    assert result.exit_code == 2 and "no logs found" in result.stderr


def test_scheduler_without_dask_says_how_to_install_it(farm, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    result = invoke(["stats", str(farm), "--scheduler", "local"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: --scheduler needs Dask: pip install 'postmortem[dask]'"


# -- on Dask ------------------------------------------------------------------------------------

def test_stats_and_jsonl_on_a_local_cluster_of_two_workers_match_the_plain_run(farm, kb):
    """Two workers in threads of this process (processes=False): the same graph, partitions and
    reduction as on a real cluster, without starting interpreters (see the CLI test below)."""
    pytest.importorskip("dask.distributed")
    from postmortem.distributed import dask_client, scan_on_dask, stats_on_dask

    logs = find_logs([farm])
    options = ScanOptions(SUMMARIES)
    plain = collect(scan_logs(logs, kb, options, jobs=1))
    plain_table = render_stats(build_stats(partial_table([s.summary for s in plain.scans], plain.skipped), kb), "json")
    reports = collect(scan_logs(logs, kb, ScanOptions("reports"), jobs=1)).scans
    with dask_client("local", jobs=2, processes=False) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        partial = stats_on_dask(client, logs, kb, options)
        assert render_stats(build_stats(partial, kb), "json") == plain_table
        assert partial.skipped == plain.skipped
        on_dask = [s for s in scan_on_dask(client, logs, kb, ScanOptions("reports")) if not s.error]
    assert [s.source for s in on_dask] == [s.source for s in reports]
    assert [s.report for s in on_dask] == [s.report for s in reports]


def test_scheduler_local_from_the_command_line_matches_the_plain_run(farm):
    """`--scheduler local`: a LocalCluster of two worker processes, as a user would start it."""
    pytest.importorskip("dask.distributed")
    plain, _ = stats_json(farm, "-j", "1")
    on_dask, result = stats_json(farm, "--scheduler", "local", "-j", "2")
    assert on_dask == plain
    assert BROKEN in result.stderr
