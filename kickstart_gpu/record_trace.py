"""Record a GPU trace: what this host's NVML answers while a command runs, in the format
:mod:`kickstart_gpu.replay` plays back (``--backend replay:TRACE``).

    python -m kickstart_gpu.record_trace [--interval SECONDS] [--description TEXT] TRACE \\
        -- COMMAND [ARGS...]

Every GPU NVML sees is read once for its inventory, then every ``--interval`` seconds (default
1) from the command's start to its exit, with the last reading after it exits. The trace is
written when the command ends (atomically: a failed recording leaves no half trace), and the
recorder exits with the command's status.

What a replay needs from the record, and how it is kept:

- PIDs of the command's own process tree become 0, which a replay gives the replayed job;
  other processes on the GPUs become 4194305, 4194306, ... (above Linux's largest PID), so a
  replay can never take them for its job's.
- A function that is NOT_SUPPORTED at the first reading is listed in the device's
  ``unsupported``; any other error is named in the ``errors`` of the sample that first met it,
  and a replay fails that function from that sample on, also where the driver recovered.
- ``nvmlDeviceGetProcessUtilization`` answering NOT_FOUND (no new sample since the last call)
  is an empty ``proc_util``, as the sidecar reads it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from .monitor import JobProcesses
from .nvml import (
    CLOCK_REASONS,
    CLOCKS,
    COMPUTE_PROCESSES,
    GRAPHICS_PROCESSES,
    PCIE_RX_BYTES,
    PCIE_TX_BYTES,
    TEMPERATURE_GPU,
    Nvml,
    Unavailable,
)
from .trace_file import FORMAT

FIRST_FOREIGN_PID = 4194305  # one above PID_MAX_LIMIT, the largest PID Linux can give


class Recorder:
    """The trace of one run: each GPU's inventory, then a sample per :meth:`sample` call.

    :param job_pid: the command's PID; its process tree is the trace's PID 0
    """

    def __init__(self, nvml: Nvml, job_pid: int) -> None:
        self.nvml = nvml
        self._job = JobProcesses(job_pid)
        self._foreign: dict[int, int] = {}
        self._started = time.monotonic()
        count = nvml.query("nvmlDeviceGetCount")
        self.handles = [nvml.query("nvmlDeviceGetHandleByIndex", index)
                        for index in range(count or 0)]
        self._errors_seen: list[set[str]] = [set() for _ in self.handles]
        self._since_us = [0 for _ in self.handles]
        self.devices: list[dict[str, Any]] = []
        self.first_errors: list[dict[str, str]] = []
        for handle in self.handles:
            device, errors = self._inventory(handle)
            self.devices.append(device)
            self.first_errors.append(errors)
        self.samples: list[dict[str, Any]] = []

    # -- reading NVML ---------------------------------------------------------------------

    def _inventory(self, handle: Any) -> tuple[dict[str, Any], dict[str, str]]:
        query, failed = self.nvml.query, {}

        def read(function: str, *args: Any) -> Any:
            value = query(function, handle, *args)
            if isinstance(value, Unavailable):
                failed[function] = value.reason
                return None
            return value

        pci = read("nvmlDeviceGetPciInfo")
        memory = read("nvmlDeviceGetMemoryInfo")
        bar1 = read("nvmlDeviceGetBAR1MemoryInfo")
        capability = read("nvmlDeviceGetCudaComputeCapability")
        device = {
            "name": read("nvmlDeviceGetName"), "uuid": read("nvmlDeviceGetUUID"),
            "pci_bus_id": pci.busId.decode() if isinstance(pci.busId, bytes) else pci.busId
            if pci else None,
            "compute_mode": read("nvmlDeviceGetComputeMode"),
            "cuda_capability": list(capability) if capability else None,
            "power_limit": read("nvmlDeviceGetEnforcedPowerLimit"),
            "memory_total": memory.total if memory else None,
            "bar1_total": bar1.bar1Total if bar1 else None,
            "max_clocks": [read("nvmlDeviceGetMaxClockInfo", clock)
                           for clock in CLOCKS.values()],
        }
        unsupported = sorted(f for f, reason in failed.items() if reason == "NOT_SUPPORTED")
        if unsupported:
            device["unsupported"] = unsupported
        return device, {f: r for f, r in failed.items() if r != "NOT_SUPPORTED"}

    def _pid(self, pid: int) -> int:
        if pid in self._job:
            return 0
        return self._foreign.setdefault(pid, FIRST_FOREIGN_PID + len(self._foreign))

    def sample(self) -> None:
        elapsed = round(time.monotonic() - self._started, 3)
        entries = []
        for index, handle in enumerate(self.handles):
            entries.append(self._reading(index, handle, first=not self.samples))
        self.samples.append({"t": elapsed, "devices": entries})

    def _reading(self, index: int, handle: Any, first: bool) -> dict[str, Any]:
        nvml, device = self.nvml, self.devices[index]
        errors = dict(self.first_errors[index]) if first else {}

        def read(function: str | tuple[str, ...], *args: Any) -> Any:
            if isinstance(function, tuple):  # renamed over driver releases: the replay's name
                value, name = nvml.query_first(function, handle, *args), function[0]
            else:
                value, name = nvml.query(function, handle, *args), function
            if not isinstance(value, Unavailable):
                return value
            if value.reason == "NOT_FOUND" and name == "nvmlDeviceGetProcessUtilization":
                return []
            unsupported = device.get("unsupported", [])
            if first and value.reason == "NOT_SUPPORTED":
                if name not in unsupported:
                    device["unsupported"] = [*unsupported, name]
            elif name not in self._errors_seen[index] and name not in unsupported:
                self._errors_seen[index].add(name)
                errors[name] = value.reason
            return None

        memory = read("nvmlDeviceGetMemoryInfo")
        bar1 = read("nvmlDeviceGetBAR1MemoryInfo")
        rates = read("nvmlDeviceGetUtilizationRates")
        utilization = read("nvmlDeviceGetProcessUtilization", self._since_us[index])
        if utilization:
            self._since_us[index] = max(s.timeStamp for s in utilization)
        reading = {
            "temp": read("nvmlDeviceGetTemperature", TEMPERATURE_GPU),
            "power": read("nvmlDeviceGetPowerUsage"),
            "energy": read("nvmlDeviceGetTotalEnergyConsumption"),
            "memory_used": memory.used if memory else None,
            "bar1_used": bar1.bar1Used if bar1 else None,
            "gpu_util": rates.gpu if rates else None,
            "mem_util": rates.memory if rates else None,
            "clocks": [read("nvmlDeviceGetClockInfo", clock) for clock in CLOCKS.values()],
            "pcie_rx": read("nvmlDeviceGetPcieThroughput", PCIE_RX_BYTES),
            "pcie_tx": read("nvmlDeviceGetPcieThroughput", PCIE_TX_BYTES),
            "throttle": read(CLOCK_REASONS),
            "compute_procs": self._processes(read(COMPUTE_PROCESSES)),
            "graphics_procs": self._processes(read(GRAPHICS_PROCESSES)),
            "proc_util": [[self._pid(s.pid), s.smUtil, s.memUtil, s.encUtil, s.decUtil]
                          for s in utilization or ()],
        }
        if errors:
            reading["errors"] = errors
        return reading

    def _processes(self, processes: Any) -> list[list[Any]]:
        return [[self._pid(p.pid), getattr(p, "usedGpuMemory", None)]
                for p in processes or ()]

    # -- the trace ------------------------------------------------------------------------

    def trace(self, description: str) -> dict[str, Any]:
        trace = {"format": FORMAT, "version": 1, "description": description,
                 "driver_version": self.nvml.query("nvmlSystemGetDriverVersion") or None}
        cuda = self.nvml.query("nvmlSystemGetCudaDriverVersion_v2")
        if not isinstance(cuda, Unavailable):
            trace["cuda_driver_version"] = cuda
        return {**trace, "devices": self.devices, "samples": self.samples}


def write_atomically(path: str, text: str) -> None:
    partial = f"{path}.part{os.getpid()}"
    try:
        with open(partial, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise


def exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kickstart_gpu.record_trace",
        usage="%(prog)s [--interval SECONDS] [--description TEXT] TRACE -- COMMAND [ARGS...]",
        description="Runs COMMAND and records what NVML answers about this host's GPUs "
        "meanwhile, as a trace that 'pegasus-kickstart-gpu --backend replay:TRACE' plays "
        "back. Exits with COMMAND's status.")
    parser.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                        help="seconds between samples (default: 1)")
    parser.add_argument("--description", default="", help="what the trace shows "
                        "(default: the GPUs' names and the command)")
    parser.add_argument("trace", metavar="TRACE", help="the trace file to write")
    parser.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no COMMAND: give it after --, e.g. -- python train.py")
    if not 0.05 <= args.interval <= 3600:
        parser.error(f"--interval {args.interval}: give 0.05 to 3600 seconds")
    directory = os.path.dirname(os.path.abspath(args.trace))
    if not os.access(directory, os.W_OK):
        parser.error(f"cannot write {args.trace}: {directory} is missing or not writable")
    import pynvml

    nvml = Nvml(pynvml)
    if not nvml.init():
        print(f"record_trace: NVML did not start ({nvml.init_error}): record on a host "
              "with an NVIDIA driver and GPU", file=sys.stderr)
        return 2
    try:
        job = subprocess.Popen(command)
    except OSError as error:
        print(f"record_trace: cannot run {command[0]}: {error.strerror}", file=sys.stderr)
        return 127 if isinstance(error, FileNotFoundError) else 126
    # a terminal's ^C reaches the command too: the recorder records until the command ends
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    recorder = Recorder(nvml, job.pid)
    beat, started = 0, time.monotonic()
    while True:
        recorder.sample()
        beat += 1
        try:
            job.wait(max(0.0, started + beat * args.interval - time.monotonic()))
            break
        except subprocess.TimeoutExpired:
            continue
    recorder.sample()  # after the command's exit
    names = sorted({str(d["name"]) for d in recorder.devices}) or ["no GPU"]
    description = args.description or (
        f"Recorded: {len(recorder.devices)} x {', '.join(names)}, running "
        f"{' '.join(command)[:200]}")
    write_atomically(args.trace, json.dumps(recorder.trace(description),
                                            separators=(",", ":")) + "\n")
    print(f"record_trace: {len(recorder.samples)} samples of {len(recorder.devices)} GPUs "
          f"in {args.trace}", file=sys.stderr)
    nvml.shutdown()
    return exit_status(job.returncode)


if __name__ == "__main__":
    sys.exit(main())
