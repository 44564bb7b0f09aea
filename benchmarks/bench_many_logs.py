#!/usr/bin/env python3
"""postmortem over a lab's day of job logs: 10,000 small logs, scanned and counted.

    python benchmarks/bench_many_logs.py                  # 10,000 logs
    python benchmarks/bench_many_logs.py --logs 2000 -j 2

Generates the logs in a temporary folder (deterministic for a seed: Trainer dicts and tqdm bars,
then a CUDA OOM, a dtype mismatch, an unrecognised error, or nothing: a clean run), then runs,
each as its own process, timed from outside:

    postmortem scan DIR --format jsonl -j 1     (in one process: the per-file cost without a pool)
    postmortem scan DIR --format jsonl -j N
    postmortem stats DIR -j N

and prints files/s, MB/s, CPU time per file and peak RSS (the largest process, and the whole
process tree sampled), after checking that every log came back and the counts are the ones
generated; then the fixed cost of a file, on 2,000 one-line logs.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

KINDS = ("cuda-oom", "dtype-mismatch", "unknown", "clean")
WEIGHTS = (3, 2, 1, 4)  # out of 10: a bad day, four runs in ten clean
SAMPLE_SECONDS = 0.05

OOM_TAIL = """Traceback (most recent call last):
  File "/home/user/proj/train.py", line {line}, in <module>
    trainer.train()
  File "/opt/conda/lib/python3.11/site-packages/transformers/trainer.py", line 2245, in train
    return inner_training_loop(
  File "/opt/conda/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1736, in _wrapped_call_impl
    return self._call_impl(*args, **kwargs)
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {tried:.2f} GiB. GPU 0 has a total capacity of 23.64 GiB of which {free:.2f} GiB is free. Including non-PyTorch memory, this process has 21.76 GiB memory in use. Of the allocated memory 20.93 GiB is allocated by PyTorch, and 382.51 MiB is reserved by PyTorch but unallocated. If reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)
"""
DTYPE_TAIL = """Traceback (most recent call last):
  File "/home/user/proj/train.py", line {line}, in <module>
    logits = model(batch["x"])
  File "/opt/conda/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1736, in _wrapped_call_impl
    return self._call_impl(*args, **kwargs)
  File "/home/user/proj/lora.py", line 57, in forward
    return self.score(hidden_states)
RuntimeError: expected mat1 and mat2 to have the same dtype, but got: c10::BFloat16 != float
"""
UNKNOWN_TAIL = """Traceback (most recent call last):
  File "/home/user/proj/train.py", line {line}, in <module>
    events = load_events(cfg.data_dir)
  File "/home/user/proj/data.py", line 41, in load_events
    raise EventSchemaError(f"event_{{idx}}: rainfall series has {{n}} steps")
flood.schema.EventSchemaError: event_{event}: rainfall series has {steps} steps but /data/run{run}/nodes.csv has 96 timesteps
"""
TAILS = {"cuda-oom": OOM_TAIL, "dtype-mismatch": DTYPE_TAIL, "unknown": UNKNOWN_TAIL, "clean": ""}


def make_log(rng: random.Random, kind: str, job: int) -> str:
    lines = [f"[2026-02-{1 + job % 28:02d} 0{job % 10}:00:00] job {job} on node{rng.randrange(64):02d}",
             "***** Running training *****", f"  Num examples = {rng.randrange(1000, 90000):,}"]
    loss = rng.uniform(2.0, 4.0)
    for step in range(1, rng.randrange(20, 45)):
        loss *= rng.uniform(0.97, 1.0)
        lines.append(f" {step * 2}%|{'█' * (step // 5):<10}| {step}/50 [00:{step:02d}<00:30, 1.{rng.randrange(99):02d}it/s]")
        lines.append(f"{{'loss': {loss:.4f}, 'grad_norm': {rng.uniform(0.2, 3):.4f}, "
                     f"'learning_rate': {2e-5 * (1 - step / 50):.3e}, 'epoch': {step / 50:.2f}}}")
    tail = TAILS[kind].format(line=rng.randrange(80, 300), tried=rng.uniform(0.5, 8), free=rng.uniform(0.1, 1.5),
                              event=rng.randrange(100), steps=rng.randrange(50, 200), run=job)
    if kind == "clean":
        tail = "{'train_runtime': 1234.5, 'train_samples_per_second': 12.3, 'train_loss': 1.234, 'epoch': 1.0}\n"
    return "\n".join(lines) + "\n" + tail


def generate(folder: Path, count: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    made = dict.fromkeys(KINDS, 0)
    for job in range(count):
        kind = rng.choices(KINDS, WEIGHTS)[0]
        made[kind] += 1
        shard = folder / f"day{job % 10}"
        shard.mkdir(exist_ok=True)
        (shard / f"job-{job:05d}.log").write_text(make_log(rng, kind, job))
    return made


def tree_memory(root: int, high_water: dict[int, int]) -> int:
    """RSS of a process and all its descendants, in bytes (Linux /proc); records each process's
    own high-water mark (VmHWM) in `high_water`."""
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/status") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
            total += int(fields["VmRSS"].split()[0]) * 1024
            high_water[pid] = max(high_water.get(pid, 0), int(fields["VmHWM"].split()[0]) * 1024)
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as handle:
                    stack.extend(int(c) for c in handle.read().split())
        except (OSError, ValueError, KeyError):
            continue
    return total


def run(command: list[str]) -> tuple[float, float, int, int, bytes]:
    """Wall seconds, CPU seconds (the process and its workers), the largest process's peak RSS,
    the sampled peak RSS of the whole tree, stdout.

    Peaks come from /proc, not from wait4: a child's ru_maxrss starts from the RSS of the
    process that forked it (this benchmark, holding the previous run's output)."""
    peak_tree = 0
    high_water: dict[int, int] = {}
    done = threading.Event()
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def sample() -> None:
        nonlocal peak_tree
        while not done.is_set():
            peak_tree = max(peak_tree, tree_memory(process.pid, high_water))
            done.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = process.stdout.read()
    err = process.stderr.read()
    done.set()  # stdout closed: the process is exiting; its last samples are taken
    sampler.join()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(command)} failed:\n{err.decode(errors='replace')}")
    # wait4's usage includes the workers the process waited for: CPU time does not depend on how
    # busy the machine is, wall time does (this machine is shared).
    return elapsed, usage.ru_utime + usage.ru_stime, max(high_water.values(), default=0), peak_tree, out


