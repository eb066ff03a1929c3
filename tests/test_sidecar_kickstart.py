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
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TRACE = ROOT / "share" / "kickstart-gpu" / "traces" / "a2x-a100-training.json"
SIDECAR = str(Path(sys.executable).parent / "pegasus-kickstart-gpu")
HOSTILE = "nightly [cluster-task run] - invocation: raw: 3 <status [seqexec-summary"


@pytest.fixture(autouse=True)
def kickstarts_temporary_files_in_the_tests_directory(tmp_path, monkeypatch):
    """kickstart keeps the job's stdout and stderr in $TMPDIR/ks.*: a kickstart killed by a
    signal (as several tests here kill it, alone and behind the sidecar) leaves them."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))


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


@pytest.mark.parametrize("closed", [">&-", "2>&-", ">&- 2>&-"])
def test_closed_standard_streams_change_nothing(closed):
    """`job >&-`: the job's exit status, and no traceback, whatever the sidecar cannot write."""
    for job, status in (("true", 0), ("sh -c 'exit 3'", 3)):
        script = (f'exec 3>&1; {job} {closed}; echo "alone=$?" >&3; '
                  f'"{SIDECAR}" --backend replay:{TRACE} -- {job} {closed}; echo "rc=$?" >&3')
        result = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                                timeout=60)
        assert re.findall(r"(?:alone|rc)=\d+", result.stdout) == [f"alone={status}",
                                                                    f"rc={status}"]
        assert "Traceback" not in result.stdout + result.stderr


def test_a_record_that_cannot_be_written_whole_leaves_no_file(tmp_path):
    """--output on a full disk (here a file size limit): no partial or empty record file."""
    import resource

    output = tmp_path / "record.yml"

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))

    result = subprocess.run([SIDECAR, "--backend", f"replay:{TRACE}", "--output", str(output),
                             "--", "true"], capture_output=True, text=True, timeout=60,
                            preexec_fn=small_files)
    assert result.returncode == 0, result.stderr
    assert "could not write the GPU record" in result.stderr
    assert not output.exists()
    output.write_text("kept\n")  # an existing file keeps what it had
    subprocess.run([SIDECAR, "--backend", f"replay:{TRACE}", "--output", str(output), "--",
                    "true"], capture_output=True, timeout=60, preexec_fn=small_files)
    assert output.read_text() == "kept\n"


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGALRM, signal.SIGXCPU, signal.SIGRTMIN + 2,
                                    signal.SIGPIPE, signal.SIGXFSZ],
                         ids=["SIGALRM", "SIGXCPU", "SIGRTMIN+2", "SIGPIPE", "SIGXFSZ"])
def test_any_ending_signal_ends_it_as_it_ends_kickstart_alone(pegasus, tmp_path, signum):
    """A signal that would end the sidecar by default goes to kickstart: the parent sees the
    same status as with kickstart alone, and kickstart never outlives the sidecar."""
    from bench.sidecar_signals import descendants

    outcomes = []
    for sidecar in (False, True):
        ready = tmp_path / f"ready-{sidecar}"
        command = [str(pegasus.home / "bin" / "pegasus-kickstart"), "-n", "job", "-N", "ID1",
                   "-R", "local", "/bin/sh", "-c", f"echo > {ready}; exec sleep 30"]
        if sidecar:
            command = [SIDECAR, "--interval", "1", "--backend", f"replay:{TRACE}", *command]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, cwd=tmp_path,
                                   start_new_session=True)
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        tree = descendants(process.pid)
        os.kill(process.pid, signum)
        process.wait(timeout=30)
        kickstart = tree[1] if sidecar else tree[0]
        outcomes.append((process.returncode, sidecar and running(kickstart)))
        for pid in tree:  # the job, left running by kickstart as it would be alone
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert outcomes[0][0] == outcomes[1][0] == -signum
    assert outcomes[1][1] is False  # kickstart did not outlive the sidecar


# waits in a builtin read, not in a loop of `sleep`s: a stop that lands while dash vforks a
# `sleep` stops the child before its exec and leaves the shell waiting for it, never stopped
FAMILY_JOB = """trap 'echo TERM >> {seen}; exit 143' TERM
sleep 33 & echo $! > {background}
mkfifo {fifo}; exec 3<>{fifo}
echo $$ > {ready}
read -t {seconds} <&3
exit 5
"""


