"""Record a GPU trace: what this host's NVML answers while a command runs, in the format
:mod:`kickstart_gpu.replay` plays back (``--backend replay:TRACE``).

    python -m kickstart_gpu.record_trace [--interval SECONDS] [--description TEXT] TRACE \\
        -- COMMAND [ARGS...]

Every GPU NVML sees is read once for its inventory, then every ``--interval`` seconds (default
1) from the command's start to its exit, with the last reading after it exits. The trace is
written when the command ends (atomically, through a symbolic link to where it points: a failed
recording leaves no half trace), and the recorder ends as the command did: its exit status, or
the signal that killed it. SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to the recorder
are passed on to the command, which the recorder then waits for; a terminal's Ctrl-C reaches
the command directly.

What a replay needs from the record, and how it is kept:

- PIDs of the command's own process tree become 0, which a replay gives the replayed job;
  other processes on the GPUs become 4194305, 4194306, ... (above Linux's largest PID), so a
  replay can never take them for its job's.
- A function that is NOT_SUPPORTED at the first reading is listed in the device's
  ``unsupported`` (where it takes a clock or counter and only some fail, those readings are
  null); any other error is named in the ``errors`` of the sample that first met it, and a
  replay fails that function from that sample on, also where the driver recovered.
- MIG instances are kept as ``mig_uuids``, so ``CUDA_VISIBLE_DEVICES=MIG-...`` selects their GPU
  in a replay.
- ``nvmlDeviceGetProcessUtilization`` answering NOT_FOUND (no new sample since the last call)
  is an empty ``proc_util``, as the sidecar reads it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Callable

from .launcher import end_like
from .monitor import JobProcesses, next_beat
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
    _decode,
)
from .trace_file import FORMAT

FIRST_FOREIGN_PID = 4194305  # one above PID_MAX_LIMIT, the largest PID Linux can give


class Recorder:
    """The trace of one run: each GPU's inventory, then a sample per :meth:`sample` call.

    :param job_pid: the command's PID; its process tree is the trace's PID 0
    :param count: the GPUs NVML counts
    """

    def __init__(self, nvml: Nvml, job_pid: int, count: int) -> None:
        self.nvml = nvml
        self._job = JobProcesses(job_pid)
        self._foreign: dict[int, int] = {}
        self._started = time.monotonic()
        self.handles = [nvml.query("nvmlDeviceGetHandleByIndex", index)
                        for index in range(count)]
        self._errors_seen: list[set[str]] = [set() for _ in self.handles]
        self._since_us = [0 for _ in self.handles]
        self.devices: list[dict[str, Any]] = []
        self.first_errors: list[dict[str, str]] = []
        for handle in self.handles:
            device, errors = self._inventory(handle)
            self.devices.append(device)
            self.first_errors.append(errors)
        self.taken = 0

    # -- reading NVML ---------------------------------------------------------------------

    def _inventory(self, handle: Any) -> tuple[dict[str, Any], dict[str, str]]:
        if isinstance(handle, Unavailable):  # every function of this GPU fails as it did
            return {"name": None, "uuid": None, "pci_bus_id": None, "cuda_capability": None,
                    "max_clocks": [None] * 4}, {"*": handle.reason}
        outcomes: dict[str, list[str | None]] = {}
        read = self._reader(handle, outcomes)
        pci = read("nvmlDeviceGetPciInfo")
        memory = read("nvmlDeviceGetMemoryInfo")
        bar1 = read("nvmlDeviceGetBAR1MemoryInfo")
        capability = read("nvmlDeviceGetCudaComputeCapability")
        device = {
            "name": read("nvmlDeviceGetName"), "uuid": read("nvmlDeviceGetUUID"),
            "pci_bus_id": _decode(pci.busId) if pci else None,
            "compute_mode": read("nvmlDeviceGetComputeMode"),
            "cuda_capability": list(capability) if capability else None,
            "power_limit": read("nvmlDeviceGetEnforcedPowerLimit"),
            "memory_total": memory.total if memory else None,
            "bar1_total": bar1.bar1Total if bar1 else None,
            "max_clocks": [read("nvmlDeviceGetMaxClockInfo", clock)
                           for clock in CLOCKS.values()],
            **self._mig(handle),
        }
        unsupported, errors = _sorted_out(outcomes)
        if unsupported:
            device["unsupported"] = unsupported
        return device, errors

    def _mig(self, handle: Any) -> dict[str, Any]:
        query = self.nvml.query
        mode = query("nvmlDeviceGetMigMode", handle)
        if isinstance(mode, Unavailable) or not mode or mode[0] != 1:
            return {}
        uuids = []
        for index in range(query("nvmlDeviceGetMaxMigDeviceCount", handle) or 0):
            instance = query("nvmlDeviceGetMigDeviceHandleByIndex", handle, index)
            uuid = None if isinstance(instance, Unavailable) else query(
                "nvmlDeviceGetUUID", instance)
            if uuid:
                uuids.append(uuid)
        return {"mig_uuids": uuids} if uuids else {}

    def _reader(self, handle: Any,
                outcomes: dict[str, list[str | None]]) -> Callable[..., Any]:
        """A function that queries NVML and notes each call's outcome (None, or NVML's reason)
        under the function's name (the replay's: the first of those renamed over driver
        releases)."""
        def read(function: str | tuple[str, ...], *args: Any) -> Any:
            if isinstance(function, tuple):
                value, name = self.nvml.query_first(function, handle, *args), function[0]
            else:
                value, name = self.nvml.query(function, handle, *args), function
            failed = isinstance(value, Unavailable)
            outcomes.setdefault(name, []).append(value.reason if failed else None)
            return None if failed else value
        return read

    def _pid(self, pid: int) -> int:
        if pid in self._job:
            return 0
        return self._foreign.setdefault(pid, FIRST_FOREIGN_PID + len(self._foreign))

    def sample(self) -> dict[str, Any]:
        elapsed = round(time.monotonic() - self._started, 3)
        entries = [self._reading(index, handle) for index, handle in enumerate(self.handles)]
        self.taken += 1
        return {"t": elapsed, "devices": entries}

    def _reading(self, index: int, handle: Any) -> dict[str, Any]:
        first, device = not self.taken, self.devices[index]
        errors = dict(self.first_errors[index]) if first else {}
        if isinstance(handle, Unavailable):
            reading: dict[str, Any] = {"clocks": [None] * 4}
            return {**reading, "errors": errors} if errors else reading
        outcomes: dict[str, list[str | None]] = {}
        read = self._reader(handle, outcomes)
        memory = read("nvmlDeviceGetMemoryInfo")
        bar1 = read("nvmlDeviceGetBAR1MemoryInfo")
        rates = read("nvmlDeviceGetUtilizationRates")
        utilization = read("nvmlDeviceGetProcessUtilization", self._since_us[index])
        if utilization:
            self._since_us[index] = max(s.timeStamp for s in utilization)
        if outcomes["nvmlDeviceGetProcessUtilization"] == ["NOT_FOUND"]:
            del outcomes["nvmlDeviceGetProcessUtilization"]  # no sample newer than the last
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
        unsupported, failures = _sorted_out(outcomes)
        if first and unsupported:
            device["unsupported"] = sorted({*device.get("unsupported", ()), *unsupported})
        elif unsupported:  # NOT_SUPPORTED after the first reading: an error like any other
            failures.update({name: "NOT_SUPPORTED" for name in unsupported})
        for name, reason in failures.items():
            if name not in self._errors_seen[index] and name not in device.get(
                    "unsupported", ()):
                self._errors_seen[index].add(name)
                errors[name] = reason
        if errors:
            reading["errors"] = errors
        return reading

    def _processes(self, processes: Any) -> list[list[Any]]:
        return [[self._pid(p.pid), getattr(p, "usedGpuMemory", None)]
                for p in processes or ()]

    # -- the trace ------------------------------------------------------------------------

    def header(self, description: str) -> dict[str, Any]:
        """The trace without its samples (complete once the first sample is taken: it settles
        what each GPU does not support)."""
        trace = {"format": FORMAT, "version": 1, "description": description,
                 "driver_version": self.nvml.query("nvmlSystemGetDriverVersion") or None}
        cuda = self.nvml.query("nvmlSystemGetCudaDriverVersion_v2")
        if not isinstance(cuda, Unavailable):
            trace["cuda_driver_version"] = cuda
        return {**trace, "devices": self.devices}


def _sorted_out(outcomes: dict[str, list[str | None]]) -> tuple[list[str], dict[str, str]]:
    """(functions NOT_SUPPORTED at every call, {function: reason} for those that failed
    otherwise). A function that fails for some clocks or counters only keeps null readings
    for those."""
    unsupported = sorted(name for name, reasons in outcomes.items()
                         if set(reasons) == {"NOT_SUPPORTED"})
    errors = {}
    for name, reasons in outcomes.items():
        other = [reason for reason in reasons if reason not in (None, "NOT_SUPPORTED")]
        if other:
            errors[name] = other[0]
    return unsupported, errors


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class Output:
    """TRACE, written atomically where it points: the partial file is made before the command
    runs, so a TRACE that cannot be written is said before anything else happens, and takes
    each sample as it comes, so a day's recording needs no memory for it."""

    def __init__(self, trace: str) -> None:
        if not trace:
            raise ValueError("TRACE is empty: name the file to write")
        if os.path.abspath(trace).startswith(("/dev/", "/proc/")):  # /dev/stdout: a rename
            # would replace the file behind the descriptor, not write to it
            raise ValueError(f"{trace} is a device or a descriptor: name a regular file")
        self.path = os.path.realpath(trace)  # through a link, to the file it names
        if os.path.exists(self.path) and not os.path.isfile(self.path):
            raise ValueError(f"{trace} is not a regular file: name a new file or a regular one")
        self.partial = f"{self.path}.part{os.getpid()}"
        try:
            self._handle = open(self.partial, "x", encoding="utf-8")  # noqa: SIM115
        except OSError as error:
            raise ValueError(f"cannot write {trace}: {error.strerror}") from None

    def begin(self, header: dict[str, Any]) -> None:
        self._handle.write(_json(header)[:-1] + ',"samples":[')
        self._separator = ""

    def add(self, sample: dict[str, Any]) -> None:
        self._handle.write(self._separator + _json(sample))
        self._separator = ","

    def finish(self) -> None:
        try:
            with self._handle:
                self._handle.write("]}\n")
            os.replace(self.partial, self.path)
        finally:
            self.discard()

    def discard(self) -> None:
        self._handle.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.partial)


FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


class Forward:
    """Passes the FORWARDED signals the recorder gets on to the command; one that comes before
    the command exists is passed on once it does (a caught signal is the default again in the
    command, after its exec)."""

    def __init__(self) -> None:
        self._job: subprocess.Popen | None = None
        self._pending: list[int] = []
        for number in FORWARDED:
            signal.signal(number, self._received)

    def _received(self, number: int, frame: Any) -> None:
        if self._job is None:
            self._pending.append(number)
        else:
            self._job.send_signal(number)

    def to(self, job: subprocess.Popen) -> None:
        self._job = job
        for number in self._pending:
            job.send_signal(number)


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m kickstart_gpu.record_trace",
        usage="%(prog)s [--interval SECONDS] [--description TEXT] TRACE -- COMMAND [ARGS...]",
        description="Runs COMMAND and records what NVML answers about this host's GPUs "
        "meanwhile, as a trace that 'pegasus-kickstart-gpu --backend replay:TRACE' plays "
        "back. Ends as COMMAND ends (its exit status or signal).")
    parser.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                        help="seconds between samples, 0.05 to 3600 (default: 1)")
    parser.add_argument("--description", default="", help="what the trace shows "
                        "(default: the GPUs' names and the command)")
    parser.add_argument("trace", metavar="TRACE", help="the trace file to write")
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    if not command:
        parser.error("no COMMAND: give it after --, e.g. -- python train.py")
    if not 0.05 <= args.interval <= 3600:
        parser.error(f"--interval {args.interval}: give 0.05 to 3600 seconds")
    return args, command


