"""What one sample costs through the real pynvml bindings, per device.

    python -m bench.nvml_sampling [--samples 200]

Loads the fake ``libnvidia-ml.so.1`` (tests/fake_nvml, built here with the system compiler
against NVIDIA's nvml.h) into the real pynvml and times ``Device.sample`` on the replayed
two-A100 trace: median and 95th percentile ``sampling_duration`` per device, with PCIe (the
driver's 20 ms window per counter, as hardware takes) and without (``--no-pcie``). GPU 1's
PCIe is NOT_SUPPORTED in the trace, so it costs what an unsupported counter costs. What this
cannot show is the real driver's own cost per call: only a GPU can.
"""

from __future__ import annotations

import ctypes
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import Arguments, positive, run
from tests.fake_nvml.build import build, convert

TRACE = Path(__file__).resolve().parent.parent / "share/kickstart-gpu/traces/a2x-a100-training.json"


def main() -> None:
    parser = Arguments("nvml_sampling", __doc__)
    parser.add_argument("--samples", type=positive, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        library = build(Path(directory))
        os.environ["FAKE_NVML_TRACE"] = str(convert(json.loads(TRACE.read_text()),
                                                    Path(directory) / "trace.txt"))
        import pynvml

        pynvml.nvmlLib = ctypes.CDLL(str(library))  # what _LoadNvmlLibrary would have loaded
        from kickstart_gpu.nvml import Device, Nvml

        nvml = Nvml(pynvml)
        devices = [Device(nvml, i, nvml.query("nvmlDeviceGetHandleByIndex", i)) for i in (0, 1)]
        from importlib.metadata import version

        print(f"nvidia-ml-py {version('nvidia-ml-py')}, {args.samples} samples per device")
        for pcie in (True, False):
            for device in devices:
                durations = []
                for _ in range(args.samples):
                    started = time.perf_counter()
                    device.sample(pcie, process_utilization=True, graphics_processes=True)
                    durations.append(time.perf_counter() - started)
                durations.sort()
                print(f"GPU {device.index} {'with' if pcie else 'without'} PCIe: median "
                      f"{statistics.median(durations) * 1000:.2f} ms, p95 "
                      f"{durations[int(len(durations) * 0.95)] * 1000:.2f} ms")


if __name__ == "__main__":
    run(main)
