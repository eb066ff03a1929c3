#!/usr/bin/env python3
"""A small training job: matrix work on the GPU with PyTorch where one is present, otherwise
the same epochs on the CPU. Writes model.txt."""

import argparse
import time

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--seconds-per-epoch", type=float, default=2.0)
parser.add_argument("--exit-code", type=int, default=0, help="end with this status")
args = parser.parse_args()
try:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
except ImportError:
    torch, device = None, "cpu"
loss = 1.0
for epoch in range(1, args.epochs + 1):
    deadline = time.monotonic() + args.seconds_per_epoch
    while time.monotonic() < deadline:
        if torch is not None:
            a = torch.rand(2048, 2048, device=device)
            loss = float((a @ a).mean()) % 1.0
        else:
            time.sleep(0.1)
            loss *= 0.97
    print(f"epoch {epoch}: loss {loss:.4f} on {device}", flush=True)
with open("model.txt", "w") as model:
    model.write(f"trained {args.epochs} epochs on {device}, loss {loss:.4f}\n")
raise SystemExit(args.exit_code)
