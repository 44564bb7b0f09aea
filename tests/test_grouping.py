"""Grouping: one incident per failure, root cause first."""
from postmortem.scan import scan_text

OOM = '''Traceback (most recent call last):
  File "/workspace/train.py", line 88, in training_step
    loss.backward()
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU {rank} has a total capacity of 79.15 GiB of which 1.02 GiB is free.'''


def test_eight_ranks_give_one_incident_with_count_8(kb):
    lines = []
    for template in OOM.splitlines():
        lines += [f"[rank{r}]: " + template.replace("{rank}", str(r)) for r in range(8)]
    report = scan_text("\n".join(lines) + "\n", kb=kb)
    signatures = [(i.signature, i.count) for i in report.incidents]
    assert signatures == [("cuda-oom", 8)]


def test_the_same_error_repeated_in_one_log_is_counted_once(kb):
    log = "\n\n".join(OOM.replace("{rank}", "0") for _ in range(3)) + "\n"
    [incident] = scan_text(log, kb=kb).incidents
    assert incident.count == 3


def test_a_chain_reports_its_first_recognised_exception_as_the_cause(kb):
    log = '''Traceback (most recent call last):
  File "/workspace/train.py", line 10, in step
    out = model(x)
RuntimeError: expected mat1 and mat2 to have the same dtype, but got: c10::BFloat16 != float

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/workspace/train.py", line 12, in step
    raise RuntimeError("step failed") from None
RuntimeError: step failed
'''
    incidents = scan_text(log, kb=kb).incidents
    assert [i.signature for i in incidents] == ["dtype-mismatch"]


def test_a_clean_log_gives_no_incident(kb):
    log = '''Initializing a new nanoGPT model from scratch
val/MeanSquaredError=0.0213 val/MeanAbsoluteError=0.1032
schema check finished: 0 errors, 0 warnings, 50000 rows
iter 100: loss 3.2104, time 52.31ms, mfu 12.3%
running inference on 512 held-out samples
'''
    assert scan_text(log, kb=kb).incidents == ()


WATCHDOG = ("[E ProcessGroupNCCL.cpp:737] [Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=2817, "
            "OpType=ALLREDUCE, Timeout(ms)=1800000) ran for 1800534 milliseconds before timing out.\n")


def test_a_failure_explains_a_later_one_it_names(kb):
    oom = ("[rank3]:torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 3 has a total "
           "capacity of 79.15 GiB of which 1.02 GiB is free.\n")
    report = scan_text(oom + WATCHDOG, kb=kb)
    assert [(i.signature, i.explained_by) for i in report.incidents] == [
        ("cuda-oom", None), ("distributed-timeout", "cuda-oom")]


def test_an_abort_after_a_timeout_does_not_explain_it(kb):
    # torch 1.x: the watchdog's exception escapes, the process aborts; the abort is the timeout's end
    report = scan_text(WATCHDOG + "terminate called after throwing an instance of 'std::runtime_error'\n"
                       "  what():  [Rank 1] Watchdog caught collective operation timeout\nAborted (core dumped)\n", kb=kb)
    assert [(i.signature, i.explained_by) for i in report.incidents] == [
        ("distributed-timeout", None), ("segfault", None)]


def test_a_warning_level_signature_raised_through_a_traceback_is_an_error(kb):
    overflow = ("[2024-09-15 02:41:10,118] [INFO] [loss_scaler.py:190:update_scale] [deepspeed] OVERFLOW! Rank 0 "
                "Skipping step. Attempted loss scale: 1, reducing to 1\n")
    fatal = ('Traceback (most recent call last):\n  File "/home/user/proj/train.py", line 270, in main\n'
             '    model.step()\nException: Current loss scale already at minimum - cannot decrease scale anymore. '
             'Exiting run.\n')
    assert [(i.signature, i.severity) for i in scan_text(overflow, kb=kb).incidents] == [("amp-overflow", "warning")]
    assert [(i.signature, i.severity) for i in scan_text(overflow + fatal, kb=kb).incidents] == [("amp-overflow", "error")]
