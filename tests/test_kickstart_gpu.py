"""pegasus-kickstart-gpu: the job never notices, and Pegasus' own tools read the GPU block."""

from __future__ import annotations

import contextlib
import copy
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest
import yaml

from kickstart_gpu.block_writer import MARKER, for_the_record
from kickstart_gpu.monitor import Monitor, Options, SpreadSamples
from kickstart_gpu.nvml import Device, Nvml
from kickstart_gpu.replay import TraceLibrary
from kickstart_gpu.selection import select
from kickstart_gpu.trace_file import load_trace

ROOT = Path(__file__).resolve().parent.parent
TRACE = ROOT / "share" / "kickstart-gpu" / "traces" / "a2x-a100-training.json"
SCHEMA = json.loads((ROOT / "share" / "kickstart-gpu" / "events.schema.json").read_text())
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "kickstart"
SIDECAR = [sys.executable, "-m", "kickstart_gpu.cli"]
REPLAY = f"replay:{TRACE}"


def sidecar(*args: str, env: dict[str, str] | None = None, **kwargs: Any):
    environ = {k: v for k, v in os.environ.items()
               if k not in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
                            "PEGASUS_MULTIPART_DIR", "KICKSTART_MON_URL")}
    return subprocess.run([*SIDECAR, *args], env={**environ, **(env or {})},
                          capture_output=True, timeout=120, **kwargs)


def block(text: str) -> dict[str, Any]:
    """The GPU block's three entries, read as YAML like Pegasus does."""
    entries = yaml.safe_load(text.split(MARKER + "\n")[-1])
    return {key: value for entry in entries for key, value in entry.items()}


def validate(events: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(events)


# -- the record, read by Pegasus ---------------------------------------------------------------

@pytest.mark.parametrize("fixture", ["success_ls.out", "failure_exit2_ls.out",
                                     "success_with_multipart_preprocess.out", "yaml_ok.out"])
def test_pegasus_parser_reads_the_block_and_exitcode_is_unchanged(tmp_path, fixture):
    from Pegasus.exitcode import JobFailed, check_kickstart_records
    from Pegasus.tools.kickstart_parser import YAMLParser

    def verdict(text: str) -> str:
        try:
            check_kickstart_records(text)
            return "success"
        except JobFailed as failure:
            return f"failure: {failure}"

    out = tmp_path / "job.out"
    shutil.copy(FIXTURES / fixture, out)
    before = verdict(out.read_text())
    result = sidecar("--interval", "1", "--backend", REPLAY, "--output", str(out), "--",
                     "sleep", "1.2")
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert verdict(text) == before
    appended = text[len((FIXTURES / fixture).read_text()):]
    assert all(line[:1] in (" ", "-") for line in appended.split(MARKER + "\n", 1)[1].splitlines())
    entries = YAMLParser(str(out)).parse_stampede()
    ours = {key for entry in entries if entry.get("multipart") for key in entry}
    assert {"kickstart.inv.gpu.environment", "kickstart.inv.gpu.stats",
            "kickstart.inv.gpu.stats.max"} <= ours
    assert any("invocation" in entry or "hostname" in entry for entry in entries)


def test_pegasus_lite_multipart_directory(tmp_path):
    from Pegasus.tools.kickstart_parser import YAMLParser

    multipart = tmp_path / "multipart"
    result = sidecar("--interval", "1", "--backend", REPLAY, "--", "true",
                     env={"PEGASUS_MULTIPART_DIR": str(multipart)})
    assert result.returncode == 0 and result.stdout == b""
    (written,) = multipart.iterdir()
    assert MARKER not in written.read_text()  # PegasusLite prints the marker itself
    out = tmp_path / "job.out"  # what pegasus_include_multipart appends to the job's output
    out.write_text((FIXTURES / "success_ls.out").read_text() + f"\n{MARKER}\n"
                   + written.read_text())
    entries = YAMLParser(str(out)).parse_stampede()
    assert any("kickstart.inv.gpu.stats.max" in entry for entry in entries)


# -- the job must not notice -------------------------------------------------------------------

@pytest.mark.parametrize("code", [0, 1, 3, 127, 255])
def test_exit_status_passes_through(tmp_path, code):
    result = sidecar("--backend", "none", "--output", str(tmp_path / "r"), "--", "sh", "-c",
                     f"exit {code}")
    assert result.returncode == code


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL, signal.SIGSEGV,
                                    signal.SIGUSR1])
