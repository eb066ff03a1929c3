"""NVML at the C boundary: the sidecar's real path (the real pynvml, its ctypes structures and
versioned symbols) against a fake ``libnvidia-ml.so.1`` compiled from NVIDIA's ``nvml.h``.

Each test runs the sidecar twice on one trace, through the driver library (``--backend
nvml``) and through the replay, and the two must write the same events: where they differ,
the real path is right and the replay is wrong.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kickstart_gpu.block_writer import MARKER
from tests.fake_nvml.build import NoCompiler, build, convert
from tests.test_kickstart_gpu import SIDECAR, TRACE, block, validate

H200_TRACE = TRACE.parent / "h200-pytorch-job.json"
JOB = ["sleep", "2.2"]  # samples at about 0, 1 and 2 s, and at exit
TIMING = {"timestamp", "sampling_duration", "duration"}


@pytest.fixture(scope="session")
def drivers(tmp_path_factory) -> dict[str, Path]:
    """The fake driver library, as a current driver (550) and an older one (470)."""
    root = tmp_path_factory.mktemp("fake-nvml")
    try:
        return {"current": build(root / "current").parent,
                "old": build(root / "old", old_driver=True).parent}
    except NoCompiler as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the fake NVML: {error}")
        pytest.skip(str(error))


def busy_trace(gpus: int = 2) -> dict[str, Any]:
    """Ten seconds of the A100 trace's training, with sample times that fall between the
    sidecar's samples (0, 1.5, 2.5 s...), so both runs read the same trace samples."""
    trace = json.loads(TRACE.read_text())
    trace["samples"] = [dict(s, t=0 if i == 0 else i + 0.5)
                        for i, s in enumerate(trace["samples"][10:20])]
    second = trace["samples"][1]["devices"][0]  # read at 2 s and at exit
    second["throttle"] = 0x20  # SW thermal slowdown
    second["graphics_procs"] = [[0, None]]  # memory NVML cannot tell (WDDM, some vGPUs)
    if gpus != 2:
        template = trace["devices"][0]
        trace["devices"] = [dict(template, uuid=f"GPU-{i:08x}-0000-4000-8000-000000000000",
                                 pci_bus_id=f"00000000:{0x10 + i:02X}:00.0")
                            for i in range(gpus)]
        for sample in trace["samples"]:
            sample["devices"] = [copy.deepcopy(sample["devices"][0]) for _ in range(gpus)]
    return trace


def run(backend: str, trace: dict[str, Any], tmp_path: Path, driver: Path | None = None,
        *options: str, env: dict[str, str] | None = None, job: list[str] = JOB,
        init_error: str | None = None, count_error: str | None = None, pcie_ms: int = 20):
    """The sidecar on ``trace``: (result, every event it emitted, the record's block).

    :param init_error: the NVML error nvmlInit returns
    :param count_error: the NVML error nvmlDeviceGetCount returns
    :param pcie_ms: what one PCIe counter read costs, milliseconds (hardware: 20)
    """
    work = tmp_path / backend
    work.mkdir()
    environ = {k: v for k, v in os.environ.items()
               if k not in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
                            "PEGASUS_MULTIPART_DIR", "KICKSTART_MON_URL")}
    if backend in ("nvml", "auto"):
        environ["LD_LIBRARY_PATH"] = str(driver)
        environ["FAKE_NVML_TRACE"] = str(convert(trace, work / "trace.txt",
                                                 init_error=init_error,
                                                 count_error=count_error, pcie_ms=pcie_ms))
    else:
        (work / "trace.json").write_text(json.dumps(trace))
        backend = f"replay:{work / 'trace.json'}"
    events = work / "events.jsonl"
    result = subprocess.run([*SIDECAR, "--interval", "1", "--backend", backend,
                             "--events-file", str(events), *options, "--", *job],
                            env={**environ, **(env or {})}, capture_output=True, timeout=60)
    lines = events.read_text().splitlines() if events.exists() else []
    return result, [json.loads(line) for line in lines], block(result.stdout.decode())


def job_output(result: subprocess.CompletedProcess) -> bytes:
    return result.stdout.split(b"\n" + MARKER.encode())[0]


