"""Guarded NVML access, in the manner of nvitop's ``libnvml``.

Every call goes through :meth:`Nvml.query`: NVML is initialised lazily, any NVML error (or a
function this NVML lacks, noted once in ``missing``) becomes an :class:`Unavailable` carrying
the reason, bytes are decoded, and no exception escapes. :class:`Device` hides NVML's quirks
from the sampler.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing, dataclasses and logging would slow the sidecar's start
if TYPE_CHECKING:
    from typing import Any

# NVML enum values (the C ABI; stable across driver versions)
TEMPERATURE_GPU = 0
CLOCKS = {"gpu": 0, "sm": 1, "mem": 2, "video": 3}  # NVML_CLOCK_GRAPHICS, SM, MEM, VIDEO
PCIE_TX_BYTES, PCIE_RX_BYTES = 0, 1
# clock event (throttle) reasons that cost performance: SW power cap, HW slowdown, SW and HW
# thermal slowdown, HW power brake
THROTTLE_MASK = 0x04 | 0x08 | 0x20 | 0x40 | 0x80
COMPUTE_MODES = {0: "Default", 1: "Exclusive_Thread", 2: "Prohibited", 3: "Exclusive_Process"}
# functions renamed or versioned over driver releases, newest first: pynvml calls the newest
# symbol, which older drivers' libraries lack (FUNCTION_NOT_FOUND)
CLOCK_REASONS = ("nvmlDeviceGetCurrentClocksEventReasons",  # driver 535+
                 "nvmlDeviceGetCurrentClocksThrottleReasons")
COMPUTE_PROCESSES = ("nvmlDeviceGetComputeRunningProcesses",  # _v3, driver 510+
                     "nvmlDeviceGetComputeRunningProcesses_v2")
GRAPHICS_PROCESSES = ("nvmlDeviceGetGraphicsRunningProcesses",
                      "nvmlDeviceGetGraphicsRunningProcesses_v2")


class Unavailable:
    """A value NVML could not give, and why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"Unavailable({self.reason!r})"


def _decode(value: Any) -> Any:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _reason(error: BaseException) -> str:
    """``NOT_SUPPORTED`` from pynvml's ``NVMLError_NotSupported``, else the message."""
    name = error.__class__.__name__
    if name == "NVMLLibraryMismatchError":  # pynvml's word for a symbol the driver lacks
        return "FUNCTION_NOT_FOUND"
    if name.startswith("NVMLError_"):
        return "".join("_" + c if c.isupper() and i else c
                       for i, c in enumerate(name[len("NVMLError_"):])).upper()
    return " ".join(str(error).split()) or name


def driver_library_loads() -> bool:
    """Whether the NVIDIA driver's NVML library loads, as pynvml loads it on Linux (with
    ctypes' own dlopen: the ctypes package costs 3 ms more to import, on every job)."""
    try:
        from _ctypes import dlopen
    except ImportError:  # an interpreter without ctypes: pynvml could not load it either
        return False
    try:
        dlopen("libnvidia-ml.so.1", os.RTLD_LAZY)
    except OSError:
        return False
    return True


def import_pynvml() -> Any:
    """``pynvml``, imported without ``ctypes.util``: pynvml imports its ``find_library`` and
    never calls it on Linux, and ctypes.util imports shutil, subprocess, tempfile and re, more
    than half of pynvml's import (26 of 45 ms here). A job that ends before the import does
    waits for it. The ``find_library`` pynvml gets imports the real one when called. No other
    thread may import ctypes.util meanwhile (it would get the placeholder): the sidecar's main
    thread only waits for the job."""
    import sys

    placeholder = type(sys)("ctypes.util")
    placeholder.find_library = _find_library  # type: ignore[attr-defined]
    placed = sys.modules.setdefault("ctypes.util", placeholder) is placeholder
    try:
        import pynvml
    finally:
        if placed and sys.modules.get("ctypes.util") is placeholder:
            del sys.modules["ctypes.util"]
    return pynvml


def _find_library(name: str) -> str | None:
    from ctypes.util import find_library

    return find_library(name)


class AbsentNvml:
    """NVML on a host without the driver's library (a CPU node that a site-wide launcher
    profile wraps too): fails to start as pynvml would, without importing pynvml."""

    def nvmlInit(self) -> None:
        raise OSError("LIBRARY_NOT_FOUND")


class Nvml:
    """One NVML library (real ``pynvml`` or a replayed trace), used from one thread."""

    def __init__(self, library: Any) -> None:
        self.library = library
        self._initialized: bool | None = None
        self.init_error: str | None = None
        self.missing: set[str] = set()  # functions this NVML lacks, reported once

    def init(self) -> bool:
        if self._initialized is None:
            try:
                self.library.nvmlInit()
                self._initialized = True
            except Exception as error:  # NVMLError, or a library that cannot load
                self._initialized = False
                self.init_error = _reason(error)
        return self._initialized

    def query(self, function: str, *args: Any) -> Any:
        """``library.<function>(*args)``, or :class:`Unavailable` with the reason."""
        if not self.init():
            return Unavailable(f"NVML not initialised: {self.init_error}")
        call = getattr(self.library, function, None)
        if call is None:
            self.missing.add(function)
            return Unavailable(f"{function} is not in this NVML")
        try:
            return _decode(call(*args))
        except Exception as error:  # every NVML failure becomes a reason, never a crash
            reason = _reason(error)
            if reason == "FUNCTION_NOT_FOUND":  # in pynvml, not in this driver's library
                self.missing.add(function)
            return Unavailable(reason)

    def query_first(self, functions: tuple[str, ...], *args: Any) -> Any:
        """The first of ``functions`` this NVML has, called. Those it lacks stay in
        ``missing`` only when none of them is there."""
        for function in functions:
            value = self.query(function, *args)
            if function not in self.missing:
                self.missing.difference_update(functions)
                break
        return value

    def shutdown(self) -> None:
        if self._initialized:
            self.query("nvmlShutdown")
            self._initialized = None


