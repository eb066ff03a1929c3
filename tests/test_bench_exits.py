"""The benches' promise (README, "Development"): none leaves a process or a file behind, and
bad input is one clear line, a non-zero exit, no traceback, nothing half-written.

Each test stops its bench itself, from conditions it waits for (never a sleep racing it), and
removes what the bench left, so that a failure leaves nothing either.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def bench(tmp_path: Path, *args: str) -> subprocess.Popen:
    """``python -m bench.ARGS`` in a session of its own, its temporary files under tmp_path."""
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT,
                            env={**os.environ, "TMPDIR": str(scratch)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def session_processes(session: int) -> dict[int, list[str]]:
    """{pid: command line} of the live processes of ``session``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != session:
                continue
            stat = (entry / "stat").read_text()
            if stat[stat.rindex(")") + 2] == "Z":  # a zombie has ended
                continue
            found[int(entry.name)] = (entry / "cmdline").read_bytes().decode().split("\0")
        except (OSError, ValueError):
            continue
    return found


def wait_for_child(process: subprocess.Popen, name: str) -> list[str]:
    """The command line of the first process of the bench's session whose command names
    ``name``, once there is one (the bench is then mid-run)."""
    deadline = time.monotonic() + 120  # a guard against a hang, not a timing
    while time.monotonic() < deadline:
        for pid, command in session_processes(process.pid).items():
            if pid != process.pid and any(name in part for part in command):
                return command
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError(f"no {name} started")


@pytest.mark.parametrize(("args", "child", "scratch_flag", "ready"), [
    (("bench.scaling", "handler", "20000"), "pegasus-globus-online", "--file", "home"),
    # the emulator serving and logged into: a stopped bench no longer ends it through its pipe
    (("bench.bridge", "--rounds", "15"), "pegasus_globus.emulator.cli", "--root",
     "globus.conf"),
])
def test_a_bench_ended_by_sigterm_leaves_no_process_and_no_file(tmp_path, args, child,
                                                                  scratch_flag, ready):
    """SIGTERM (a timeout, a cancelled CI job, `kill`) mid-run: the bench's children end with
    it and its scratch directory (on /dev/shm, or under TMPDIR) is gone."""
    process = bench(tmp_path, *args)
    command = wait_for_child(process, child)
    scratch = Path(command[command.index(scratch_flag) + 1]).parent
    while scratch.parent not in (Path("/dev/shm"), tmp_path / "tmp"):
        scratch = scratch.parent
    try:
        deadline = time.monotonic() + 120  # a guard against a hang, not a timing
        while not (scratch / ready).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=120)
        deadline = time.monotonic() + 10  # children may take a moment to see their end
        while session_processes(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = session_processes(process.pid)
        assert not left, f"left running: {left}"
        assert not scratch.exists(), f"left behind: {scratch}"
    finally:
        for pid in session_processes(process.pid):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.parametrize("args", [
    ("bench.scaling", "nope"),
    ("bench.scaling", "handler", "x"),
    ("bench.scaling", "handler", "0"),
    ("bench.scaling", "handler", "-5"),
    ("bench.bridge", "--rounds", "0"),
    ("bench.record_size", "nope"),
    ("bench.register_timers", "x"),
])
def test_a_bench_given_a_bad_argument_says_so_in_one_line(tmp_path, args):
    process = bench(tmp_path, *args)
    try:
        _, errors = process.communicate(timeout=120)
    finally:
        for pid in session_processes(process.pid):
            os.kill(pid, signal.SIGKILL)
    assert process.returncode != 0
    assert "Traceback" not in errors
    assert len(errors.strip().splitlines()) == 1, errors
    assert list((tmp_path / "tmp").iterdir()) == []


def test_the_handler_target_set_at_100000_files_is_not_judged_at_another_size(tmp_path):
    """Issue 25's handler target is at 10^5 files: a run at 100 files cannot say it holds (nor
    that it is missed)."""
    process = bench(tmp_path, "bench.scaling", "handler", "100")
    try:
        output, errors = process.communicate(timeout=120)
    finally:
        for pid in session_processes(process.pid):
            os.kill(pid, signal.SIGKILL)
    assert process.returncode == 0, errors
    assert "holds" not in output and "MISSED" not in output, output