def untimed(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events without what depends on when they were taken, and the job's PID as "job"."""
    kept = []
    for event in events:
        event = {k: v for k, v in event.items() if k not in TIMING}
        for key in ("compute_procs", "graphics_procs", "proc_samples"):
            for process in event.get(key) or []:
                process["pid"] = "job" if process["in_job"] else process["pid"]
        if event["event"] == "kickstart.inv.gpu.stats.max":
            event["devices"] = [{k: v for k, v in d.items() if k != "idle_fraction"
                                 and not (k == "energy_used"
                                          and d["energy_source"] == "integrated power")}
                                for d in event["devices"]]
        kept.append(event)
    return kept


def same_as_replay(trace: dict[str, Any], tmp_path: Path, driver: Path, *options: str,
                   **kwargs: Any) -> list[dict[str, Any]]:
    real, real_events, record = run("nvml", trace, tmp_path, driver, *options, **kwargs)
    replay, replay_events, _ = run("replay", trace, tmp_path, None, *options, **kwargs)
    assert real.returncode == replay.returncode and real.stderr == replay.stderr
    assert job_output(real) == job_output(replay)
    assert untimed(real_events) == untimed(replay_events)
    assert "problems" not in record["kickstart.inv.gpu.environment"], record
    validate(record)
    return real_events


def stats(events: list[dict[str, Any]], gpu: int) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "kickstart.inv.gpu.stats" and e["id"] == gpu]


def test_real_pynvml_records_what_the_replay_records(drivers, tmp_path):
    events = same_as_replay(busy_trace(), tmp_path, drivers["current"])
    environment = events[0]
    assert environment["nvidia_driver_version"] == "550.54.15"
    assert environment["cuda_version"] == 12.4
    assert [d["pci_bus_id"] for d in environment["devices"]] == ["00000000:07:00.0",
                                                                 "00000000:0F:00.0"]
    gpu0 = stats(events, 0)
    assert len(gpu0) == 4 and gpu0[0]["compute_procs"][0]["in_job"]
    assert gpu0[0]["proc_samples"][0]["in_job"]  # trace PID 0 is the job, in both
    assert gpu0[-1]["throttle_reasons"] == 0x20
    assert gpu0[-1]["graphics_procs"][0]["mem_usage"] is None  # NVML_VALUE_NOT_AVAILABLE
    assert stats(events, 1)[0]["errors"]["pcie_rx"] == "NOT_SUPPORTED"


@pytest.mark.parametrize("gpus", [1, 8])
def test_one_and_eight_gpus(drivers, tmp_path, gpus):
    # PCIe at 2 ms: 8 GPUs x 2 counters x 20 ms would read the last GPUs of the exit sample
    # past the next trace sample, where the replay (no cost) reads the one before
    events = same_as_replay(busy_trace(gpus), tmp_path, drivers["current"], pcie_ms=2)
    assert events[0]["device_count"] == events[0]["host_device_count"] == gpus
    assert [len(stats(events, gpu)) for gpu in range(gpus)] == [4] * gpus


def test_what_sampling_costs_does_not_stretch_the_interval(drivers, tmp_path):
    """8 GPUs with PCIe cost 320 ms a sample, and still sample at 0, 1 and 2 s."""
    _, events, _ = run("nvml", busy_trace(8), tmp_path, drivers["current"])
    assert [len(stats(events, gpu)) for gpu in range(8)] == [4] * 8


def test_a_consumer_gpu_without_power_pcie_bar1_or_process_utilisation(drivers, tmp_path):
    trace = busy_trace()
    trace["devices"][0]["unsupported"] = [
        "nvmlDeviceGetPowerUsage", "nvmlDeviceGetEnforcedPowerLimit",
        "nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetPcieThroughput",
        "nvmlDeviceGetBAR1MemoryInfo", "nvmlDeviceGetProcessUtilization"]
    events = same_as_replay(trace, tmp_path, drivers["current"])
    sample = stats(events, 0)[-2]  # the last before the exit sample, which leaves PCIe out
    for field in ("power_usage", "energy_consumption", "pcie_rx", "bar1_mem_usage",
                  "proc_samples"):
        assert sample[field] is None and sample["errors"][field] == "NOT_SUPPORTED"
    assert sample["temp"] and sample["compute_procs"]  # the rest is still there
    inventory = events[0]["devices"][0]
    assert inventory["power_limit"] is None and inventory["total_bar1_memory"] is None
    maxima = events[-1]["devices"][0]
    assert maxima["energy_used"] is None and maxima["max_power_usage"] is None


