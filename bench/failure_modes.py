"""The Globus tools under injected failures: what is lost, duplicated or left behind.

    python -m bench.failure_modes [--files 200] [--rounds 10]

1. faults: ``pegasus-globus-online`` moves FILES files, ROUNDS times, while the emulator
   answers 20 % and then 40 % of requests with 502/503 or drops them. Lost files (missing or
   wrong at the destination), duplicated files (copied by more than one task) and Globus
   tasks per batch (1 is right: retries reuse one submission id).
2. SIGTERM: the handler is signalled at 8 points of a transfer (from before its task is
   submitted to mid-copy), once and twice in a row; tasks left running after it exits
   (0 is right).
3. refresh race: 64 processes refresh the same expired tokens while a logout and a re-login
   happen; tokens of the old login found in the file afterwards (0 is right), over 5 rounds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import Arguments, positive, run
from bench.concurrent_refresh import logged_in_store
from pegasus_globus.emulator import Emulator
from pegasus_globus.scopes import TRANSFER_RS

HANDLER = [sys.executable, "-m", "pegasus_globus.online"]


def _spec(path: Path, store: Any, source: str, destination: str,
          files: list[tuple[str, str]]) -> Path:
    token = store.token(TRANSFER_RS)
    path.write_text(json.dumps({
        "client_id": store.client_id(), "transfer_at": token.access_token,
        "transfer_rt": token.refresh_token, "transfer_at_exp": token.expires_at,
        "src_endpoint": source, "dst_endpoint": destination,
        "files": [{"src": s, "dst": d} for s, d in files]}))
    return path


def faults(scratch: Path, files: int, rounds: int) -> list[dict[str, Any]]:
    figures = []
    for rate in (0.2, 0.4):
        with Emulator(scratch / f"faults-{rate}", seed=7) as emulator:
            os.environ.update(emulator.environment)
            store = logged_in_store(emulator, scratch / f"home-{rate}" / "globus.conf")
            emulator.settings["fault_rate"] = rate  # after the login: faults hit the handler
            source = str(uuid.uuid4())
            (emulator.collection_path(source) / "d").mkdir()
            for i in range(files):
                (emulator.collection_path(source) / "d" / f"{i}.dat").write_text(f"file {i}\n")
            lost = duplicated = tasks = failed_runs = 0
            env = {**os.environ, **emulator.environment, "HOME": str(scratch / f"home-{rate}")}
            started = time.monotonic()
            for _ in range(rounds):
                destination = str(uuid.uuid4())
                before = set(emulator.state["tasks"])
                spec = _spec(scratch / "spec.json", store, source, destination,
                             [(f"/d/{i}.dat", f"/~/r/{i}.dat") for i in range(files)])
                result = subprocess.run([*HANDLER, "--transfer", "--file", str(spec)], env=env,
                                        capture_output=True, text=True, timeout=600)
                failed_runs += result.returncode != 0
                new = [emulator.state["tasks"][t]["doc"] for t in set(emulator.state["tasks"])
                       - before]
                tasks += len(new)
                copied = sum(t.get("files_transferred", 0) for t in new)
                duplicated += max(0, copied - files)
                landed = [emulator.resolve(destination, f"/~/r/{i}.dat") for i in range(files)]
                lost += sum(1 for i, path in enumerate(landed)
                            if not path.is_file() or path.read_text() != f"file {i}\n")
            figures.append({"fault_rate": rate, "files": files, "rounds": rounds,
                            "lost": lost, "duplicated": duplicated,
                            "tasks_per_batch": round(tasks / rounds, 2),
                            "failed_runs": failed_runs,
                            "seconds_per_round": round((time.monotonic() - started) / rounds, 1)})
    return figures


def sigterm(scratch: Path, files: int) -> dict[str, Any]:
    points = (0.0, 0.1, 0.3, 0.6, 1.0, 1.5, 2.5, 4.0)  # seconds after the handler starts
    left_running = runs = 0
    with Emulator(scratch / "sigterm", bandwidth=20_000, task_latency=0.5) as emulator:
        os.environ.update(emulator.environment)
        home = scratch / "home-sigterm"
        store = logged_in_store(emulator, home / "globus.conf")
        source = str(uuid.uuid4())
        (emulator.collection_path(source) / "d").mkdir()
        for i in range(files):
            (emulator.collection_path(source) / "d" / f"{i}.dat").write_bytes(b"x" * 1000)
        env = {**os.environ, **emulator.environment, "HOME": str(home)}
        for twice in (False, True):
            for point in points:
                spec = _spec(scratch / "spec.json", store, source, str(uuid.uuid4()),
                             [(f"/d/{i}.dat", f"/~/{i}.dat") for i in range(files)])
                before = set(emulator.state["tasks"])
                process = subprocess.Popen([*HANDLER, "--transfer", "--file", str(spec)],
                                           env=env, stderr=subprocess.DEVNULL)
                time.sleep(point)
                process.send_signal(signal.SIGTERM)
                if twice:
                    time.sleep(0.05)
                    process.send_signal(signal.SIGTERM)
                process.wait(timeout=120)
                runs += 1
                time.sleep(0.2)
                left_running += sum(
                    1 for t in set(emulator.state["tasks"]) - before
                    if emulator.state["tasks"][t]["doc"]["status"] in ("ACTIVE", "INACTIVE"))
    return {"points": list(points), "runs": runs, "tasks_left_running": left_running}


def refresh_race(scratch: Path, processes: int = 64, rounds: int = 5) -> dict[str, Any]:
    worker = (
        "import sys, time, pathlib, globus_sdk\n"
        "from pegasus_globus.token_store import TokenStore\n"
        "store = TokenStore(sys.argv[1]); go = pathlib.Path(sys.argv[2])\n"
        "authorizer = store.authorizer(sys.argv[4])\n"  # read now, before the logout
        "(go.parent / f'ready.{sys.argv[3]}').touch()\n"
        "while not go.exists(): time.sleep(0.002)\n"
        "authorizer.handle_missing_authorization(); authorizer.get_authorization_header()\n")
    resurrected = failed = 0
    with Emulator(scratch / "race") as emulator:
        os.environ.update(emulator.environment)
        env = {**os.environ, **emulator.environment}
        for round_ in range(rounds):
            directory = scratch / f"race-{round_}"
            path = directory / "globus.conf"
            store = logged_in_store(emulator, path)
            old = {server: token.refresh_token for server, token in store.tokens().items()}
            servers = sorted(old)
            workers = [subprocess.Popen(
                [sys.executable, "-c", worker, str(path), str(directory / "go"), str(n),
                 servers[n % len(servers)]], env=env, stderr=subprocess.PIPE, text=True)
                for n in range(processes)]
            while len(list(directory.glob("ready.*"))) < processes:
                time.sleep(0.01)
            (directory / "go").touch()
            store.remove_tokens()  # logout ...
            logged_in_store(emulator, path)  # ... and a new login, while they refresh
            failed += sum(1 for w in workers if w.wait(timeout=120))
            final = store.tokens()
            resurrected += sum(1 for server, token in final.items()
                               if token.refresh_token == old.get(server))
    return {"processes": processes, "rounds": rounds, "old_tokens_resurrected": resurrected,
            "workers_failed": failed}


def main() -> int:
    parser = Arguments("failure_modes", __doc__)
    parser.add_argument("--files", type=positive, default=200)
    parser.add_argument("--rounds", type=positive, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        for figures in faults(Path(scratch), args.files, args.rounds):
            print(json.dumps(figures))
        print(json.dumps(sigterm(Path(scratch), args.files)))
        print(json.dumps(refresh_race(Path(scratch))))
    return 0


if __name__ == "__main__":
    run(main)
