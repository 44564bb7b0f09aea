"""The same per-file scan on a Dask cluster, for logs by the hundred thousand on shared storage.

`postmortem stats --scheduler ADDRESS` and `postmortem scan --format jsonl --scheduler ADDRESS`
(or `--scheduler local` for a LocalCluster on this machine) send the files, in partitions of
consecutive files, to Dask workers that run `batch.scan_one`, the function the process pool
runs. Each worker compiles the knowledge base once (the knowledge base travels once per worker,
as one task of the graph) and keeps the Scanner for the next partitions.

For `stats` every partition is reduced on its worker to a partial table, and the partials are
added up in a tree (`dask.bag` reduction of pandas partials): sums, minima and maxima, so the
table is the one the single-machine run gives. `dask.dataframe` is not used: it needs pyarrow,
a much larger install than the job needs. For `scan --format jsonl` the per-file reports come
back in the order of the files.

The workers open the files themselves: the paths must name the same files on every worker
(shared storage); they are sent as absolute paths, while the reports keep the names as given.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .batch import SUMMARIES, FileScan, LogFile, ScanOptions, default_jobs, scan_batch
from .knowledge import KnowledgeBase
from .scan import Scanner
from .stats import Partial, combine_partials, partial_table

LOCAL = "local"
INSTALL_HINT = "--scheduler needs Dask: pip install 'postmortem[dask]'"
FILES_PER_PARTITION = 64  # files per task: large enough to amortise a task, small enough to balance
IN_FLIGHT_PER_WORKER = 4  # jsonl: partitions computed ahead of the one being written out


class DaskUnavailable(Exception):
    """Dask is not installed; the message says how to install it."""


@contextmanager
def dask_client(scheduler: str, jobs: int | None = None, processes: bool = True):
    """A Client of the scheduler at ADDRESS, or of a LocalCluster with `jobs` single-threaded
    workers for "local" (`processes=False`: threads of this process, quicker to start)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise DaskUnavailable(INSTALL_HINT) from None
    if scheduler != LOCAL:
        with Client(scheduler) as client:
            yield client
        return
    with LocalCluster(n_workers=jobs or default_jobs(), threads_per_worker=1, processes=processes,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def stats_on_dask(client, logs: Sequence[LogFile], kb: KnowledgeBase, options: ScanOptions) -> Partial:
    """The partial table over all logs, each partition scanned and reduced on a worker."""
    import dask
    import dask.bag as db

    if not logs:
        return partial_table([])
    options = ScanOptions(SUMMARIES, options.lang, options.redact)
    kb_once = dask.delayed(kb, pure=False)
    partials = db.from_sequence(logs, partition_size=FILES_PER_PARTITION).map_partitions(
        _stats_of_partition, kb_once, options)
    return client.compute(partials.reduction(combine_partials, combine_partials)).result()


def scan_on_dask(client, logs: Sequence[LogFile], kb: KnowledgeBase, options: ScanOptions) -> Iterator[FileScan]:
    """Per-file scans in the order of `logs` (reports or summaries, as `options.keep` says)."""
    import dask
    import dask.bag as db

    if not logs:
        return
    kb_once = dask.delayed(kb, pure=False)
    parts = db.from_sequence(logs, partition_size=FILES_PER_PARTITION).map_partitions(
        _scans_of_partition, kb_once, options).to_delayed()
    ahead = max(1, len(client.scheduler_info().get("workers", {}))) * IN_FLIGHT_PER_WORKER
    futures = client.compute(parts[:ahead])
    for index in range(len(parts)):
        if index + ahead < len(parts):
            futures.append(client.compute(parts[index + ahead]))
        scans = futures[index].result()
        futures[index] = None  # let the cluster forget what has been written out
        yield from scans


# -- on the workers -----------------------------------------------------------------------------

_local = threading.local()  # a Scanner per worker thread: a prefilter's scratch space is not shared


def _scanner_for(kb: KnowledgeBase) -> Scanner:
    cached = getattr(_local, "scanner", None)
    if cached is None or cached[0] is not kb:
        cached = _local.scanner = (kb, Scanner(kb))
    return cached[1]


def _scans_of_partition(logs, kb: KnowledgeBase, options: ScanOptions) -> list[FileScan]:
    return scan_batch(list(logs), _scanner_for(kb), options)


def _stats_of_partition(logs, kb: KnowledgeBase, options: ScanOptions) -> list[Partial]:
    scans = _scans_of_partition(logs, kb, options)
    partial = partial_table([s.summary for s in scans if not s.error], [s.error for s in scans if s.error])
    partial.problems = sorted({p for s in scans for p in s.problems})
    return [partial]
