"""Play a recorded GPU trace back through the same functions pynvml offers.

The sidecar's NVML code cannot tell a trace from a driver: the trace answers ``nvmlInit``,
``nvmlDeviceGetTemperature`` and the rest, and raises errors named as pynvml names its
``NVMLError`` subclasses (``NVMLError_GpuIsLost``), without pynvml's 20 ms import.

Trace format (JSON, ``"format": "pegasus-kickstart-gpu-trace", "version": 1``)::

    {"format": "pegasus-kickstart-gpu-trace", "version": 1, "description": "...",
     "driver_version": "550.54.15", "cuda_driver_version": 12040,
     "devices": [{"name", "uuid", "pci_bus_id", "compute_mode": 0, "cuda_capability": [8, 0],
                  "power_limit": mW, "memory_total": bytes, "bar1_total": bytes,
                  "max_clocks": [graphics, sm, mem, video] MHz,
                  "unsupported": ["nvmlDeviceGetPcieThroughput", ...],
                  "mig_uuids": ["MIG-...", ...]}],
     "samples": [{"t": seconds since start,
                  "devices": [{"temp": C, "power": mW, "energy": mJ since driver load,
                               "memory_used": bytes, "bar1_used": bytes, "gpu_util": %,
                               "mem_util": %, "clocks": [graphics, sm, mem, video] MHz,
                               "pcie_rx": KB/s, "pcie_tx": KB/s, "throttle": bitmask,
                               "compute_procs": [[pid, bytes or null]], "graphics_procs": [...],
                               "proc_util": [[pid, sm %, mem %, enc %, dec %]],
                               "errors": {"nvmlDeviceGetTemperature": "GPU_IS_LOST"}}]}]}

At a time ``t`` after ``nvmlInit`` the latest sample with ``"t" <= t`` answers. A device
error named in a sample holds from that sample on ("GPU_IS_LOST" fails every later call); a
function listed in ``unsupported`` is NOT_SUPPORTED throughout, and so is one reading given as
null in ``clocks``, ``max_clocks``, ``pcie_rx`` or ``pcie_tx`` (one clock domain a GPU lacks).
A trace PID of 0 stands for the job's own process, so a replay shows the running job on its
GPUs.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_right

TYPE_CHECKING = False  # imported on every replayed run: pathlib and typing cost the job's wait
if TYPE_CHECKING:
    from typing import Any, Callable


class Struct:
    """The fields of an NVML structure, as pynvml's ctypes structures have them (a
    types.SimpleNamespace, without the types module before the job starts)."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


class ReplayNVMLError(Exception):
    """An NVML error a trace names; subclasses are named as pynvml's (see :func:`_error_class`),
    so the sidecar reads the same reason from a replay as from the driver."""


_ERROR_CLASSES: dict[str, type[ReplayNVMLError]] = {}


def _error_class(name: str) -> type[ReplayNVMLError]:
    """``GPU_IS_LOST`` -> ``NVMLError_GpuIsLost``, pynvml's rule for its class names."""
    if name not in _ERROR_CLASSES:
        words = "".join(word.capitalize() for word in name.split("_"))
        _ERROR_CLASSES[name] = type(f"NVMLError_{words}", (ReplayNVMLError,), {})
    return _ERROR_CLASSES[name]