def main(argv: list[str] | None = None) -> int:
    args, command = _parse(sys.argv[1:] if argv is None else argv)
    try:
        output = Output(args.trace)
    except ValueError as error:
        print(f"record_trace: {error}", file=sys.stderr)
        return 2
    from .nvml import import_pynvml

    nvml = Nvml(import_pynvml())
    count = nvml.query("nvmlDeviceGetCount")
    if isinstance(count, Unavailable):
        output.discard()
        problem = (f"NVML did not start ({nvml.init_error})" if nvml.init_error
                   else f"NVML cannot count the GPUs ({count.reason})")
        print(f"record_trace: {problem}: record on a host with a working NVIDIA driver and GPU",
              file=sys.stderr)
        return 2
    forward = Forward()  # before the command starts, so that no signal finds it unset
    try:
        job = subprocess.Popen(command, close_fds=False)  # the command's descriptors are its own
    except OSError as error:
        output.discard()
        print(f"record_trace: cannot run {command[0]}: {error.strerror}", file=sys.stderr)
        return 127 if isinstance(error, FileNotFoundError) else 126
    forward.to(job)
    # a terminal's Ctrl-C reaches the command too: the recorder records until the command ends
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        recorder = record(nvml, job, count, args.interval, output,
                          lambda devices: args.description or _described(devices, command))
        output.finish()
    except Exception as error:  # the command runs on, and ends as it would have
        reason = error.strerror if isinstance(error, OSError) else (
            f"{error.__class__.__name__}: {error}")
        output.discard()
        returncode = job.wait()
        print(f"record_trace: {args.trace} not written: {reason} (the command ended with "
              f"{returncode})", file=sys.stderr)
        return 1
    print(f"record_trace: {recorder.taken} samples of {len(recorder.devices)} GPUs in "
          f"{args.trace}", file=sys.stderr)
    end_like(wait_status(job.returncode))  # its status, or death by the same signal


