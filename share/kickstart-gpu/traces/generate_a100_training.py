"""Write a2x-a100-training.json: a synthetic two-GPU training trace (deterministic).

    python share/kickstart-gpu/traces/generate_a100_training.py

Static values are NVIDIA A100-SXM4-40GB specifications (400 W limit, 40 GiB, 64 GiB BAR1,
1410/1410/1215/1275 MHz maximum clocks, compute capability 8.0). The run: 5 s idle start-up,
a data-loading ramp, then steady training on GPU 0 with GPU 1 used only for evaluation bursts,
so a report shows one busy and one mostly idle GPU. PCIe throughput is NOT_SUPPORTED on GPU 1,
as on some virtualised hosts. One sample a second for 120 s; the last sample holds after that.
"""

import json
import math
import random
from pathlib import Path

GIB = 1024 ** 3
rng = random.Random(20261121)
devices = [
    {"name": "NVIDIA A100-SXM4-40GB", "uuid": "GPU-3f1c2b7e-5d4a-4e8b-9c61-0a7d2e4f5b11",
     "pci_bus_id": "00000000:07:00.0", "compute_mode": 0, "cuda_capability": [8, 0],
     "power_limit": 400000, "memory_total": 40 * GIB, "bar1_total": 64 * GIB,
     "max_clocks": [1410, 1410, 1215, 1275]},
    {"name": "NVIDIA A100-SXM4-40GB", "uuid": "GPU-8a2d4c6e-1b3f-4a5c-8e7d-2f4b6c8d0e22",
     "pci_bus_id": "00000000:0F:00.0", "compute_mode": 0, "cuda_capability": [8, 0],
     "power_limit": 400000, "memory_total": 40 * GIB, "bar1_total": 64 * GIB,
     "max_clocks": [1410, 1410, 1215, 1275], "unsupported": ["nvmlDeviceGetPcieThroughput"]},
]
energy = [1_250_000_000, 1_190_000_000]  # mJ since the driver loaded
samples = []
for t in range(121):
    entries = []
    for index in range(2):
        if index == 0:
            load = 0.0 if t < 5 else min(1.0, (t - 5) / 10) * (0.92 + 0.06 * math.sin(t / 3))
        else:
            load = 0.85 if t >= 20 and t % 30 < 6 else 0.0  # evaluation bursts
        load = max(0.0, min(1.0, load + rng.uniform(-0.02, 0.02) * (load > 0)))
        power = int(58_000 + load * 290_000 + rng.uniform(-1500, 1500))
        energy[index] += power  # 1 s at this power: mW x s = mJ
        busy = load > 0.05
        memory = int((1.2 + (31.5 if index == 0 and t >= 8 else 6.0 if busy else 0.0)) * GIB)
        clock = int(1410 * (0.98 if busy else 0.15)) if load or (index == 0 and t >= 5) else 210
        entry = {
            "temp": int(34 + load * 31 + (t / 120) * 4 * load),
            "power": power, "energy": energy[index], "memory_used": memory,
            "bar1_used": int((4 + 28 * busy) * 1024 ** 2),
            "gpu_util": int(load * 100), "mem_util": int(load * 62),
            "clocks": [clock, clock, 1215 if busy or index == 0 else 405, int(1275 * 0.6)],
            "compute_procs": [[0, memory - int(0.9 * GIB)]] if t >= 5 and (index == 0 or busy)
            else [],
            "graphics_procs": [],
            # GPU 0 hits its power cap (0x4) in the hottest stretch of training
            "throttle": 0x4 if index == 0 and 60 <= t < 75 else 0,
            "proc_util": [[0, int(load * 100), int(load * 62), 0, 0]] if busy else [],
        }
        if index == 0:
            entry["pcie_rx"] = int(1_800_000 * load + (9_000_000 if 5 <= t < 15 else 0))
            entry["pcie_tx"] = int(250_000 * load)
        else:
            entry["pcie_rx"] = entry["pcie_tx"] = 0
        entries.append(entry)
    samples.append({"t": t, "devices": entries})

trace = {
    "format": "pegasus-kickstart-gpu-trace", "version": 1,
    "description": "Synthetic: two A100-SXM4-40GB, one training job (GPU 0 busy, GPU 1 "
                   "evaluation bursts). Made by generate_a100_training.py, not recorded.",
    "driver_version": "550.54.15", "cuda_driver_version": 12040,
    "devices": devices, "samples": samples,
}
path = Path(__file__).with_name("a2x-a100-training.json")
path.write_text(json.dumps(trace, separators=(",", ":")) + "\n")
print(f"wrote {path} ({path.stat().st_size} bytes)")
