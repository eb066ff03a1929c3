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
                  "unsupported": ["nvmlDeviceGetPcieThroughput", ...]}],
     "samples": [{"t": seconds since start,
                  "devices": [{"temp": C, "power": mW, "energy": mJ since driver load,
                               "memory_used": bytes, "bar1_used": bytes, "gpu_util": %,
                               "mem_util": %, "clocks": [graphics, sm, mem, video] MHz,
                               "pcie_rx": KB/s, "pcie_tx": KB/s, "throttle": bitmask,
                               "compute_procs": [[pid, bytes or null]], "graphics_procs": [...],
                               "proc_util": [[pid, sm %, mem %, enc %, dec %]],
                               "errors": {"nvmlDeviceGetTemperature": "GPU_IS_LOST"}}]}]}

At a time ``t`` after ``nvmlInit`` the latest sample with ``"t" <= t`` answers. A device
error named in a sample holds from that sample on ("GPU_IS_LOST" fails every later call).
A trace PID of 0 stands for the job's own process, so a replay shows the running job on its
GPUs.
"""

from __future__ import annotations

import os
import time

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

    # -- the trace's clock and errors -----------------------------------------------------

    def _now(self) -> dict[str, Any]:
        if self._started is None:
            raise self._error("UNINITIALIZED")
        elapsed = self._clock() - self._started
        current = self._trace["samples"][0]
        for sample in self._trace["samples"]:
            if sample["t"] > elapsed:
                break
            current = sample
        return current

    NVMLError = ReplayNVMLError  # as pynvml.NVMLError

    def _error(self, name: str) -> Exception:
        return _error_class(name)(name)

    def _device(self, handle: int, function: str) -> tuple[dict[str, Any], dict[str, Any]]:
        static = self._trace["devices"][handle]
        if function in static.get("unsupported", []):
            raise self._error("NOT_SUPPORTED")
        now = self._now()
        for sample in self._trace["samples"]:  # errors hold from the sample naming them on
            if sample["t"] > now["t"]:
                break
            errors = sample["devices"][handle].get("errors", {})
            failure = errors.get(function) or errors.get("*")
            if failure:
                raise self._error(failure)
        return static, now["devices"][handle]

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

    def nvmlDeviceGetMaxClockInfo(self, handle: int, clock: int) -> int:
        return int(self._device(handle, "nvmlDeviceGetMaxClockInfo")[0]["max_clocks"][clock])

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
        return int(self._device(handle, "nvmlDeviceGetClockInfo")[1]["clocks"][clock])

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: int) -> int:
        return int(self._device(handle, "nvmlDeviceGetCurrentClocksEventReasons")[1]
                   .get("throttle", 0))

    def nvmlDeviceGetPcieThroughput(self, handle: int, counter: int) -> int:
        now = self._device(handle, "nvmlDeviceGetPcieThroughput")[1]
        return int(now["pcie_rx"] if counter == 1 else now["pcie_tx"])

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
        now = self._device(handle, "nvmlDeviceGetProcessUtilization")[1]
        stamp = int(((self._started or 0) + self._now()["t"]) * 1e6) + 1
        if not now.get("proc_util") or stamp <= since_us:
            raise self._error("NOT_FOUND")  # what NVML says when no sample is new
        return [Struct(pid=self._pid(pid), timeStamp=stamp, smUtil=sm, memUtil=mem,
                       encUtil=enc, decUtil=dec)
                for pid, sm, mem, enc, dec in now["proc_util"]]