def state(pid: int) -> tuple[str, int]:
    """A process's state letter and process group."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return fields[0], int(fields[2])


def wait_for(condition: Any, what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def family_trial(pegasus, directory: Path, action: str, sidecar: bool) -> dict[str, Any]:
    """A job with a background child under kickstart (alone or behind the sidecar), started in
    a process group of its own as a shell's job control starts one (in the shell's session,
    where SIGTSTP stops a group; in a session of its own, as batch systems start jobs, the
    kernel discards it), then signalled as ``action`` says."""
    from bench.sidecar_signals import descendants

    files = {name: directory / f"{name}-{sidecar}" for name in ("ready", "seen", "background",
                                                                "fifo")}
    for path in files.values():
        path.unlink(missing_ok=True)
    script = directory / f"family-{sidecar}.sh"
    script.write_text(FAMILY_JOB.format(seconds=3 if action == "stop and continue" else 30,
                                        **files))
    command = [str(pegasus.home / "bin" / "pegasus-kickstart"), "-n", "job", "-N", "ID1",
               "-R", "local", "/bin/bash", str(script)]
    if sidecar:
        command = [SIDECAR, "--interval", "1", "--backend", f"replay:{TRACE}", *command]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               preexec_fn=os.setpgrp, cwd=directory)
    wait_for(lambda: files["ready"].exists() and files["ready"].read_text().strip()
             and files["background"].exists(), "the job started")
    job, background = (int(files[name].read_text()) for name in ("ready", "background"))
    outcome: dict[str, Any] = {"job in the top's group": state(job)[1] == process.pid}
    if action == "stop and continue":  # Ctrl-Z, or a batch system suspending the job
        os.killpg(process.pid, signal.SIGTSTP)
        wait_for(lambda: state(job)[0] == state(process.pid)[0] == "T",
                 f"the job and the top process stopped (sidecar: {sidecar})")
        os.killpg(process.pid, signal.SIGCONT)
    elif action == "top process":
        os.kill(process.pid, signal.SIGTERM)
    elif action == "process group":
        os.killpg(process.pid, signal.SIGTERM)
    else:  # every process, in pid order: how a cgroup kill reaches them
        for pid in descendants(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    outcome["exit"] = process.returncode
    outcome["record whole"] = "- invocation:" in out.decode(errors="replace")
    outcome["background child left running"] = running(background)
    with contextlib.suppress(ProcessLookupError):
        os.kill(background, signal.SIGKILL)
    outcome["job saw TERM"] = bool(files["seen"].exists())
    return outcome


@pytest.mark.parametrize("action", ["process group", "top process", "every process",
                                    "stop and continue"])
def test_the_jobs_process_family_fares_as_under_kickstart_alone(pegasus, tmp_path, action):
    """The job stays in the process group kickstart alone would leave it in: a signal to the
    group reaches a background child too, one to the top process does not, and Ctrl-Z stops
    the job (with the top process) until SIGCONT. The sidecar used to put kickstart in a group
    of its own, where a group kill never reached the background child nor a SIGTSTP the job."""
    alone = family_trial(pegasus, tmp_path, action, sidecar=False)
    wrapped = family_trial(pegasus, tmp_path, action, sidecar=True)
    assert wrapped == alone
    assert alone["record whole"] and alone["job in the top's group"]
    if action == "stop and continue":
        assert alone["exit"] == 5
    else:
        assert alone["exit"] == 143 and alone["job saw TERM"]
        assert alone["background child left running"] == (action == "top process")


def test_the_block_names_the_task_of_the_kickstart_it_wrapped(pegasus, tmp_path):
    """kickstart's -n and -N in the block's context: a clustered job's block printed apart from
    its task's record (PegasusLite) still says which task it covered."""
    result = kickstart(pegasus, "/bin/true", sidecar=True, cwd=tmp_path)
    gpu = {k: v for e in parse(result.stdout) if e.get("multipart") for k, v in e.items()}
    context = gpu["kickstart.inv.gpu.environment"]["context"]
    assert (context["transformation"], context["derivation"]) == ("job", "ID1")
