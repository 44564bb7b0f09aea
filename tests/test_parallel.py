"""A big log is scanned on two cores; the report must be the one a single process gives."""
import random

import pytest

from postmortem.knowledge import load_knowledge_base
from postmortem.render import incident_to_dict
from postmortem.scan import Scanner, _can_fork, scan

KB = load_knowledge_base(include_user=False)
TRACEBACKS = [
    ('RuntimeError', 'expected mat1 and mat2 to have the same dtype, but got: c10::BFloat16 != float'),
    ('torch.OutOfMemoryError', 'CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity '
                               'of 23.64 GiB of which 1.02 GiB is free.'),
    ('RuntimeError', 'mat1 and mat2 shapes cannot be multiplied (64x128 and 256x64)'),
    ('MyOwnError', 'shard 3 has no header'),
]


def noisy_log(seed: int) -> bytes:
    rng = random.Random(seed)
    lines = []
    for step in range(1, 4000):
        roll = rng.random()
        if roll < 0.01:
            exc, message = rng.choice(TRACEBACKS)
            where = rng.randrange(1, 300)
            lines += ["Traceback (most recent call last):", f'  File "/workspace/train_{where}.py", line {where}, in step',
                      "    loss = model(batch)", f"{exc}: {message}", ""]
        elif roll < 0.02:
            lines.append("Killed")
        elif roll < 0.03:
            lines.append("2026-02-06 12:00:01,123 - INFO - __main__ - val/MeanSquaredError=0.0213, 0 errors")
        loss = "nan" if step > 3500 else f"{2.0 / (1 + step / 500):.4f}"
        lines.append(f"{{'loss': {loss}, 'grad_norm': 1.{step % 10}, 'learning_rate': 2e-05, 'epoch': {step / 4000:.2f}}}")
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.skipif(not _can_fork(), reason="needs fork and two cores")
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_cores_give_the_same_report_as_one(tmp_path, seed):
    path = tmp_path / "big.log"
    path.write_bytes(noisy_log(seed))
    one = Scanner(KB, chunk_bytes=8192, parallel_min_bytes=1 << 40)
    two = Scanner(KB, chunk_bytes=8192, parallel_min_bytes=0)
    expected = [incident_to_dict(i) for i in scan(path, scanner=one).incidents]
    got = [incident_to_dict(i) for i in scan(path, scanner=two).incidents]
    assert expected and got == expected
