"""A GPU job with a known shape, for recording traces and checking the sidecar on a real GPU.

    python bench/gpu_job.py [EXIT_STATUS | SIGNAL_NAME] [SCALE]

Needs PyTorch with CUDA. Phases, each printed on standard output as it starts: 2 s idle before
CUDA starts; CUDA context and 16 GiB allocated; 6 s of back-to-back bf16 matrix products (full
load); 4 s at half duty (0.1 s products, 0.1 s sleep); memory freed; 2 s idle. Then it exits
with EXIT_STATUS (default 0), or kills itself with SIGNAL_NAME (SIGTERM...), so that a wrapper's
exit status and signal can be compared with the job's own. SCALE (default 1) stretches or
shrinks every phase.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def phase(name: str) -> None:
    print(f"{time.time():.3f} {name}", flush=True)


def busy(seconds: float, duty: float = 1.0) -> int:
    import torch

    x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    products, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        burst = time.monotonic() + 0.1 * duty
        while time.monotonic() < burst:
            x = (x @ x).clamp_(-1, 1)
            products += 1
            torch.cuda.synchronize()
        if duty < 1:
            time.sleep(0.1 * (1 - duty))
    return products


def main() -> None:
    ending = sys.argv[1] if len(sys.argv) > 1 else "0"
    scale = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    phase("idle, no CUDA yet")
    time.sleep(2 * scale)
    import torch

    phase("CUDA context, 16 GiB")
    held = torch.empty(16 * 2**30, dtype=torch.uint8, device="cuda")
    phase("full load")
    full = busy(6 * scale)
    phase("half duty")
    half = busy(4 * scale, duty=0.5)
    del held
    torch.cuda.empty_cache()
    phase("memory freed, idle")
    time.sleep(2 * scale)
    print(f"products: {full} at full load, {half} at half duty", flush=True)
    print("gpu_job: done", file=sys.stderr, flush=True)
    if ending.isdigit():
        sys.exit(int(ending))
    os.kill(os.getpid(), getattr(signal, ending))


if __name__ == "__main__":
    main()
