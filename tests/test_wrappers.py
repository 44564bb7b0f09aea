"""Scheduler and container wrappers: what Slurm, Kubernetes and the kernel print when they stop a
run from outside, as the user pastes it (slurm-<id>.out, `kubectl describe pod`, dmesg)."""
from pathlib import Path

import pytest

from postmortem.scan import scan, scan_text

WRAPPERS = Path(__file__).resolve().parent / "data" / "wrappers"


def found(name):
    return [(i.signature, i.count, i.line, i.vars.get("what")) for i in scan(WRAPPERS / name).incidents]


def test_slurm_time_limit_is_one_incident_for_the_job_and_its_step():
    assert found("slurm-4242424.out") == [
        ("time-limit", 2, 12, "JOB 4242424 ON gpu-node-17 CANCELLED AT 2026-02-06T22:00:14 DUE TO TIME LIMIT")]


def test_slurm_oom_kill_event_the_shell_s_killed_and_srun_s_out_of_memory_are_one_incident():
    assert found("slurm-4242425.out") == [("host-oom-killed", 3, 4, "Killed")]


def test_kubectl_describe_pod_last_state_oomkilled():
    assert found("kubectl-describe-pod.txt") == [("host-oom-killed", 1, 26, "OOMKilled")]


def test_dmesg_oom_killer_lines_are_one_incident_naming_the_process():
    [incident] = scan(WRAPPERS / "dmesg-oom.log").incidents
    assert (incident.signature, incident.count, incident.line) == ("host-oom-killed", 3, 2)
    assert incident.vars["process"] == "python"


def test_journalctl_cgroup_oom_is_the_host_oom_signature():
    [incident] = scan(WRAPPERS / "journalctl-k-cgroup-oom.log").incidents
    assert (incident.signature, incident.count, incident.vars["process"]) == ("host-oom-killed", 3, "python3")


# Known gaps, in patterns/host-oom-killed.toml (not this file's to change): strict, so that the
# fix turns them into failures that ask for the mark to go.
def test_slurmstepd_with_the_node_name_is_an_oom_kill():
    assert found("slurm-4242426.out")[0][0] == "host-oom-killed"


def test_a_timestamped_oom_kill_event_is_an_oom_kill():
    assert found("slurm-4242427.out")[0][0] == "host-oom-killed"


def test_a_pod_evicted_for_node_memory_pressure_is_a_host_oom():
    assert found("kubectl-describe-pod-evicted.txt")[0][0] == "host-oom-killed"


# torch.multiprocessing.spawn (mp.spawn) wraps the failed child's traceback in the parent's
# exception: "-- Process N terminated with the following error:" and the child's traceback. The
# child's error is the incident; the wrapper adds nothing next to it (child-failed gives way).
SP = "/home/user/miniconda3/envs/ddp/lib/python3.9/site-packages"
SPAWN = f'''Using GPU: 1 for training
Traceback (most recent call last):
  File "/home/user/proj/train_ddp.py", line 319, in <module>
    main()
  File "/home/user/proj/train_ddp.py", line 100, in main
    mp.spawn(main_worker, nprocs=ngpus_per_node, args=(ngpus_per_node, args))
  File "{SP}/torch/multiprocessing/spawn.py", line 198, in start_processes
    while not context.join():
  File "{SP}/torch/multiprocessing/spawn.py", line 160, in join
    raise ProcessRaisedException(msg, error_index, failed_process.pid)
torch.multiprocessing.spawn.ProcessRaisedException: 

-- Process 0 terminated with the following error:
Traceback (most recent call last):
  File "{SP}/torch/multiprocessing/spawn.py", line 69, in _wrap
    fn(i, *args)
  File "/home/user/proj/train_ddp.py", line 198, in main_worker
    loss = criterion(model(batch["image"]), batch["mask"])
CHILD_ERROR
'''
OOM = ("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.38 GiB (GPU 0; 23.69 GiB total "
       "capacity; 19.02 GiB already allocated; 2.91 GiB free; 19.64 GiB reserved in total by PyTorch)")


def spawn_incidents(text):
    return [(i.signature, i.count, i.line, i.evidence) for i in scan_text(text).incidents]


def test_mp_spawn_reports_the_child_s_error_alone():
    assert spawn_incidents(SPAWN.replace("CHILD_ERROR", OOM)) == [("cuda-oom", 1, 19, OOM)]


def test_mp_spawn_with_an_unknown_child_error_reports_that_error_not_the_wrapper():
    found = spawn_incidents(SPAWN.replace("CHILD_ERROR", "KeyError: 'mask'"))
    assert [(s, e) for s, _, _, e in found] == [("unknown", "KeyError: 'mask'")]
    [incident] = scan_text(SPAWN.replace("CHILD_ERROR", "KeyError: 'mask'")).incidents
    assert (incident.location.filename, incident.location.lineno) == ("~/proj/train_ddp.py", 198)


def test_torch_1_x_mp_spawn_raised_a_bare_exception_around_the_child_s_traceback():
    old = SPAWN.replace("torch.multiprocessing.spawn.ProcessRaisedException: ", "Exception: ").replace(
        "raise ProcessRaisedException(msg, error_index, failed_process.pid)", "raise Exception(msg)")
    assert spawn_incidents(old.replace("CHILD_ERROR", OOM)) == [("cuda-oom", 1, 19, OOM)]


def test_mp_spawn_cut_off_before_the_child_s_traceback_is_the_launcher_wrapper():
    cut = SPAWN.split("Traceback (most recent call last):\n  File \"/home/user/miniconda3")[0]
    assert [s for s, *_ in spawn_incidents(cut)] == ["child-failed"]