def test_a_job_killed_by_a_signal_ends_the_sidecar_by_the_same_signal(tmp_path, signum):
    record = tmp_path / "record"
    result = sidecar("--backend", REPLAY, "--interval", "1", "--output", str(record), "--",
                     "sh", "-c", f"kill -{signum.name[3:]} $$")
    assert result.returncode == -signum
    assert "kickstart.inv.gpu.stats.max" in record.read_text()  # written before dying


CHILD = """
import os, signal, sys, time
log = open(sys.argv[1], "a", buffering=1)
def note(signum, frame):
    log.write(signal.Signals(signum).name + "\\n")
    if signum == signal.SIGTERM:
        sys.exit(7)
for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"):
    signal.signal(getattr(signal, name), note)
log.write("ready\\n")
while True:
    time.sleep(0.05)
"""


def test_signals_are_forwarded_to_the_job_once_each(tmp_path):
    log = tmp_path / "signals"
    process = subprocess.Popen([*SIDECAR, "--backend", "none", "--output",
                                str(tmp_path / "r"), sys.executable, "-c", CHILD, str(log)])
    deadline = time.monotonic() + 30
    while "ready" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.02)
    sent = [signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT, signal.SIGINT,
            signal.SIGTERM]
    for signum in sent:
        process.send_signal(signum)
        time.sleep(0.3)
    assert process.wait(timeout=30) == 7
    assert log.read_text().split() == ["ready", *[s.name for s in sent]]


def test_the_launcher_keeps_what_its_parent_ignored_and_adds_nothing_to_the_environment():
    """nohup's SIGHUP and a parent's ignored SIGPIPE reach the job ignored, through the
    installed launcher script, whose hand-over variable the job never sees."""
    launcher = Path(sys.executable).parent / "pegasus-kickstart-gpu"

    def nohup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    job = ["sh", "-c", "grep SigIgn /proc/self/status; env"]
    shown = subprocess.run([str(launcher), "--backend", "none", "--output", os.devnull, *job],
                           capture_output=True, text=True, timeout=60, preexec_fn=nohup).stdout
    mask = int(shown.split("SigIgn:")[1].split()[0], 16)
    assert mask >> (signal.SIGHUP - 1) & 1 and mask >> (signal.SIGPIPE - 1) & 1
    assert "PEGASUS_KICKSTART_GPU_SIGIGN" not in shown
    plain = subprocess.run([str(launcher), "--backend", "none", "--output", os.devnull, *job],
                           capture_output=True, text=True, timeout=60).stdout
    assert not int(plain.split("SigIgn:")[1].split()[0], 16) >> (signal.SIGPIPE - 1) & 1


def test_stdin_stdout_and_stderr_are_untouched(tmp_path):
    data = os.urandom(200_000)
    command = ["sh", "-c", "cat; printf 'to stderr\\n' >&2"]
    alone = subprocess.run(command, input=data, capture_output=True)
    wrapped = sidecar("--backend", REPLAY, "--interval", "1", "--output", str(tmp_path / "r"),
                      "--", *command, input=data)
    assert (wrapped.stdout, wrapped.stderr, wrapped.returncode) == (
        alone.stdout, alone.stderr, alone.returncode)


def test_options_stop_at_the_first_word_that_is_not_one(tmp_path):
    result = sidecar("--backend", "none", "--output", str(tmp_path / "r"), "echo",
                     "--interval", "5", "--", "x")
    assert result.stdout == b"--interval 5 -- x\n"