def test_an_older_driver_without_the_v3_and_clock_event_symbols(drivers, tmp_path):
    """pynvml calls ..._v3 and nvmlDeviceGetCurrentClocksEventReasons, which drivers before
    510 and 535 lack: the sidecar falls back to ..._v2 and ...ThrottleReasons."""
    events = same_as_replay(busy_trace(), tmp_path, drivers["old"])
    gpu0 = stats(events, 0)
    assert gpu0[0]["compute_procs"] and gpu0[-1]["graphics_procs"]
    assert gpu0[-1]["throttle_reasons"] == 0x20
    assert not any("errors" in sample for sample in gpu0)


def test_a_mig_instance_given_by_cuda_visible_devices(drivers, tmp_path):
    trace = busy_trace()
    mig = "MIG-5c3e8a1f-2b4d-5e6f-8a9b-0c1d2e3f4a5b"
    trace["devices"][1]["mig_uuids"] = ["MIG-0a0a0a0a-0000-5000-8000-000000000000", mig]
    events = same_as_replay(trace, tmp_path, drivers["current"],
                            env={"CUDA_VISIBLE_DEVICES": mig})
    environment = events[0]
    assert environment["selected_by"] == "CUDA_VISIBLE_DEVICES"
    assert [(d["id"], d["mig_uuid"]) for d in environment["devices"]] == [(1, mig)]
    assert {e["id"] for e in events[1:-1]} == {1}


def test_a_gpu_lost_mid_run(drivers, tmp_path):
    trace = busy_trace()
    trace["samples"][1]["devices"][0]["errors"] = {"*": "GPU_IS_LOST"}
    events = same_as_replay(trace, tmp_path, drivers["current"],
                            job=["sh", "-c", "sleep 2.2; echo done; exit 4"])
    gpu0 = stats(events, 0)
    assert gpu0[0]["temp"] is not None and gpu0[-1]["temp"] is None
    assert set(gpu0[-1]["errors"].values()) == {"GPU_IS_LOST"}
    assert stats(events, 1)[-1]["temp"] is not None  # the other GPU is still sampled


def test_auto_uses_nvml_where_the_driver_library_loads(drivers, tmp_path):
    """--backend auto (the default) checks for libnvidia-ml.so.1 as pynvml loads it, and only
    then imports pynvml; where it loads, the record is what --backend nvml gives."""
    from kickstart_gpu.nvml import driver_library_loads

    _, events, record = run("auto", busy_trace(), tmp_path, drivers["current"])
    assert events[0]["device_count"] == 2 and "reason" not in record[
        "kickstart.inv.gpu.environment"]
    if driver_library_loads():
        return  # a machine with a driver: nothing to show without one
    result = subprocess.run([*SIDECAR, "--", "true"], capture_output=True, timeout=60)
    environment = block(result.stdout.decode())["kickstart.inv.gpu.environment"]
    assert environment["reason"] == "NVML did not start: LIBRARY_NOT_FOUND"  # as pynvml says


@pytest.mark.parametrize("error", ["DRIVER_NOT_LOADED", "NO_PERMISSION"])
def test_nvml_init_failing(drivers, tmp_path, error):
    result, _, record = run("nvml", busy_trace(), tmp_path, drivers["current"],
                            job=["sh", "-c", "echo out; echo err >&2; exit 3"],
                            init_error=error)
    assert result.returncode == 3 and result.stderr == b"err\n"
    assert job_output(result) == b"out\n"
    environment = record["kickstart.inv.gpu.environment"]
    assert environment["reason"] == f"NVML did not start: {error}"
    assert environment["device_count"] == 0


