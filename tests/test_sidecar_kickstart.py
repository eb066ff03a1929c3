"""pegasus-kickstart-gpu in front of the real C pegasus-kickstart, as Pegasus' gridstart.launcher
runs it: the job must behave exactly as under kickstart alone, and the record must stay what
Pegasus' own tools read correctly, whatever the strings in it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TRACE = ROOT / "share" / "kickstart-gpu" / "traces" / "a2x-a100-training.json"
SIDECAR = str(Path(sys.executable).parent / "pegasus-kickstart-gpu")
HOSTILE = "nightly [cluster-task run] - invocation: raw: 3 <status [seqexec-summary"


def kickstart(pegasus, *job: str, sidecar: bool, cwd: Path, env: dict | None = None,
              backend: str = f"replay:{TRACE}",
              preexec_fn: Any = None) -> subprocess.CompletedProcess:
    """The job under pegasus-kickstart, with or without the sidecar in front (the launcher)."""
    command = [str(pegasus.home / "bin" / "pegasus-kickstart"), "-n", "job", "-N", "ID1",
               "-R", "local", *job]
    if sidecar:
        command = [SIDECAR, "--interval", "1", "--backend", backend, *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=cwd,
                          env={**os.environ, **(env or {})}, preexec_fn=preexec_fn)


def parse(record: str) -> list[dict]:
    from Pegasus.tools.kickstart_parser import YAMLParser

    with tempfile.NamedTemporaryFile("w", suffix=".out") as out:
        out.write(record)
        out.flush()
        return YAMLParser(out.name).parse_stampede()


def job_status(record: str) -> tuple[int, int | None]:
    """(raw wait status, signal) of the job, read from kickstart's own YAML record."""
    (invocation,) = yaml.safe_load(record.split("---------------pegasus-multipart")[0])
    status = invocation["mainjob"]["status"]
    return status["raw"], status.get("signalled_signal")


def _ignoring(*signums: int) -> Any:
    def setup() -> None:  # in the child, before exec: a parent such as nohup
        for signum in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}:
            with contextlib.suppress(OSError, ValueError):
                signal.signal(signum, signal.SIG_IGN if signum in signums else signal.SIG_DFL)
    return setup


@pytest.mark.parametrize("parent_ignores", [(), (signal.SIGHUP,), (signal.SIGHUP, signal.SIGPIPE)],
                         ids=["nothing", "nohup", "nohup-and-sigpipe"])
def test_the_job_starts_with_the_dispositions_it_has_under_kickstart_alone(pegasus, tmp_path,
                                                                           parent_ignores):
    job = ("/bin/grep", "SigIgn", "/proc/self/status")
    alone = kickstart(pegasus, *job, sidecar=False, cwd=tmp_path,
                      preexec_fn=_ignoring(*parent_ignores)).stdout
    wrapped = kickstart(pegasus, *job, sidecar=True, cwd=tmp_path,
                        preexec_fn=_ignoring(*parent_ignores)).stdout
    ignored = [int(re.search(r"SigIgn:\s*([0-9a-f]+)", text).group(1), 16)
               for text in (alone, wrapped)]
    assert ignored[0] == ignored[1], [f"{mask:016x}" for mask in ignored]  # whatever we inherit
    for signum in parent_ignores:
        assert ignored[1] >> (signum - 1) & 1  # nohup's SIGHUP stays ignored
    if signal.SIGPIPE not in parent_ignores:
        pipe_and_file_size = (1 << (13 - 1)) | (1 << (25 - 1))  # Python ignores at start-up
        assert not ignored[1] & pipe_and_file_size


def test_a_broken_pipe_ends_the_job_as_under_kickstart_alone(pegasus, tmp_path):
    job = ("/bin/sh", "-c", "yes | head -n 2")
    alone = kickstart(pegasus, *job, sidecar=False, cwd=tmp_path)
    wrapped = kickstart(pegasus, *job, sidecar=True, cwd=tmp_path)  # spun forever before
    assert wrapped.returncode == alone.returncode == 0
    assert job_status(wrapped.stdout) == job_status(alone.stdout) == (0, None)


def test_a_file_over_ulimit_dies_of_sigxfsz_as_under_kickstart_alone(pegasus, tmp_path):
    job = ("/bin/sh", "-c", "ulimit -f 1; exec head -c 100000 /dev/zero > big")
    alone = kickstart(pegasus, *job, sidecar=False, cwd=tmp_path)
    wrapped = kickstart(pegasus, *job, sidecar=True, cwd=tmp_path)
    assert job_status(wrapped.stdout) == job_status(alone.stdout)
    assert job_status(alone.stdout)[1] == 25  # SIGXFSZ, not "File too large" and exit 1
    assert wrapped.returncode == alone.returncode


