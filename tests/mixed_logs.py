"""A folder of job logs with known failures, as a lab's scheduler leaves them (for the batch and
stats tests): 3 CUDA OOMs, 2 dtype mismatches, 2 unrecognised errors that differ only in numbers
and paths, 2 clean runs, and one broken gzip that cannot be read."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

from click.testing import CliRunner

from postmortem.cli import cli

TRAINING = """[{day} 09:00:01] ***** Running training *****
[{day} 09:00:01]   Num examples = 12,000
{{'loss': 2.4137, 'grad_norm': 1.482, 'learning_rate': 1.98e-05, 'epoch': 0.03}}
{{'loss': 2.1421, 'grad_norm': 2.113, 'learning_rate': 1.96e-05, 'epoch': 0.04}}
  4%|▍         | 41/1000 [00:52<20:31,  1.28s/it]
[{day} {time}] saving checkpoint to /scratch/ckpt/step-{step}
"""

CUDA_OOM = """Traceback (most recent call last):
  File "/home/user/proj/train_sft.py", line 97, in <module>
    trainer.train()
  File "/home/user/venv/lib/python3.11/site-packages/transformers/trainer.py", line 2245, in train
    return inner_training_loop(
  File "/home/user/venv/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1739, in _wrapped_call_impl
    return self._call_impl(*args, **kwargs)
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {tried} GiB. GPU 0 has a total capacity of 23.64 GiB of which 1.02 GiB is free. Including non-PyTorch memory, this process has 22.61 GiB memory in use. Of the allocated memory 21.87 GiB is allocated by PyTorch, and 301.55 MiB is reserved by PyTorch but unallocated. If reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)
"""

DTYPE_MISMATCH = """Traceback (most recent call last):
  File "/home/user/proj/train.py", line 187, in <module>
    main()
  File "/opt/conda/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1736, in _wrapped_call_impl
    return self._call_impl(*args, **kwargs)
  File "/home/user/proj/tiny_lora.py", line 57, in forward
    logits = self.score(hidden_states)
RuntimeError: expected mat1 and mat2 to have the same dtype, but got: c10::BFloat16 != float
"""

UNKNOWN = """Traceback (most recent call last):
  File "/home/user/flood/train.py", line 212, in <module>
    events = load_events(cfg.data_dir)
  File "/home/user/flood/data.py", line 41, in load_events
    raise EventSchemaError(msg)
flood.schema.EventSchemaError: event_{event}: rainfall series has {steps} steps but /data/run{run}/nodes.csv has 96 timesteps
"""

CLEAN = """{{'train_runtime': 1234.5, 'train_samples_per_second': 12.3, 'train_loss': 1.234, 'epoch': 1.0}}
[{day} {time}] training finished
"""

# name -> (failure tail, the day its last timestamp says)
LOGS = {
    "a-oom.log": (CUDA_OOM.format(tried="2.32"), "2026-02-01"),
    "b-dtype.txt": (DTYPE_MISMATCH, "2026-02-02"),
    "c-clean.out": (CLEAN, "2026-02-03"),
    "nested/d-oom.log": (CUDA_OOM.format(tried="4.00"), "2026-02-04"),
    "nested/e-unknown.err": (UNKNOWN.format(event=12, steps=96, run=7), "2026-02-05"),
    "nested/f-dtype.o4242": (DTYPE_MISMATCH, "2026-02-06"),
    "nested/deeper/g-oom": (CUDA_OOM.format(tried="1.50"), "2026-02-07"),  # no suffix: sniffed as text
    "nested/deeper/h-clean.log.gz": (CLEAN, "2026-02-08"),
    "nested/deeper/i-unknown.log": (UNKNOWN.format(event=3, steps=120, run=19), "2026-02-09"),
}
BROKEN = "nested/zz-broken.log.gz"  # gzip magic, then garbage: unreadable even as root
EXPECTED_FILES = {"cuda-oom": 3, "dtype-mismatch": 2, "unknown": 2}
RUNS, FAILED = 9, 7


def write_mixed_logs(folder: Path, broken: bool = True) -> list[str]:
    """Write the logs under `folder`; return their relative names in the order a scan gives them."""
    for step, (name, (tail, day)) in enumerate(LOGS.items()):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = TRAINING.format(day=day, time="09:30:00", step=step) + tail.format(day=day, time="10:00:00")
        if name.endswith(".gz"):
            path.write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text)
        # mtimes a week later than the logs say: "seen" comes from the log when it has timestamps
        stamp = 1_771_000_000 + step * 86_400
        os.utime(path, (stamp, stamp))
    if broken:
        (folder / BROKEN).write_bytes(b"\x1f\x8b\x08\x00" + b"not really gzip" * 20)
    # not logs: hidden files and folders, binaries, empty markers
    (folder / ".hidden.log").write_text(CUDA_OOM.format(tried="9.99"))
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD.log").write_text(CUDA_OOM.format(tried="9.99"))
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    (folder / "weights").write_bytes(b"PK\x03\x04\x00\x00binary")
    (folder / "_SUCCESS").write_text("")
    return sorted(LOGS, key=lambda name: Path(name).parts)


def invoke(args):
    """Run the CLI with a neutral locale, stderr kept apart from the report."""
    try:
        runner = CliRunner(mix_stderr=False)  # click 8.1; 8.2 keeps stderr apart by itself
    except TypeError:
        runner = CliRunner()
    return runner.invoke(cli, args, env={"POSTMORTEM_LANG": "", "LC_ALL": "", "LANG": ""})
