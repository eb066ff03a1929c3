"""What the NVIDIA driver costs the sidecar, read on a real GPU.

    python -m bench.real_gpu [--calls 50]

Through the real pynvml and driver: ``import pynvml`` and ``nvmlInit`` in a fresh interpreter
(median of 5), then for every NVML function the sidecar calls, the median time of ``--calls``
calls on GPU 0 and what it answered (a value, or NVML's reason), then ``Device.sample`` with
and without PCIe. Prints a table and writes the same as JSON to ``$OUT/probe.json`` when OUT is
set. Needs a GPU: on a host without one it says so and exits 2.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.common import Arguments, positive, run
from kickstart_gpu.nvml import (
    CLOCK_REASONS,
    COMPUTE_PROCESSES,
    GRAPHICS_PROCESSES,
    Device,
    Nvml,
    Unavailable,
)

COLD = ("import time; t0 = time.perf_counter(); import pynvml; t1 = time.perf_counter(); "
        "pynvml.nvmlInit(); t2 = time.perf_counter(); print(t1 - t0, t2 - t1)")


def cold_start(runs: int = 5) -> dict[str, float]:
    imports, inits = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", COLD], capture_output=True, text=True,
                             check=True).stdout.split()
        imports.append(float(out[0]))
        inits.append(float(out[1]))
    return {"import_pynvml_ms": statistics.median(imports) * 1000,
            "nvmlInit_ms": statistics.median(inits) * 1000}


def shown(value: Any) -> Any:
    if isinstance(value, Unavailable):
        return f"<{value.reason}>"
    if isinstance(value, list):
        return [shown(v) for v in value]
    if hasattr(value, "__dict__") or hasattr(value, "_fields_"):
        fields = getattr(value, "_fields_", None)
        names = [f[0] for f in fields] if fields else list(vars(value))
        return {name: shown(getattr(value, name)) for name in names}
    return value if isinstance(value, (int, float, str, type(None))) else repr(value)


def main() -> int:
    parser = Arguments("real_gpu", __doc__)
    parser.add_argument("--calls", type=positive, default=50)
    args = parser.parse_args()
    import pynvml

    nvml = Nvml(pynvml)
    if not nvml.init():
        print(f"real_gpu: NVML did not start ({nvml.init_error}): run it on a GPU host",
              file=sys.stderr)
        return 2
    probe: dict[str, Any] = {"cold_start": cold_start(),
                             "driver": nvml.query("nvmlSystemGetDriverVersion"),
                             "cuda": nvml.query("nvmlSystemGetCudaDriverVersion_v2"),
                             "gpus": nvml.query("nvmlDeviceGetCount"), "calls": {}}
    handle = nvml.query("nvmlDeviceGetHandleByIndex", 0)
    calls: list[tuple[Any, ...]] = [
        ("nvmlDeviceGetName",), ("nvmlDeviceGetUUID",), ("nvmlDeviceGetPciInfo",),
        ("nvmlDeviceGetComputeMode",), ("nvmlDeviceGetCudaComputeCapability",),
        ("nvmlDeviceGetEnforcedPowerLimit",), ("nvmlDeviceGetMaxClockInfo", 0),
        ("nvmlDeviceGetTemperature", 0), ("nvmlDeviceGetPowerUsage",),
        ("nvmlDeviceGetTotalEnergyConsumption",), ("nvmlDeviceGetPcieThroughput", 1),
        ("nvmlDeviceGetBAR1MemoryInfo",), ("nvmlDeviceGetMemoryInfo",),
        ("nvmlDeviceGetUtilizationRates",), ("nvmlDeviceGetClockInfo", 1), (CLOCK_REASONS,),
        (COMPUTE_PROCESSES,), (GRAPHICS_PROCESSES,), ("nvmlDeviceGetProcessUtilization", 0),
        ("nvmlDeviceGetMigMode",), ("nvmlDeviceGetPersistenceMode",)]
    for function, *rest in calls:
        call = (lambda f=function, r=rest: nvml.query_first(f, handle, *r)) if isinstance(
            function, tuple) else (lambda f=function, r=rest: nvml.query(f, handle, *r))
        times = []
        for _ in range(args.calls):
            started = time.perf_counter()
            value = call()
            times.append(time.perf_counter() - started)
        name = function[0] if isinstance(function, tuple) else function
        probe["calls"][name] = {"median_us": round(statistics.median(times) * 1e6, 1),
                                "answer": shown(value)}
        print(f"{name:45} {statistics.median(times) * 1e6:10.1f} us  {shown(value)}"[:200])
    device = Device(nvml, 0, handle)
    for pcie in (True, False):
        times = []
        for _ in range(args.calls):
            started = time.perf_counter()
            device.sample(pcie, process_utilization=True, graphics_processes=True)
            times.append(time.perf_counter() - started)
        key = f"sample_{'with' if pcie else 'without'}_pcie_ms"
        probe[key] = round(statistics.median(times) * 1000, 3)
        print(f"Device.sample {'with' if pcie else 'without'} PCIe: median {probe[key]} ms")
    print(f"cold start: {probe['cold_start']}")
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "probe.json"), "w") as handle_:
            json.dump(probe, handle_, indent=1, default=str)
    return 0


if __name__ == "__main__":
    run(main)