def test_a_job_killed_by_sigpipe_makes_the_sidecar_end_the_same_way(tmp_path):
    """`job | head -n 1`: the job dies of SIGPIPE, and so must the launcher, not exit 1."""
    script = ('yes | head -n 1 >/dev/null; alone=$?; '
              f'"{SIDECAR}" --backend replay:{TRACE} -- yes | head -n 1 >/dev/null; '
              'echo "$alone ${PIPESTATUS[0]}"')
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["0", "141"], result.stderr
    assert "Traceback" not in result.stderr


def test_the_jobs_python_variables_reach_it_and_cannot_break_the_sidecar(pegasus, tmp_path):
    env = {"PYTHONHOME": "/opt/conda", "PYTHONPATH": "/opt/conda/site",
           "PYTHONSTARTUP": "/nonexistent.py"}
    result = kickstart(pegasus, "/bin/sh", "-c", 'echo "home=$PYTHONHOME path=$PYTHONPATH"',
                       sidecar=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "home=/opt/conda path=/opt/conda/site" in result.stdout
    gpu = [e for e in parse(result.stdout) if e.get("multipart")]
    assert {key for e in gpu for key in e if key != "multipart"} == {
        "kickstart.inv.gpu.environment", "kickstart.inv.gpu.stats",
        "kickstart.inv.gpu.stats.max"}


@pytest.mark.parametrize("where", ["label", "gpu name"])
def test_hostile_strings_cannot_fool_pegasus_tools(pegasus, tmp_path, where):
    trace = json.loads(TRACE.read_text())
    if where == "gpu name":
        trace["devices"][0]["name"] = HOSTILE
    hostile_trace = tmp_path / "trace.json"
    hostile_trace.write_text(json.dumps(trace))
    env = {"PEGASUS_WF_LABEL": HOSTILE} if where == "label" else {}
    result = kickstart(pegasus, "/bin/true", sidecar=True, cwd=tmp_path, env=env,
                       backend=f"replay:{hostile_trace}")
    assert result.returncode == 0
    entries = parse(result.stdout)
    assert len([e for e in entries if e.get("invocation")]) == 1
    gpu = {k: v for e in entries if e.get("multipart") for k, v in e.items() if k != "multipart"}
    environment = gpu["kickstart.inv.gpu.environment"]
    if where == "label":
        assert environment["context"]["wf_label"] == HOSTILE  # decoded back unchanged
    else:
        assert environment["devices"][0]["name"] == HOSTILE
    verdict = pegasus.exitcode(result.stdout)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr


def test_inside_kickstart_the_block_stays_out_of_the_jobs_stdout(pegasus, tmp_path):
    """kickstart -> sidecar -> job: kickstart captures the sidecar's stdout as the job's."""
    ks = str(pegasus.home / "bin" / "pegasus-kickstart")
    result = subprocess.run([ks, "-n", "job", "-N", "ID1", "-R", "local", SIDECAR, "--backend",
                             f"replay:{TRACE}", "--", "/bin/echo", "job output"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0
    assert "pegasus-multipart" not in result.stdout and "job output" in result.stdout
    (block,) = tmp_path.glob("pegasus-kickstart-gpu-*.yml")
    assert block.read_text().startswith("---------------pegasus-multipart\n- kickstart.inv.gpu")
    assert f"the GPU block is in {block}" in result.stdout  # the stderr kickstart recorded
    assert pegasus.exitcode(result.stdout).returncode == 0


@pytest.mark.parametrize("mode", ["top process", "process group"])
def test_sigterm_reaches_the_job_and_the_record_survives(pegasus, tmp_path, mode):
    """HTCondor's soft kill signals the top process; `timeout` and `kill -- -PGID` its group.
    kickstart dies if a second SIGTERM lands while it writes its record. What must hold in
    every trial, with and without the sidecar: the record is whole, the job saw the signal,
    and the parent sees 143. A signal to the top process alone reaches the job exactly once;
    to the group, kickstart alone delivers it once or twice (its own forward races the
    group's), so how often is a rate for bench.sidecar_signals (200 trials of each mode and a
    kill of every process), not a test."""
    from bench.sidecar_signals import trial

    kickstart = str(pegasus.home / "bin" / "pegasus-kickstart")
    allowed = {1} if mode == "top process" else {1, 2}
    for sidecar in (False, True, True, True):
        complete, times, status = trial(kickstart, mode, sidecar=sidecar, directory=tmp_path)
        assert (complete, status) == (True, 143), (sidecar, complete, times, status)
        assert times in allowed, (sidecar, times)