def test_a_clock_or_counter_unsupported_in_some_readings_only(drivers, tmp_path):
    """A recorded trace keeps a clock or PCIe counter that NVML did not give in one reading as
    null, and a maximum clock it never gave too; the replay answers NOT_SUPPORTED there. The
    fake driver once played them as 0 MHz and 0 KB/s, so the two disagreed."""
    trace = busy_trace()
    trace["devices"][0]["max_clocks"][3] = None  # the video clock
    second = trace["samples"][1]["devices"][0]  # read at 2 s
    second["clocks"][1] = None
    second["pcie_tx"] = None
    events = same_as_replay(trace, tmp_path, drivers["current"])
    assert events[0]["devices"][0]["max_video_clock"] is None
    assert events[0]["devices"][0]["max_sm_clock"]
    at_2_s = stats(events, 0)[2]
    assert at_2_s["sm_clock"] is None and at_2_s["pcie_tx"] is None, at_2_s
    assert at_2_s["errors"] == {"sm_clock": "NOT_SUPPORTED", "pcie_tx": "NOT_SUPPORTED"}
    assert at_2_s["gpu_clock"] and at_2_s["pcie_rx"] is not None


def test_nvml_failing_to_count_the_gpus(drivers, tmp_path):
    result, _, record = run("nvml", busy_trace(), tmp_path, drivers["current"],
                            job=["sh", "-c", "echo out; exit 3"], count_error="UNKNOWN")
    assert result.returncode == 3 and job_output(result) == b"out\n"
    environment = record["kickstart.inv.gpu.environment"]
    assert environment["device_count"] == 0 and environment["host_device_count"] is None
    # it said "no NVIDIA GPU on this host"
    assert environment["reason"] == "NVML cannot count the GPUs: UNKNOWN", environment


def test_sampling_duration_includes_the_pcie_window(drivers, tmp_path):
    """nvmlDeviceGetPcieThroughput samples for 20 ms by design; two counters per GPU. The
    sample after the job's exit leaves PCIe out: it would hold the job's end for a window that
    measures nothing of the job."""
    _, events, _ = run("nvml", busy_trace(), tmp_path, drivers["current"])
    *during, at_exit = stats(events, 0)
    assert all(e["sampling_duration"] >= 0.04 and "pcie_rx" in e for e in during)
    assert at_exit["sampling_duration"] < 0.02 and "pcie_rx" not in at_exit


def test_a_trace_recorded_on_an_h200_reads_the_same_through_the_driver(drivers, tmp_path):
    """Values a real GPU gave (bench/real_gpu.sh on an H200: 141 GiB, a 256 GiB BAR1, clock
    event reasons 0 and 0x4 power cap, the job's CUDA context with 14 MiB, then its 17 GiB)
    pass through pynvml's real structures as through the replay. From sample 11 on, the job
    starts on the GPU; samples are re-timed to fall between the sidecar's (read at 0, 1, 2 s
    and at exit: trace samples 11, 11, 12, 12)."""
    trace = json.loads(H200_TRACE.read_text())
    trace["samples"] = [dict(s, t=0 if i == 0 else i + 0.5)
                        for i, s in enumerate(trace["samples"][11:21])]
    events = same_as_replay(trace, tmp_path, drivers["current"])
    samples = stats(events, 0)
    assert [s["throttle_reasons"] for s in samples] == [0, 0, 4, 4]
    assert [(p["mem_usage"], p["in_job"]) for s in samples for p in s["compute_procs"]] == [
        (14680064, True)] * 2 + [(18190696448, True)] * 2
    assert events[0]["devices"][0]["total_memory"] == 150754820096


# -- recording a trace through the driver ------------------------------------------------------

RECORDER = [sys.executable, "-m", "kickstart_gpu.record_trace"]