class TraceLibrary:
    """pynvml's functions, answered from a trace.

    :param job_pid: replaces trace PID 0, so the replay shows the running job's process
    """

    def __init__(self, trace: dict[str, Any], job_pid: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._trace = trace
        self._job_pid = job_pid or os.getpid()
        self._clock = clock
        self._started: float | None = None
        self._times: list[float] | None = None
        self._failures: dict[tuple[int, str], tuple[int, str]] | None = None

    # -- the trace's clock and errors -----------------------------------------------------

    def _index(self) -> int:
        """The index of the sample that answers now: the latest with ``"t"`` <= now."""
        if self._started is None:
            raise self._error("UNINITIALIZED")
        if self._times is None:  # once, in the monitor thread: a day at 1 s is 86,400 samples
            self._times = [sample["t"] for sample in self._trace["samples"]]
        return max(0, bisect_right(self._times, self._clock() - self._started) - 1)

    def _now(self) -> dict[str, Any]:
        return self._trace["samples"][self._index()]

    def _failure(self, handle: int, function: str, index: int) -> str | None:
        """The error a sample up to ``index`` names for this device and function (or ``*``):
        errors hold from the sample naming them on."""
        if self._failures is None:
            self._failures = {}
            for number, sample in enumerate(self._trace["samples"]):
                for device, now in enumerate(sample["devices"]):
                    for name, error in now.get("errors", {}).items():
                        self._failures.setdefault((device, name), (number, error))
        found = [self._failures.get((handle, name)) for name in (function, "*")]
        onsets = [(failure[0], rank, failure[1]) for rank, failure in enumerate(found)
                  if failure and failure[0] <= index]  # the earliest; the function's first
        return min(onsets)[2] if onsets else None

    NVMLError = ReplayNVMLError  # as pynvml.NVMLError

    def _error(self, name: str) -> Exception:
        return _error_class(name)(name)

    def _device(self, handle: int, function: str) -> tuple[dict[str, Any], dict[str, Any]]:
        static = self._trace["devices"][handle]
        if function in static.get("unsupported", []):
            raise self._error("NOT_SUPPORTED")
        index = self._index()
        failure = self._failure(handle, function, index)
        if failure:
            raise self._error(failure)
        return static, self._trace["samples"][index]["devices"][handle]

    def _pid(self, pid: int) -> int:
        return self._job_pid if pid == 0 else pid

    # -- system ---------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self._started = self._clock()

    def nvmlShutdown(self) -> None:
        self._started = None

    def nvmlSystemGetDriverVersion(self) -> str:
        return str(self._trace["driver_version"])

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        if "cuda_driver_version" not in self._trace:
            raise self._error("LIBRARY_NOT_FOUND")
        return int(self._trace["cuda_driver_version"])

    def nvmlDeviceGetCount(self) -> int:
        self._now()
        return len(self._trace["devices"])

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if not 0 <= index < len(self._trace["devices"]):
            raise self._error("INVALID_ARGUMENT")
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> int:
        uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
        for index, device in enumerate(self._trace["devices"]):
            if device.get("uuid") == uuid:
                return index
            for mig in device.get("mig_uuids", []):
                if mig == uuid:
                    return index
        raise self._error("NOT_FOUND")

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: int) -> int:
        return handle

    # -- static device fields -------------------------------------------------------------

    def nvmlDeviceGetName(self, handle: int) -> str:
        return str(self._device(handle, "nvmlDeviceGetName")[0]["name"])

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return str(self._device(handle, "nvmlDeviceGetUUID")[0]["uuid"])

    def nvmlDeviceGetPciInfo(self, handle: int) -> Any:
        return Struct(busId=self._device(handle, "nvmlDeviceGetPciInfo")[0]
                      ["pci_bus_id"].encode())

    def nvmlDeviceGetComputeMode(self, handle: int) -> int:
        return int(self._device(handle, "nvmlDeviceGetComputeMode")[0].get("compute_mode", 0))

    def nvmlDeviceGetCudaComputeCapability(self, handle: int) -> tuple[int, int]:
        major, minor = self._device(handle, "nvmlDeviceGetCudaComputeCapability")[0][
            "cuda_capability"]
        return int(major), int(minor)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        return int(self._device(handle, "nvmlDeviceGetEnforcedPowerLimit")[0]["power_limit"])

    def _reading(self, value: Any) -> int:
        if value is None:  # this one reading of a function that gives others
            raise self._error("NOT_SUPPORTED")
        return int(value)

    def nvmlDeviceGetMaxClockInfo(self, handle: int, clock: int) -> int:
        return self._reading(self._device(handle, "nvmlDeviceGetMaxClockInfo")[0]
                             ["max_clocks"][clock])

    # -- dynamic device fields ------------------------------------------------------------

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        static, now = self._device(handle, "nvmlDeviceGetMemoryInfo")
        return Struct(total=static["memory_total"], used=now["memory_used"],
                      free=static["memory_total"] - now["memory_used"])

    def nvmlDeviceGetBAR1MemoryInfo(self, handle: int) -> Any:
        static, now = self._device(handle, "nvmlDeviceGetBAR1MemoryInfo")
        return Struct(bar1Total=static["bar1_total"], bar1Used=now["bar1_used"],
                      bar1Free=static["bar1_total"] - now["bar1_used"])

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        return int(self._device(handle, "nvmlDeviceGetTemperature")[1]["temp"])

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return int(self._device(handle, "nvmlDeviceGetPowerUsage")[1]["power"])

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        return int(self._device(handle, "nvmlDeviceGetTotalEnergyConsumption")[1]["energy"])

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        now = self._device(handle, "nvmlDeviceGetUtilizationRates")[1]
        return Struct(gpu=now["gpu_util"], memory=now["mem_util"])

    def nvmlDeviceGetClockInfo(self, handle: int, clock: int) -> int:
        return self._reading(self._device(handle, "nvmlDeviceGetClockInfo")[1]["clocks"][clock])

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: int) -> int:
        return int(self._device(handle, "nvmlDeviceGetCurrentClocksEventReasons")[1]
                   .get("throttle", 0))

    def nvmlDeviceGetPcieThroughput(self, handle: int, counter: int) -> int:
        now = self._device(handle, "nvmlDeviceGetPcieThroughput")[1]
        return self._reading(now["pcie_rx"] if counter == 1 else now["pcie_tx"])

    def _processes(self, handle: int, function: str, key: str) -> list[Any]:
        now = self._device(handle, function)[1]
        return [Struct(pid=self._pid(pid), usedGpuMemory=memory)
                for pid, memory in now.get(key, [])]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:
        return self._processes(handle, "nvmlDeviceGetComputeRunningProcesses", "compute_procs")

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: int) -> list[Any]:
        return self._processes(handle, "nvmlDeviceGetGraphicsRunningProcesses",
                               "graphics_procs")

    def nvmlDeviceGetProcessUtilization(self, handle: int, since_us: int) -> list[Any]:
        """As the driver answers (seen on an H200): one entry per process, its latest of the
        samples taken after ``since_us``; NOT_FOUND when none is."""
        self._device(handle, "nvmlDeviceGetProcessUtilization")
        latest: dict[int, Any] = {}
        for index in range(self._index(), -1, -1):
            sample = self._trace["samples"][index]
            stamp = int(((self._started or 0) + sample["t"]) * 1e6) + 1
            if stamp <= since_us:
                break
            for pid, sm, mem, enc, dec in sample["devices"][handle].get("proc_util", []):
                latest.setdefault(self._pid(pid), Struct(
                    pid=self._pid(pid), timeStamp=stamp, smUtil=sm, memUtil=mem, encUtil=enc,
                    decUtil=dec))
        if not latest:
            raise self._error("NOT_FOUND")  # what NVML says when no sample is new
        return list(latest.values())