def test_the_job_starts_before_pynvml_is_imported(tmp_path):
    """A stand-in pynvml, imported inside the sidecar, lists the sidecar's children."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "pynvml.py").write_text(
        "import glob\n"
        "children = [open(f).read().split() for f in glob.glob('/proc/self/task/*/children')]\n"
        "names = [open(f'/proc/{pid}/cmdline').read().split(chr(0))[0] for pid in\n"
        "         sum(children, [])]\n"
        "open(__file__ + '.children', 'w').write(' '.join(names))\n"
        "raise ImportError('shim')\n")
    result = sidecar("--backend", "nvml", "--", "sleep", "0.5", env={"PYTHONPATH": str(shim)})
    assert result.returncode == 0
    children = Path(str(shim / "pynvml.py") + ".children").read_text().split()
    assert "sleep" in children  # the job was already running when pynvml was imported
    assert "no NVML: ImportError" in block(result.stdout.decode())[
        "kickstart.inv.gpu.environment"]["reason"]


def test_command_not_found_exits_like_a_shell():
    result = sidecar("--backend", "none", "--", "no-such-command-xyz")
    assert result.returncode == 127
    assert b"no-such-command-xyz: No such file or directory" in result.stderr


def test_the_command_is_looked_up_on_path_as_a_shell_does(tmp_path):
    """A file of the command's name that cannot run does not hide a later one on $PATH; where
    none can run, the first such file's error is the one reported, with a shell's 126."""
    unrunnable, runnable = tmp_path / "a", tmp_path / "b"
    for directory in (unrunnable, runnable):
        directory.mkdir()
    (unrunnable / "job").write_text("#!/bin/sh\nexit 5\n")  # not executable
    (runnable / "job").write_text("#!/bin/sh\nexit 4\n")
    (runnable / "job").chmod(0o755)
    path = f"{tmp_path / 'absent'}:{unrunnable}:{runnable}"
    assert sidecar("--backend", "none", "--", "job", env={"PATH": path}).returncode == 4
    alone = sidecar("--backend", "none", "--", "job",
                    env={"PATH": f"{tmp_path / 'absent'}:{unrunnable}"})
    assert (alone.returncode, alone.stderr) == (126, b"pegasus-kickstart-gpu: job: "
                                                      b"Permission denied\n")


def test_the_sidecar_imports_nothing_heavy_on_a_jobs_path(tmp_path):
    """Every job pays for what the sidecar imports (issue 25: start-up within 1.5x a bare
    Python): its own modules, the record and a PegasusLite multipart file leave out the
    standard library's costly modules (signal's and json's enums and regular expressions,
    threading's collections, tempfile's random)."""
    script = ("import os, sys\n"
              "from kickstart_gpu.cli import run\n"
              "from kickstart_gpu.monitor import Monitor, Options\n"
              "from kickstart_gpu.block_writer import write_record\n"
              "from kickstart_gpu.replay import TraceLibrary\n"
              "from kickstart_gpu.trace_file import load_trace\n"
              f"TraceLibrary(load_trace({str(TRACE)!r}))\n"
              "monitor = Monitor(None, Options(), {}, os.getpid(), 'off', command=['true'])\n"
              "monitor.start(); monitor.stop(10)\n"
              f"write_record(monitor.finish(), {str(tmp_path / 'record')!r}, {{}})\n"
              f"write_record(monitor.finish(), None, {{'PEGASUS_MULTIPART_DIR': "
              f"{str(tmp_path)!r}}})\n"
              "heavy = ('signal', 'enum', 'threading', 'functools', 'json', 're', 'tempfile',"
              " 'typing', 'argparse', 'types')\n"
              "print(sorted(set(heavy) & set(sys.modules)))\n")
    answer = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True,
                            text=True, check=True)
    assert answer.stdout.strip() == "[]"
    assert "kickstart.inv.gpu.stats.max" in (tmp_path / "record").read_text()


@pytest.mark.parametrize("args,message", [
    (["--interval", "0", "--", "touch", "X"], "--interval 0: use 1 to 3600 seconds"),
    (["--backend", "cuda", "--", "touch", "X"], "use auto, nvml, none or replay:TRACE"),
    (["--backend", "replay:/no/such", "--", "touch", "X"], "cannot read GPU trace /no/such"),
    (["--max-samples", "1", "--", "touch", "X"], "keep at least 2"),
    (["--mon-url", "ftp://x", "--", "touch", "X"], "file://, http(s):// or rabbitmq(s)://"),
    ([], "no command to run"),
])
def test_bad_options_fail_before_the_job_runs(tmp_path, args, message):
    result = sidecar(*args, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr.decode()
    assert not (tmp_path / "X").exists()


# -- what is monitored -------------------------------------------------------------------------

def test_no_nvidia_driver_is_recorded_and_the_job_runs():
    result = sidecar("--backend", "nvml", "--", "sh", "-c", "echo job ran")
    environment = block(result.stdout.decode())["kickstart.inv.gpu.environment"]
    if environment["device_count"]:
        pytest.skip("this host has an NVIDIA GPU")
    assert result.returncode == 0 and result.stdout.startswith(b"job ran\n")
    assert environment["reason"].startswith(("NVML did not start", "no NVML"))


def test_replay_of_two_gpus_samples_at_start_interval_and_exit(tmp_path):
    series = tmp_path / "events.jsonl"
    result = sidecar("--interval", "1", "--backend", REPLAY, "--events-file", str(series),
                     "--", "sleep", "2.5")
    assert result.returncode == 0, result.stderr
    events = block(result.stdout.decode())
    validate(events)
    trace = json.loads(TRACE.read_text())
    environment = events["kickstart.inv.gpu.environment"]
    assert environment["device_count"] == 2 and environment["cuda_version"] == 12.4
    assert [d["uuid"] for d in environment["devices"]] == [d["uuid"] for d in trace["devices"]]
    assert environment["devices"][0]["total_bar1_memory"] == 64 * 1024 ** 3
    lines = [json.loads(line) for line in series.read_text().splitlines()]
    stats = [e for e in lines if e["event"] == "kickstart.inv.gpu.stats"]  # the full series
    per_device = {i: [s for s in stats if s["id"] == i] for i in (0, 1)}
    assert all(len(samples) == 4 for samples in per_device.values())  # 0 s, 1 s, 2 s, exit
    in_record = events["kickstart.inv.gpu.stats"]  # thinned, the first and the last kept
    assert 4 <= len(in_record) < len(stats)
    assert all(s in list(map(for_the_record, stats)) for s in in_record)
    assert {s["timestamp"] for s in in_record} >= {stats[0]["timestamp"], stats[-1]["timestamp"]}
    assert all("uuid" in s for s in stats)  # left to the events, named by the inventory
    assert all(s["sampling_duration"] >= 0 for s in stats)
    assert per_device[1][0]["pcie_rx"] is None
    assert per_device[1][0]["errors"]["pcie_rx"] == "NOT_SUPPORTED"
    maxima = {d["id"]: d for d in events["kickstart.inv.gpu.stats.max"]["devices"]}
    assert maxima[0]["samples"] == 4 and maxima[0]["energy_source"] == "energy counter"
    assert maxima[0]["max_power_usage"] == max(s["power_usage"] for s in per_device[0])


def test_nvml_failing_mid_run_is_recorded_and_the_job_is_unaffected(tmp_path):
    trace = json.loads(TRACE.read_text())
    for sample in trace["samples"][1:]:
        sample["devices"][0]["errors"] = {"*": "GPU_IS_LOST"}
    lost = tmp_path / "lost.json"
    lost.write_text(json.dumps(trace))
    result = sidecar("--interval", "1", "--backend", f"replay:{lost}", "--", "sh", "-c",
                     "sleep 1.5; exit 4")
    assert result.returncode == 4
    events = block(result.stdout.decode())
    validate(events)
    gpu0 = [s for s in events["kickstart.inv.gpu.stats"] if s["id"] == 0]
    assert gpu0[0]["temp"] is not None
    assert gpu0[-1]["temp"] is None and gpu0[-1]["errors"]["temp"] == "GPU_IS_LOST"
    gpu1 = [s for s in events["kickstart.inv.gpu.stats"] if s["id"] == 1]
    assert gpu1[-1]["temp"] is not None  # the other GPU is still sampled


def library(trace: dict[str, Any] | None = None) -> Nvml:
    nvml = Nvml(TraceLibrary(trace or load_trace(TRACE)))
    nvml.init()
    return nvml


@pytest.mark.parametrize("environ,expected", [
    ({}, [0, 1]),
    ({"CUDA_VISIBLE_DEVICES": "1"}, [1]),
    ({"CUDA_VISIBLE_DEVICES": "1,0"}, [1, 0]),
    ({"CUDA_VISIBLE_DEVICES": "GPU-8a2d"}, [1]),
    ({"CUDA_VISIBLE_DEVICES": "GPU-3f1c2b7e-5d4a-4e8b-9c61-0a7d2e4f5b11,0"}, [0]),
    ({"CUDA_VISIBLE_DEVICES": "0,7,1"}, [0]),  # CUDA stops at the first invalid entry
    ({"CUDA_VISIBLE_DEVICES": "GPU-"}, []),  # a prefix matching both GPUs is ambiguous
    ({"CUDA_VISIBLE_DEVICES": ""}, []),
    ({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, []),
    ({"NVIDIA_VISIBLE_DEVICES": "all"}, [0, 1]),
    ({"NVIDIA_VISIBLE_DEVICES": "none"}, []),
    ({"NVIDIA_VISIBLE_DEVICES": "GPU-8a2d4c6e-1b3f-4a5c-8e7d-2f4b6c8d0e22"}, [1]),
    ({"CUDA_VISIBLE_DEVICES": "0", "NVIDIA_VISIBLE_DEVICES": "1"}, [0]),
])
def test_only_the_jobs_gpus_are_selected(environ, expected):
    assert select(library(), environ).indices == expected


@pytest.mark.parametrize("hidden", ["10000", "-1"])
def test_gpus_hidden_on_purpose_are_no_gpu_and_no_problem(hidden):
    """HTCondor gives a job that asked for no GPU CUDA_VISIBLE_DEVICES=10000."""
    selection = select(library(), {"CUDA_VISIBLE_DEVICES": hidden})
    assert (selection.indices, selection.problems) == ([], [])


def test_a_mig_instance_is_monitored_through_its_parent():
    trace = copy.deepcopy(load_trace(TRACE))
    trace["devices"][1]["mig_uuids"] = ["MIG-11112222-3333-4444-5555-666677778888"]
    selection = select(library(trace), {
        "CUDA_VISIBLE_DEVICES": "MIG-11112222-3333-4444-5555-666677778888"})
    assert selection.indices == [1]
    assert selection.mig == {1: "MIG-11112222-3333-4444-5555-666677778888"}


def test_the_bounded_record_is_spread_over_the_run_and_maxima_cover_all():
    monitor = Monitor(lambda: TraceLibrary(load_trace(TRACE)), Options(max_samples=10),
                      {}, os.getpid())
    monitor._start_monitoring()
    for _ in range(1000):
        monitor.take_sample()
    events = monitor.finish()
    gpu0 = [s for s in events["kickstart.inv.gpu.stats"] if s["id"] == 0]
    assert len(gpu0) <= 10
    assert events["kickstart.inv.gpu.stats.max"]["devices"][0]["samples"] == 1000


def test_a_job_that_ended_before_nvml_started_gets_its_exit_sample_alone():
    """On a GPU host NVML takes about 90 ms to start (pynvml's import, nvmlInit): a job that
    ended by then is sampled once, at its exit, and without PCIe, whose 20 ms window per
    counter would hold the job's end and measure the GPU after it."""
    def library() -> TraceLibrary:
        monitor._stop.wait(10)  # NVML opens only once the job has ended
        return TraceLibrary(load_trace(TRACE))

    monitor = Monitor(library, Options(interval=1), {}, os.getpid())
    monitor.start()
    assert monitor.stop(10)
    samples = monitor.finish()["kickstart.inv.gpu.stats"]
    assert [s["id"] for s in samples] == [0, 1]
    assert all("pcie_rx" not in s for s in samples) and samples[0]["temp"] is not None


def test_a_running_job_is_sampled_at_once_and_at_its_exit_with_pcie_until_then():
    monitor = Monitor(lambda: TraceLibrary(load_trace(TRACE)), Options(interval=60), {},
                      os.getpid())
    monitor.start()
    while not monitor.samples.items:  # the first sample is in
        time.sleep(0.01)
    assert monitor.stop(10)
    first, _, last, _ = monitor.finish()["kickstart.inv.gpu.stats"]
    assert "pcie_rx" in first and "pcie_rx" not in last


def test_pynvml_is_imported_without_ctypes_util_and_still_finds_libraries():
    """pynvml imports ctypes.util's find_library (shutil, subprocess, tempfile, re: 26 ms)
    and never calls it on Linux: the sidecar leaves ctypes.util out of its import, and
    find_library still works, importing the real one when called."""
    code = ("import sys; from kickstart_gpu.nvml import import_pynvml; pynvml = import_pynvml(); "
            "print('ctypes.util' in sys.modules, 'subprocess' in sys.modules); "
            "print(pynvml.find_library('c')); import ctypes.util; "
            "print(ctypes.util.find_library('c'), ctypes.util.find_library is not "
            "pynvml.find_library)")
    result = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["False False", "libc.so.6", "libc.so.6 True"]


def test_a_clock_a_gpu_lacks_is_recorded_and_replayed_as_that_clock_alone():
    """A GPU without a video clock (NOT_SUPPORTED for that clock only): the recorder keeps the
    other clocks, and a replay of its trace fails that clock alone, as the driver did."""
    from kickstart_gpu.record_trace import Recorder

    class NoVideoClock(TraceLibrary):  # stands for such a driver
        def nvmlDeviceGetClockInfo(self, handle: int, clock: int) -> int:
            if clock == 3:
                raise self._error("NOT_SUPPORTED")
            return super().nvmlDeviceGetClockInfo(handle, clock)

        def nvmlDeviceGetMaxClockInfo(self, handle: int, clock: int) -> int:
            if clock == 3:
                raise self._error("NOT_SUPPORTED")
            return super().nvmlDeviceGetMaxClockInfo(handle, clock)

    def read(library: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        nvml = Nvml(library)
        device = Device(nvml, 0, nvml.query("nvmlDeviceGetHandleByIndex", 0))
        return device.inventory(), device.sample(False, False, False)

    driver = NoVideoClock(load_trace(TRACE))
    recorder = Recorder(Nvml(driver), os.getpid(), 2)
    trace = {**recorder.header("one sample"), "samples": [recorder.sample()]}
    replayed, driven = read(TraceLibrary(trace)), read(driver)
    assert replayed == driven
    inventory, sample = replayed
    assert inventory["max_video_clock"] is None and inventory["max_gpu_clock"] == 1410
    assert sample["errors"] == {"video_clock": "NOT_SUPPORTED"} and sample["gpu_clock"] == 210


def test_spread_samples_keep_the_first_the_last_and_an_even_spread():
    spread = SpreadSamples(10)
    for index in range(1000):
        spread.append(index)
    kept = list(spread)
    assert len(kept) <= 10 and kept[0] == 0 and kept[-1] == 999
    gaps = {b - a for a, b in zip(kept[:-2], kept[1:-1])}
    assert len(gaps) == 1  # evenly spaced, but for the final sample


def test_the_schema_accepts_the_seeds_example():
    seed = ROOT / "tests" / "fixtures" / "seed_gpu_events.json"  # the seed manual page's JSON
    events = json.loads(seed.read_text())
    grouped = {"kickstart.inv.gpu.environment": events[0],
               "kickstart.inv.gpu.stats": events[1:3], "kickstart.inv.gpu.stats.max": events[3]}
    validate(grouped)


# -- events elsewhere: --events-file and --mon-url ----------------------------------------------

class _Collector(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, str], Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector():
    _Collector.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, _Collector.received
    server.shutdown()


def test_events_file_and_http_monitoring_url(tmp_path, collector):
    server, received = collector
    events_file = tmp_path / "events.jsonl"
    result = sidecar("--interval", "1", "--backend", REPLAY, "--events-file", str(events_file),
                     "--mon-url", f"http://127.0.0.1:{server.server_port}/ingest", "--",
                     "sleep", "1.2")
    assert result.returncode == 0
    lines = [json.loads(line) for line in events_file.read_text().splitlines()]
    kinds = [event["event"] for event in lines]
    assert kinds[0] == "kickstart.inv.gpu.environment"
    assert kinds[-1] == "kickstart.inv.gpu.stats.max"
    assert [body for _, _, body in received] == lines


def test_rabbitmq_monitoring_url_publishes_through_the_http_api(collector):
    server, received = collector
    url = f"rabbitmq://guest:secret@127.0.0.1:{server.server_port}/%2F/pegasus"
    result = sidecar("--backend", REPLAY, "--mon-url", url, "--", "true")
    assert result.returncode == 0
    path, headers, body = received[0]
    assert path == "/api/exchanges/%2F/pegasus/publish"
    assert headers["Authorization"] == "Basic Z3Vlc3Q6c2VjcmV0"
    assert body["routing_key"] == "kickstart.inv.online"
    assert json.loads(body["payload"])["event"] == "kickstart.inv.gpu.environment"


def test_an_unreachable_monitoring_url_is_recorded_not_fatal():
    result = sidecar("--backend", REPLAY, "--mon-url", "http://127.0.0.1:9/", "--", "true")
    assert result.returncode == 0
    problems = block(result.stdout.decode())["kickstart.inv.gpu.environment"]["problems"]
    assert any("monitoring URL" in p for p in problems)


def test_a_long_eight_gpu_run_adds_a_small_block_whatever_its_length(tmp_path):
    """Pegasus parses every .out with a pure-Python YAML loader: the block must stay small."""
    from bench.record_size import gpu_block, widened_trace
    from kickstart_gpu.block_writer import BYTES_IN_ALL

    block = gpu_block(widened_trace(8, tmp_path), samples=600)
    assert len(block.encode()) <= BYTES_IN_ALL
    entries = dict(line[2:].split(": ", 1) for line in block.splitlines()[1:])
    stats = json.loads(entries["kickstart.inv.gpu.stats"])
    assert {s["id"] for s in stats} == set(range(8))  # the last sample of each GPU
    assert {s["timestamp"] for s in stats} == {max(s["timestamp"] for s in stats)}
    assert not any(key in s for s in stats for key in ("uuid", "energy_consumption"))
    environment = json.loads(entries["kickstart.inv.gpu.environment"])
    assert all(d["uuid"] for d in environment["devices"])  # the inventory names each GPU
    maxima = json.loads(entries["kickstart.inv.gpu.stats.max"])
    assert [d["samples"] for d in maxima["devices"]] == [600] * 8  # maxima cover every sample


@pytest.mark.parametrize("content", ["root:x:0:0:root:/root:/bin/bash\n", '{"format": "other"}'])
def test_a_file_that_is_no_trace_is_refused_before_the_job_starts(tmp_path, content):
    trace = tmp_path / "trace"
    trace.write_text(content)
    result = sidecar("--backend", f"replay:{trace}", "--", "touch", str(tmp_path / "ran"))
    assert result.returncode == 2 and b"is not" in result.stderr
    assert not (tmp_path / "ran").exists()


def test_a_signal_to_the_group_while_the_job_starts_is_never_lost(tmp_path):
    """The canary that tells group signals from direct ones is made after the job, so that a
    group signal it holds reached the job too. Made before, a group SIGTERM landing between the
    two forks was taken for delivered and lost (the job ran on; 7 in 30 starts)."""
    process = subprocess.Popen([*SIDECAR, "--backend", "none", "--output", os.devnull, "--",
                                "sleep", "20"], start_new_session=True)

    def children() -> dict[str, tuple[int, int]]:
        """name -> (start time in clock ticks, pid) of the launcher's children."""
        found = {}
        for task in Path(f"/proc/{process.pid}/task").iterdir():
            # a thread may end between the listing and the read (the monitor thread, at once,
            # with --backend none): its children file is gone, and it held none of them
            try:
                listed = (task / "children").read_text().split()
            except FileNotFoundError:
                continue
            for pid in listed:
                with contextlib.suppress(OSError):
                    started = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]
                                  .split()[19])
                    name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
                    found["job" if name == b"sleep" else "canary"] = (started, int(pid))
        return found
    deadline = time.monotonic() + 20
    while len(children()) < 2:
        assert time.monotonic() < deadline, children()
        time.sleep(0.01)
    made = children()
    assert made["canary"] > made["job"]
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=30) == -signal.SIGTERM


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root to run as nobody under a process limit (setpriv)")
def test_no_thread_to_be_had_still_waits_for_the_job_and_forwards(tmp_path):
    """Under `ulimit -u` the launcher may get the job and the canary but no thread: it still
    waits for the job, forwards a signal, and ends as the job did, without a traceback."""
    script = (f'ulimit -u 3; exec {sys.executable} -m kickstart_gpu.cli --backend none '
              f'--output {os.devnull} -- sh -c \'echo started; exec sleep 20\'')
    process = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                "bash", "-c", script], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd="/",
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout.readline() == b"started\n", process.stderr.read()
    # the launcher holds the signals for itself from before the job started
    process.send_signal(signal.SIGUSR1)  # to the launcher alone: forwarded to the job
    assert process.wait(timeout=30) == -signal.SIGUSR1
    errors = process.stderr.read()
    assert b"monitoring failed to start" in errors and b"Traceback" not in errors, errors