class Readings:
    """Fields of one event, with the reason for each one NVML could not give."""

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.errors: dict[str, str] = {}

    def set(self, name: str, value: Any, convert: Any = None) -> Any:
        if isinstance(value, Unavailable):
            self.fields[name] = None
            self.errors[name] = value.reason
            return None
        self.fields[name] = convert(value) if convert else value
        return self.fields[name]


class Device:
    """One GPU: its static inventory, read once, and its samples.

    :param index: NVML index on this host
    :param mig_uuid: the MIG instance the job was given on this GPU, if any
    """

    def __init__(self, nvml: Nvml, index: int, handle: Any, mig_uuid: str | None = None) -> None:
        self.nvml = nvml
        self.index = index
        self.handle = handle
        self.mig_uuid = mig_uuid
        query = nvml.query
        self.name = str(query("nvmlDeviceGetName", handle) or "unknown")
        uuid = query("nvmlDeviceGetUUID", handle)
        self.uuid = uuid or None
        pci = query("nvmlDeviceGetPciInfo", handle)
        self.pci_bus_id = _decode(getattr(pci, "busId", None)) if pci else None
        mode = query("nvmlDeviceGetComputeMode", handle)
        self.compute_mode = COMPUTE_MODES.get(mode, str(mode)) if not isinstance(
            mode, Unavailable) else None
        self._last_process_sample_us = 0

    def identity(self) -> dict[str, Any]:
        """The fields every event about this device starts with."""
        identity = {"id": self.index, "name": self.name, "pci_bus_id": self.pci_bus_id,
                    "compute_mode": self.compute_mode, "uuid": self.uuid}
        if self.mig_uuid:
            identity["mig_uuid"] = self.mig_uuid
        return identity

    def inventory(self) -> dict[str, Any]:
        query, handle, readings = self.nvml.query, self.handle, Readings()
        capability = query("nvmlDeviceGetCudaComputeCapability", handle)
        readings.set("is_cuda_capable", True if capability else capability)
        readings.set("cuda_capability", capability,
                     lambda c: float(f"{c[0]}.{c[1]}"))
        readings.set("power_limit", query("nvmlDeviceGetEnforcedPowerLimit", handle))
        readings.set("total_bar1_memory", query("nvmlDeviceGetBAR1MemoryInfo", handle),
                     lambda m: m.bar1Total)
        readings.set("total_memory", query("nvmlDeviceGetMemoryInfo", handle),
                     lambda m: m.total)
        for name, clock in CLOCKS.items():
            readings.set(f"max_{name}_clock", query("nvmlDeviceGetMaxClockInfo", handle, clock))
        return self._event(readings)

    def sample(self, pcie: bool, process_utilization: bool,
               graphics_processes: bool) -> dict[str, Any]:
        """One ``kickstart.inv.gpu.stats`` body (without event name, timestamp, duration)."""
        query, handle, readings = self.nvml.query, self.handle, Readings()
        readings.set("temp", query("nvmlDeviceGetTemperature", handle, TEMPERATURE_GPU))
        readings.set("power_usage", query("nvmlDeviceGetPowerUsage", handle))
        readings.set("energy_consumption", query("nvmlDeviceGetTotalEnergyConsumption", handle))
        if pcie:
            readings.set("pcie_rx", query("nvmlDeviceGetPcieThroughput", handle, PCIE_RX_BYTES))
            readings.set("pcie_tx", query("nvmlDeviceGetPcieThroughput", handle, PCIE_TX_BYTES))
        readings.set("bar1_mem_usage", query("nvmlDeviceGetBAR1MemoryInfo", handle),
                     lambda m: m.bar1Used)
        readings.set("mem_usage", query("nvmlDeviceGetMemoryInfo", handle), lambda m: m.used)
        rates = query("nvmlDeviceGetUtilizationRates", handle)
        readings.set("mem_utilization", rates, lambda r: r.memory)
        readings.set("gpu_utilization", rates, lambda r: r.gpu)
        for name, clock in CLOCKS.items():
            readings.set(f"{name}_clock", query("nvmlDeviceGetClockInfo", handle, clock))
        first = self.nvml.query_first
        readings.set("throttle_reasons", first(CLOCK_REASONS, handle))
        readings.set("compute_procs", first(COMPUTE_PROCESSES, handle), _processes)
        if graphics_processes:
            readings.set("graphics_procs", first(GRAPHICS_PROCESSES, handle), _processes)
        if process_utilization:
            readings.set("proc_samples", self._process_samples())
        return self._event(readings)

    def _process_samples(self) -> Any:
        samples = self.nvml.query("nvmlDeviceGetProcessUtilization", self.handle,
                                  self._last_process_sample_us)
        if isinstance(samples, Unavailable):
            # NOT_FOUND means no new samples since the last call: the GPU was idle
            return [] if samples.reason == "NOT_FOUND" else samples
        if samples:
            self._last_process_sample_us = max(s.timeStamp for s in samples)
        return [{"pid": s.pid, "sm_util": s.smUtil, "mem_util": s.memUtil,
                 "enc_util": s.encUtil, "dec_util": s.decUtil} for s in samples]

    def _event(self, readings: Readings) -> dict[str, Any]:
        event = {**self.identity(), **readings.fields}
        if readings.errors:
            event["errors"] = readings.errors
        return event


def _processes(processes: Any) -> list[dict[str, Any]]:
    return [{"pid": p.pid, "mem_usage": getattr(p, "usedGpuMemory", None)} for p in processes]
