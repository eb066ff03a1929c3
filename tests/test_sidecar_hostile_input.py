"""pegasus-kickstart-gpu given hostile input: each test names a behaviour the sidecar promises
(one clear line for bad input, a shell's outcome for a command, the record never lost)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRACE = ROOT / "share" / "kickstart-gpu" / "traces" / "a2x-a100-training.json"
SIDECAR = [sys.executable, "-m", "kickstart_gpu.cli"]
MARKER = "---------------pegasus-multipart"


def sidecar(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
                            "PEGASUS_MULTIPART_DIR", "KICKSTART_MON_URL")}
    return subprocess.run([*SIDECAR, *args], env={**environ, **(env or {})},
                          capture_output=True, timeout=120)


def refused_in_one_line(result: subprocess.CompletedProcess, ran: Path) -> bool:
    lines = result.stderr.decode().strip().splitlines()
    return (result.returncode == 2 and not ran.exists() and b"Traceback" not in result.stderr
            and lines[-1].startswith("pegasus-kickstart-gpu: error: --backend replay:"))


def test_an_empty_command_name_fails_like_a_shell_in_one_line(tmp_path):
    """bash: `'': command not found` (127); dash: `: Permission denied` (126). The sidecar
    says nothing, exits 126 and writes a GPU record for a job that never ran."""
    record = tmp_path / "record"
    result = sidecar("--backend", "none", "--output", str(record), "--", "")
    assert result.returncode in (126, 127)
    assert result.stderr.startswith(b"pegasus-kickstart-gpu: ")
    assert not record.exists()  # no job ran: like any other command that cannot start


def test_a_script_without_a_shebang_runs_as_in_a_shell(tmp_path):
    """A shell (and glibc's execvp) runs an executable text file without `#!` with /bin/sh;
    the sidecar reports `Exec format error` and 126."""
    script = tmp_path / "job"
    script.write_text("exit 5\n")
    script.chmod(0o755)
    result = sidecar("--backend", "none", "--output", str(tmp_path / "record"), "--", "job",
                     env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    shell = subprocess.run(["sh", "-c", "job"], env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert shell.returncode == 5
    assert result.returncode == shell.returncode, result.stderr


@pytest.mark.parametrize("samples", [[1], [{"t": 0, "devices": [1]}], [{"devices": []}]])
def test_a_damaged_trace_costs_the_job_nothing_and_the_record_says_why(tmp_path, samples):
    """A file that says it is a trace was given: what it then plays, damaged or not, is NVML's
    part, which never touches the job (no traceback, no exit 2): the record names the fault."""
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps({"format": "pegasus-kickstart-gpu-trace", "devices": [],
                                 "samples": samples}))
    ran, record = tmp_path / "ran", tmp_path / "record"
    result = sidecar("--backend", f"replay:{trace}", "--output", str(record), "--", "touch",
                     str(ran))
    assert (result.returncode, result.stderr) == (0, b"") and ran.exists()
    (environment,) = [json.loads(line.split(": ", 1)[1]) for line in
                      record.read_text().splitlines() if "gpu.environment" in line]
    assert environment["reason"] == (
        f"no NVML: TraceError: GPU trace {trace}: it needs a list of device objects, and "
        'samples that each have a time "t" in seconds and one object per device')


def test_a_deeply_nested_trace_is_refused_in_one_line(tmp_path):
    trace = tmp_path / "trace.json"
    trace.write_text("[" * 100_000 + "]" * 100_000)
    ran = tmp_path / "ran"
    result = sidecar("--backend", f"replay:{trace}", "--", "touch", str(ran))
    assert refused_in_one_line(result, ran), result.stderr.decode()[-300:]


def test_a_trace_holding_nan_never_costs_the_job_its_gpu_block(tmp_path):
    """Either refused before the job (a bad trace is a bad option), or replayed into a block
    that YAML can read; today the job runs and the whole block is dropped."""
    trace: dict[str, Any] = json.loads(TRACE.read_text())
    trace["samples"][0]["devices"][0]["gpu_util"] = float("nan")
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(trace))
    ran, record = tmp_path / "ran", tmp_path / "record"
    result = sidecar("--interval", "1", "--backend", f"replay:{path}", "--output", str(record),
                     "--", "touch", str(ran))
    if result.returncode == 2:
        assert refused_in_one_line(result, ran), result.stderr.decode()[-300:]
    else:
        assert result.returncode == 0 and ran.exists()
        assert record.exists() and MARKER in record.read_text(), result.stderr.decode()


RT_COUNTER = """
import signal, sys
counted, last = signal.SIGRTMIN + 6, signal.SIGRTMAX
signal.pthread_sigmask(signal.SIG_BLOCK, {counted, last})
print("started", flush=True)
count = 0
while signal.sigwaitinfo({counted, last}).si_signo == counted:
    count += 1
print(count, flush=True)
"""


def test_queued_real_time_signals_all_reach_the_job_without_a_thread(tmp_path):
    """Real-time signals queue: three sent to a job reach it three times, also where the
    sidecar gets no thread (`ulimit -u`). (Python handlers, which forwarded there, run once
    for any number of deliveries that came before Python looked: the job saw one.)"""
    import signal
    import time

    script = (f'ulimit -u 3; exec {sys.executable} -m kickstart_gpu.cli --backend none '
              f'--output {os.devnull} -- {sys.executable} -c "$COUNTER"')
    process = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                "bash", "-c", script], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd="/",
                               env={**os.environ, "PYTHONPATH": str(ROOT),
                                    "COUNTER": RT_COUNTER})
    assert process.stdout.readline() == b"started\n", process.stderr.read()
    counted, last = signal.SIGRTMIN + 6, signal.SIGRTMAX

    def status(field: str) -> str:
        with open(f"/proc/{process.pid}/status") as text:
            return text.read().split(f"{field}:")[1].split()[0]

    deadline = time.monotonic() + 20  # (the launcher holds the signals from before the job)
    process.send_signal(signal.SIGSTOP)  # the three are delivered together when it goes on
    while status("State") != "T":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    for _ in range(3):
        process.send_signal(counted)
    process.send_signal(last)  # ends the count once the three are forwarded
    process.send_signal(signal.SIGCONT)
    out, errors = process.communicate(timeout=30)
    assert b"monitoring failed to start" in errors  # the no-thread path ran
    assert out.strip() == b"3", errors
