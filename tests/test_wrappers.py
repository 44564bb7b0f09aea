"""Scheduler and container wrappers: what Slurm, Kubernetes and the kernel print when they stop a
run from outside, as the user pastes it (slurm-<id>.out, `kubectl describe pod`, dmesg)."""
from pathlib import Path

import pytest

from postmortem.scan import scan

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
