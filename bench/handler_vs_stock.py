"""Our pegasus-globus-online against stock Pegasus 5.1.3's, on the same emulator.

    python -m bench.handler_vs_stock [ROUNDS]

Creates .bench/stock-venv (globus-sdk 3, as stock Pegasus uses) on first run, then times one
small file and a 1,000-file batch with each tool, counting the API calls the emulator served,
at each service speed. Each case runs ROUNDS times (default 3), ours and stock alternating,
so that the machine's drift falls on both alike; medians are printed, the ratios last.
Targets (issue 25): 1 small file, instant service: ours <= 1.0x stock; 1,000 files, 1 s
pick-up: ours <= 0.15x stock. The emulator's files are on /dev/shm where there is one.
"""

from __future__ import annotations

import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from bench import common
from bench.common import at_most
from bench.concurrent_refresh import logged_in_store
from pegasus_globus.emulator import Emulator
from pegasus_globus.scopes import TRANSFER_RS

ROOT = Path(__file__).resolve().parent.parent
STOCK_VENV = ROOT / ".bench" / "stock-venv"
PEGASUS_WORKER = "pegasus-wms.worker==5.1.3"
# how long the service takes to pick a task up: 0 is the emulator's instant service; real
# Globus takes a second or more even for one small file
LATENCIES = (0.0, 1.0)


def stock_command() -> list[str]:
    """The stock handler's command, with globus-sdk 3 in its own virtual environment."""
    python, made = STOCK_VENV / "bin" / "python", STOCK_VENV / ".made"
    if not made.exists():  # (an interrupted first run left it half made: made again)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(STOCK_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", "globus-sdk>=3,<4"], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                        "--disable-pip-version-check", PEGASUS_WORKER], check=True)
        made.touch()
    script = subprocess.run(
        [str(python), "-c", "import Pegasus, os; print(os.path.join(os.path.dirname("
         "Pegasus.__file__), 'cli', 'pegasus-globus-online.py'))"],
        check=True, capture_output=True, text=True).stdout.strip()
    return [str(python), script]


def admin(emulator: Emulator, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(emulator.url + path, method=method, data=data)
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)


def measure(emulator: Emulator, command: list[str], spec: dict[str, Any], workdir: Path,
            env: dict[str, str]) -> dict[str, Any]:
    spec_path = workdir / f"spec-{uuid.uuid4().hex[:6]}.json"
    spec_path.write_text(json.dumps(spec))
    admin(emulator, "DELETE", "_emulator/stats")
    started = time.monotonic()
    result = subprocess.run([*command, "--transfer", "--file", str(spec_path)],
                            capture_output=True, text=True, env=env, timeout=600)
    wall = time.monotonic() - started
    stats = admin(emulator, "GET", "_emulator/stats")
    if result.returncode != 0:
        raise SystemExit(f"{command[-1]} failed:\n{result.stdout}{result.stderr}")
    return {"wall_s": wall, "api_calls": stats["total"],
            "calls": {k: v for k, v in sorted(stats["requests"].items())}}


def spec_credentials(emulator: Emulator, home: Path) -> dict[str, Any]:
    """Log in under ``home`` and return the credentials a handler spec carries."""
    store = logged_in_store(emulator, home / ".pegasus" / "globus.conf")
    token = store.token(TRANSFER_RS)
    return {"client_id": store.client_id(), "transfer_at": token.access_token,
            "transfer_rt": token.refresh_token, "transfer_at_exp": token.expires_at}


def main() -> int:
    parser = common.Arguments("handler_vs_stock", __doc__)
    parser.add_argument("rounds", metavar="ROUNDS", type=common.positive, nargs="?", default=3)
    parser.add_argument("--json", action="store_true", help="also print every run's figures")
    args = parser.parse_args()
    stock = stock_command()
    ours = [str(Path(sys.executable).parent / "pegasus-globus-online")]  # as users run it
    # with its bytecode, as pip installs it (and stock's Pegasus modules): an editable
    # install under PYTHONDONTWRITEBYTECODE compiled our modules again at each run (10 ms)
    compileall.compile_dir(ROOT / "pegasus_globus", quiet=1)
    # the emulator's files in memory where it can: a file created on this VM's disk costs
    # about 1 ms, so 1,000 files took the service 1 to 2 s, which is not the handlers' time
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="bench-handler-", dir=shm) as scratch:
        workdir = Path(scratch)
        with Emulator(workdir / "globus") as emulator:
            os.environ.update(emulator.environment)
            credentials = spec_credentials(emulator, workdir / "home")
            env = {**os.environ, "HOME": str(workdir / "home")}
            source = str(uuid.uuid4())
            files = emulator.collection_path(source)
            (files / "small.txt").write_text("hello\n")
            for index in range(1000):
                (files / f"f{index:04d}.dat").write_bytes(b"x" * 1024)
            cases = {
                "1 small file": [{"src": "/small.txt", "dst": "/~/small.txt"}],
                "1,000 files": [{"src": f"/f{i:04d}.dat", "dst": f"/~/many/f{i:04d}.dat"}
                                for i in range(1000)],
            }
            rounds = args.rounds
            runs: dict[str, list[dict[str, Any]]] = {}
            for latency in LATENCIES:
                admin(emulator, "PATCH", "_emulator/settings", {"task_latency": latency})
                for case, items in cases.items():
                    for _ in range(rounds):
                        for tool, command in (("ours", ours), ("stock", stock)):
                            spec = {**credentials, "src_endpoint": source,
                                    "dst_endpoint": str(uuid.uuid4()), "files": items}
                            runs.setdefault(f"{latency:g} s latency, {case} / {tool}", []).append(
                                measure(emulator, command, spec, workdir, env))
    results = {name: {"wall_s": statistics.median(r["wall_s"] for r in rows),
                      "api_calls": statistics.median(r["api_calls"] for r in rows),
                      "walls": [r["wall_s"] for r in rows]} for name, rows in runs.items()}
    print(f"{'case':<40}{'wall s':>8}{'API calls':>11}   (median of {rounds}, alternating)")
    for name, figures in results.items():
        print(f"{name:<40}{figures['wall_s']:>8.2f}{figures['api_calls']:>11g}")
    targets = {(0.0, "1 small file"): 1.0, (1.0, "1,000 files"): 0.15}
    for latency in LATENCIES:
        for case in cases:
            ours_f = results[f"{latency:g} s latency, {case} / ours"]
            stock_f = results[f"{latency:g} s latency, {case} / stock"]
            target = targets.get((latency, case))
            ratio = ours_f["wall_s"] / stock_f["wall_s"]
            print(f"{latency:g} s latency, {case}: wall ours/stock = {ratio:.3f}"
                  + (f" {at_most(ratio, target)}" if target else "")
                  + f", API calls ours/stock = {ours_f['api_calls']:g}/{stock_f['api_calls']:g}")
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    common.run(main)