USUAL_COMMAND_LINES = [
    ["true"], ["--", "true", "-x"], ["--interval", "2.5", "--backend=none", "sleep", "1"],
    ["--max-samples", "7", "--output", "out.yml", "--events-file=e.jsonl", "--no-pcie",
     "--no-process-utilization", "--no-graphics-processes", "--mon-url", "file:///x", "--",
     "job", "--interval", "3"],
    ["--backend", "replay:a2x-a100-training", "job", "--", "-v"], ["--output=", "true"], [],
]


@pytest.mark.parametrize("argv", USUAL_COMMAND_LINES)
def test_the_usual_command_line_is_read_as_argparse_reads_it(argv, monkeypatch):
    from kickstart_gpu import cli

    monkeypatch.setenv("KICKSTART_MON_URL", "file:///from-the-environment")
    assert vars(cli._usual_arguments(argv)) == vars(cli._parser().parse_args(argv))


@pytest.mark.parametrize("argv", [["-h"], ["--help"], ["--inter", "5", "true"],
                                  ["--interval", "five", "true"], ["--interval", "-5", "true"],
                                  ["--interval"], ["--no-pcie=1", "true"], ["-x", "true"]])
def test_help_abbreviations_and_mistakes_are_left_to_argparse(argv):
    from kickstart_gpu import cli

    assert cli._usual_arguments(argv) is None