def playing(trace: dict[str, Any], tmp_path: Path, driver: Path) -> dict[str, str]:
    """The environment in which the real pynvml loads the fake driver playing ``trace``."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")}
    return {**environ, "LD_LIBRARY_PATH": str(driver),
            "FAKE_NVML_TRACE": str(convert(trace, tmp_path / "played.txt"))}


def record(trace: dict[str, Any], tmp_path: Path, driver: Path, job: list[str],
           interval: str = "1") -> tuple[subprocess.CompletedProcess, dict[str, Any]]:
    """``python -m kickstart_gpu.record_trace`` through the real pynvml, the fake driver
    playing ``trace``: (result, the recorded trace)."""
    recorded = tmp_path / "recorded.json"
    result = subprocess.run([*RECORDER, "--interval", interval, str(recorded), "--", *job],
                            env=playing(trace, tmp_path, driver), capture_output=True,
                            timeout=60)
    return result, json.loads(recorded.read_text()) if recorded.exists() else {}


def test_a_recorded_trace_holds_what_the_driver_answered(drivers, tmp_path):
    """The recorder reads every function the sidecar reads: the trace it writes is the played
    trace at the times it sampled (0, 1 and 2 s and at exit of a 2.2 s job), unsupported
    functions and the job's PID as the played trace has them, and no process utilisation where
    NVML had no sample newer than the last read."""
    played = busy_trace()
    result, recorded = record(played, tmp_path, drivers["current"], JOB)
    assert result.returncode == 0, result.stderr
    assert [round(s["t"]) for s in recorded["samples"]] == [0, 1, 2, 2]
    assert recorded["devices"] == played["devices"]
    assert (recorded["driver_version"], recorded["cuda_driver_version"]) == (
        played["driver_version"], played["cuda_driver_version"])
    expected = [played["samples"][i]["devices"] for i in (0, 0, 1, 1)]
    for number, (sample, devices) in enumerate(zip(recorded["samples"], expected)):
        for got, want in zip(sample["devices"], devices):
            want = {**want, "graphics_procs": [[0, None]] if want["graphics_procs"] else []}
            if number % 2:  # the played sample read again: NVML has no new process sample
                want["proc_util"] = []
            if "pcie_rx" not in got or got["pcie_rx"] is None:  # unsupported on GPU 1
                want = {**want, "pcie_rx": None, "pcie_tx": None}
            assert got == want


def test_a_recorded_trace_replays_as_the_driver_ran(drivers, tmp_path):
    """What the sidecar writes replaying a trace recorded from a driver is what it writes on
    that driver: the recorder leaves out nothing the sidecar reads. Recorded four times as
    often as replayed: NVML gives each process's utilisation once, so most recorded samples
    hold none, and a replay must still give the latest since the sidecar last asked."""
    played = busy_trace()
    result, recorded = record(played, tmp_path, drivers["current"], ["sleep", "4.2"], "0.25")
    assert result.returncode == 0, result.stderr
    assert sum(1 for s in recorded["samples"] if s["devices"][0]["proc_util"]) < len(
        recorded["samples"]) / 2
    replayed = run("replay", recorded, tmp_path, None)[1]
    driven = run("nvml", played, tmp_path, drivers["current"])[1]
    assert untimed(replayed) == untimed(driven)
    assert sum(1 for e in stats(replayed, 0) if e["proc_samples"]) == 2  # at 0 and 2 s


def test_a_gpu_lost_from_the_start_is_recorded_and_the_command_runs_on(drivers, tmp_path):
    played = busy_trace()
    played["samples"][0]["devices"][0]["errors"] = {"*": "GPU_IS_LOST"}
    result, recorded = record(played, tmp_path, drivers["current"], ["sh", "-c", "exit 7"])
    assert result.returncode == 7, result.stderr
    lost = recorded["devices"][0]
    assert lost["pci_bus_id"] is None and lost["name"] is None
    assert set(recorded["samples"][0]["devices"][0]["errors"].values()) == {"GPU_IS_LOST"}
    assert recorded["devices"][1] == played["devices"][1]


def test_mig_instances_are_recorded_and_select_their_gpu_in_a_replay(drivers, tmp_path):
    played = busy_trace()
    mig = "MIG-11112222-3333-4444-5555-666677778888"
    played["devices"][1]["mig_uuids"] = [mig]
    result, recorded = record(played, tmp_path, drivers["current"], ["true"])
    assert result.returncode == 0, result.stderr
    assert recorded["devices"][1]["mig_uuids"] == [mig] and "mig_uuids" not in recorded[
        "devices"][0]
    _, events, _ = run("replay", recorded, tmp_path, None, env={"CUDA_VISIBLE_DEVICES": mig})
    assert [(d["id"], d["mig_uuid"]) for d in events[0]["devices"]] == [(1, mig)]


def test_recording_keeps_the_commands_exit_status_and_other_processes_apart(drivers, tmp_path):
    played = busy_trace()
    played["samples"][0]["devices"][0]["compute_procs"] = [[0, 1024], [1, 2048]]
    result, recorded = record(played, tmp_path, drivers["current"],
                              ["sh", "-c", "sleep 0.3; exit 3"])
    assert result.returncode == 3
    assert recorded["samples"][0]["devices"][0]["compute_procs"] == [[0, 1024], [4194305, 2048]]


def test_recording_ends_as_the_command_did_and_passes_on_descriptors(drivers, tmp_path):
    """Options may follow TRACE; a descriptor the recorder was given is the command's too; a
    command killed by a signal kills the recorder with it, after the trace is written."""
    with open(tmp_path / "fd-out", "w") as handle:
        fd = handle.fileno()
        result = subprocess.run(
            [*RECORDER, str(tmp_path / "t.json"), "--interval", "0.5", "--", sys.executable, "-c",
             f"import os, signal; os.write({fd}, b'hello\\n'); "
             "signal.signal(2, signal.SIG_DFL); os.kill(os.getpid(), 2)"],
            env=playing(busy_trace(), tmp_path, drivers["current"]), capture_output=True,
            timeout=60, pass_fds=(fd,))
    assert result.returncode == -signal.SIGINT, result.stderr
    assert (tmp_path / "fd-out").read_text() == "hello\n"
    assert json.loads((tmp_path / "t.json").read_text())["samples"]


def test_sigterm_to_the_recorder_alone_reaches_the_command(drivers, tmp_path):
    """A batch system's soft kill goes to the recorder: the command gets it, and the recorder
    writes the trace and ends with the command's status."""
    recorder = subprocess.Popen(
        [*RECORDER, str(tmp_path / "t.json"), "--",
         "sh", "-c", "trap 'exit 5' TERM; echo ready; while :; do sleep 0.05; done"],
        env=playing(busy_trace(), tmp_path, drivers["current"]), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    assert recorder.stdout.readline() == b"ready\n"
    recorder.send_signal(signal.SIGTERM)
    assert recorder.wait(30) == 5, recorder.stderr.read()
    assert json.loads((tmp_path / "t.json").read_text())["samples"]


@pytest.mark.parametrize("target", ["", "a-directory", "missing/t.json", "/dev/stdout"])
def test_a_trace_that_cannot_be_written_is_refused_before_the_command_runs(tmp_path, target):
    (tmp_path / "a-directory").mkdir()
    result = subprocess.run([*RECORDER, target, "--",
                             "touch", str(tmp_path / "ran")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("record_trace: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-directory"]


def test_a_trace_named_by_a_link_is_written_where_the_link_points(drivers, tmp_path):
    (tmp_path / "old.json").write_text("{}")
    (tmp_path / "link.json").symlink_to("old.json")
    result = subprocess.run([*RECORDER, str(tmp_path / "link.json"), "--", "true"],
                            env=playing(busy_trace(), tmp_path, drivers["current"]),
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "link.json").is_symlink()
    assert json.loads((tmp_path / "old.json").read_text())["samples"]


def test_recording_where_nvml_cannot_count_the_gpus_says_so_and_runs_nothing(drivers,
                                                                             tmp_path):
    environ = playing(busy_trace(), tmp_path, drivers["current"])
    convert(busy_trace(), Path(environ["FAKE_NVML_TRACE"]), count_error="UNKNOWN")
    ran = tmp_path / "ran"
    result = subprocess.run([*RECORDER, str(tmp_path / "t.json"), "--", "touch", str(ran)],
                            env=environ, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and not ran.exists()
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "NVML cannot count the GPUs" in lines[0], result.stderr
    assert not (tmp_path / "t.json").exists()


def test_recording_without_a_driver_says_so_and_writes_nothing(tmp_path):
    environ = {**os.environ, "LD_LIBRARY_PATH": str(tmp_path)}
    result = subprocess.run([*RECORDER, str(tmp_path / "t.json"), "--", "true"],
                            env=environ, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "NVML did not start" in result.stderr and "NVIDIA driver" in result.stderr
    assert list(tmp_path.iterdir()) == []