def check_jsonl(out: bytes, made: dict[str, int]) -> None:
    seen = dict.fromkeys(KINDS, 0)
    lines = out.decode().splitlines()
    for line in lines:
        signatures = {i["signature"] for i in json.loads(line)["incidents"]}
        seen[signatures.pop() if len(signatures) == 1 else "clean" if not signatures else "several"] += 1
    if len(lines) != sum(made.values()) or seen != made:
        sys.exit(f"scan --format jsonl gave {len(lines)} lines, {seen}; generated {made}")


def check_stats(out: bytes, made: dict[str, int]) -> None:
    table = json.loads(out)
    files = {row["signature"]: row["files"] for row in table["signatures"]}
    expected = {k: v for k, v in made.items() if k != "clean" and v}
    if files != expected or table["runs"]["total"] != sum(made.values()):
        sys.exit(f"stats gave {files} over {table['runs']['total']} runs; generated {made}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=int, default=10_000)
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tiny", type=int, default=2_000, help="one-line logs for the per-file overhead")
    args = parser.parse_args()
    postmortem = [sys.executable, "-m", "postmortem"]
    with tempfile.TemporaryDirectory(prefix="pm-many-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        made = generate(folder, args.logs, args.seed)
        size = sum(p.stat().st_size for p in folder.rglob("*.log"))
        print(f"generated {args.logs} logs, {size / 1e6:.1f} MB ({size / args.logs / 1e3:.1f} KB each) "
              f"in {time.perf_counter() - start:.1f} s: {made}")
        print(f"{'command':<44} {'time':>7} {'files/s':>8} {'MB/s':>6} {'CPU/file':>9} {'peak RSS':>9} {'tree RSS':>9}")
        runs = [
            (["scan", tmp, "--format", "jsonl", "-j", "1"], check_jsonl),
            (["scan", tmp, "--format", "jsonl", "-j", str(args.jobs)], check_jsonl),
            (["stats", tmp, "--format", "json", "-j", str(args.jobs)], check_stats),
        ]
        for arguments, check in runs:
            elapsed, cpu, peak, tree, out = run(postmortem + arguments)
            check(out, made)
            label = "postmortem " + " ".join(a if a != tmp else "DIR" for a in arguments)
            print(f"{label:<44} {elapsed:6.2f}s {args.logs / elapsed:8.0f} {size / 1e6 / elapsed:6.1f} "
                  f"{cpu / args.logs * 1000:7.2f}ms {peak / 2**20:7.0f}MB {tree / 2**20:7.0f}MB")
        # The fixed cost of a file (open, report, result to the parent), with nothing to read in it.
        tiny = folder / "tiny"
        tiny.mkdir()
        for job in range(args.tiny):
            (tiny / f"job-{job:05d}.log").write_text(f"job {job} finished\n")
        elapsed, cpu, peak, tree, out = run(postmortem + ["scan", str(tiny), "--format", "jsonl", "-j", "1"])
        assert len(out.splitlines()) == args.tiny
        print(f"{f'postmortem scan TINY --format jsonl -j 1':<44} {elapsed:6.2f}s {args.tiny / elapsed:8.0f} "
              f"{'':>6} {cpu / args.tiny * 1000:7.2f}ms {peak / 2**20:7.0f}MB {tree / 2**20:7.0f}MB"
              f"   ({args.tiny} one-line logs: the per-file overhead)")
        print(f"(cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; CPU/file: user+sys of the "
              f"process and its workers; peak RSS: the largest single process; tree RSS: all processes "
              f"together, sampled every {SAMPLE_SECONDS * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