def test_a_usual_run_never_imports_argparse():
    """argparse's import and parser cost every job about 10 ms before it starts."""
    script = ("import sys, kickstart_gpu.cli as cli\n"
              "cli._check(cli._usual_arguments(['--interval', '5', 'true']))\n"
              "print('argparse' in sys.modules)\n")
    answer = subprocess.run([sys.executable, "-E", "-c", script], capture_output=True,
                            text=True, check=True)
    assert answer.stdout.strip() == "False"


def test_a_replay_never_imports_pynvml_yet_fails_as_nvml_does(tmp_path):
    """pynvml's import (about 20 ms) is for real GPUs only; a replayed error is read with the
    reason NVML's would give."""
    script = ("import sys\n"
              "from kickstart_gpu.nvml import Nvml\n"
              "from kickstart_gpu.replay import TraceLibrary\n"
              "from kickstart_gpu.trace_file import load_trace\n"
              f"nvml = Nvml(TraceLibrary(load_trace({str(TRACE)!r})))\n"
              "handle = nvml.query('nvmlDeviceGetHandleByIndex', 1)\n"
              "print(nvml.query('nvmlDeviceGetPcieThroughput', handle, 0).reason)\n"
              "print('pynvml' in sys.modules)\n")
    answer = subprocess.run([sys.executable, "-E", "-c", script], capture_output=True,
                            text=True, check=True)
    assert answer.stdout.split() == ["NOT_SUPPORTED", "False"]


def test_modules_in_the_jobs_working_directory_never_replace_the_sidecars(tmp_path):
    """Jobs run in directories full of their own files: a json.py there must not be imported
    by the sidecar (with `python -m` the working directory came first on sys.path, and the job
    never ran)."""
    for name in ("json", "signal", "threading", "kickstart_gpu"):
        (tmp_path / f"{name}.py").write_text("raise SystemExit('the job directory was imported')\n")
    launcher = Path(sys.executable).parent / "pegasus-kickstart-gpu"
    result = subprocess.run([str(launcher), "--backend", "none", "--output", os.devnull, "--",
                             "sh", "-c", "exit 3"], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path)
    assert (result.returncode, result.stderr) == (3, "")