def _described(devices: list[dict[str, Any]], command: list[str]) -> str:
    names = sorted({str(d["name"]) for d in devices}) or ["no GPU"]
    return f"Recorded: {len(devices)} x {', '.join(names)}, running {' '.join(command)[:200]}"


def record(nvml: Nvml, job: subprocess.Popen, count: int, interval: float, output: Output,
           describe: Callable[[list[dict[str, Any]]], str]) -> Recorder:
    """Samples from the command's start, every ``interval`` seconds (start to start; as the
    sidecar, beats a slow sample let go by are skipped), and once after its exit, into
    ``output``; ``describe`` says what the GPUs recorded show."""
    recorder = Recorder(nvml, job.pid, count)
    started = time.monotonic()
    first = recorder.sample()
    output.begin(recorder.header(describe(recorder.devices)))
    output.add(first)
    beat = next_beat(0, time.monotonic() - started, interval)  # the first is beat 0
    while True:
        try:
            job.wait(max(0.0, started + beat * interval - time.monotonic()))
            break
        except subprocess.TimeoutExpired:
            output.add(recorder.sample())
            beat = next_beat(beat, time.monotonic() - started, interval)
    output.add(recorder.sample())  # after the command's exit
    nvml.shutdown()
    return recorder


def wait_status(returncode: int) -> int:
    """Popen's returncode as the wait status :func:`launcher.end_like` takes."""
    return -returncode if returncode < 0 else returncode << 8


if __name__ == "__main__":
    sys.exit(main())
