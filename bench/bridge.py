"""The go<->file bridge against the go->go path, on one emulator.

    python -m bench.bridge [--megabytes 32] [--rounds 15]

Moves the same bytes as 1 file and as 100 files: go->file (download through the collection's
HTTPS server), file->go (upload) with pegasus_globus.transfer.bridge.HttpsBridge, and go->go
with the Transfer task our handler submits (pegasus_globus.transfer.operations). The three
paths alternate within each round, so that the machine's drift falls on all alike; prints
median wall seconds and MB/s for each, then the ratios (issue 25's targets: go->file and
file->go each <= go->go for 100 files; upload >= 80 % of download for the single file).
Loopback and one disk, the emulator in a process of its own: it compares the paths' own
overheads (requests, polling, renames), not networks.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

from bench.common import Arguments, at_least, at_most, positive, run
from pegasus_globus.emulator import approve
from pegasus_globus.emulator.server import SERVICES
from pegasus_globus.scopes import login_scopes
from pegasus_globus.token_store import StoredToken, TokenStore


@contextlib.contextmanager
def emulator_process(root: Path) -> Iterator[Path]:
    """The emulator in a process of its own, as Globus is to a job: in this one, its HTTP
    threads would share the interpreter with the bridge's and slow both."""
    process = subprocess.Popen([sys.executable, "-m", "pegasus_globus.emulator.cli", "--root",
                                str(root)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    try:
        for _ in SERVICES:  # its first lines: export GLOBUS_SDK_SERVICE_URL_...=...
            name, value = process.stdout.readline().split(" ", 1)[1].strip().split("=", 1)
            os.environ[name] = value
        yield root
    finally:
        process.terminate()
        process.wait()


def alternated(actions: dict, rounds: int) -> dict[str, float]:
    """Median wall seconds of each action over ``rounds`` rounds, the actions alternating
    within a round; each run gets its round number, for fresh targets."""
    runs: dict[str, list[float]] = {name: [] for name in actions}
    for round_ in range(rounds):
        for name, action in actions.items():
            started = time.perf_counter()
            action(round_)
            runs[name].append(time.perf_counter() - started)
    return {name: statistics.median(times) for name, times in runs.items()}


def main() -> None:
    parser = Arguments("bridge", __doc__)
    parser.add_argument("--megabytes", type=positive, default=32)
    parser.add_argument("--rounds", type=positive, default=15)  # medians of 5 swung 0.82 to 1.10
    args = parser.parse_args()
    total = args.megabytes * 1_000_000
    with tempfile.TemporaryDirectory() as scratch, emulator_process(Path(scratch) / "g") as root:
        import globus_sdk

        from pegasus_globus.online import transfer_client
        from pegasus_globus.transfer.bridge import HttpsBridge
        from pegasus_globus.transfer.operations import GlobusTransfers
        from pegasus_globus.transfer.spec import Credentials
        from pegasus_globus.transfer.urls import GoUrl

        source, destination = str(uuid.uuid4()), str(uuid.uuid4())
        client = globus_sdk.NativeAppAuthClient("d7382f5a-4ea3-4b69-b094-99c392fc820d")
        client.oauth2_start_flow(requested_scopes=login_scopes([source, destination]),
                                 refresh_tokens=True)
        tokens = client.oauth2_exchange_code_for_tokens(approve(client.oauth2_get_authorize_url()))
        store = TokenStore(Path(scratch) / "globus.conf")
        store.save_tokens(StoredToken.from_response(tokens), client_id=client.client_id)
        token = store.token("transfer.api.globus.org")
        transfers = GlobusTransfers(transfer_client(Credentials(
            client.client_id, token.access_token, token.refresh_token, token.expires_at)))
        bridge = HttpsBridge(transfers, store)

        def moved(jobs: list) -> None:
            failed = [error for _, error in bridge.run(jobs) if isinstance(error, Exception)]
            if failed:
                raise SystemExit(f"{len(failed)} move(s) failed, the first: {failed[0]}")
        local = Path(scratch) / "local"
        results: dict[int, dict[str, float]] = {}
        for count in (1, 100):
            size = total // count
            folder = f"/set{count}"
            (root / "collections" / source / folder[1:]).mkdir(parents=True)
            for i in range(count):
                (root / "collections" / source / folder[1:] / f"{i}.dat").write_bytes(
                    os.urandom(size))
            names = [f"{folder}/{i}.dat" for i in range(count)]
            results[count] = alternated({
                "go->file": lambda r, names=names: moved(
                    [("download", GoUrl(source, n), local / str(r) / n[1:]) for n in names]),
                "file->go": lambda r, names=names: moved(
                    [("upload", GoUrl(destination, f"/up{r}{n}"), local / "0" / n[1:])
                     for n in names]),
                "go->go": lambda r, names=names: transfers.transfer(
                    source, destination, [(n, f"/gg{r}{n}") for n in names]),
            }, args.rounds)
            for path, seconds in results[count].items():
                print(f"{count:>3} file(s) x {size / 1e6:g} MB {path:>8}: {seconds:6.2f} s, "
                      f"{total / 1e6 / seconds:7.1f} MB/s")
    many, one = results[100], results[1]
    download, upload = (many[path] / many["go->go"] for path in ("go->file", "file->go"))
    speed = one["go->file"] / one["file->go"]
    print(f"100 files: go->file / go->go = {download:.2f} {at_most(download, 1)}, "
          f"file->go / go->go = {upload:.2f} {at_most(upload, 1)}; "
          f"1 file: upload / download speed = {speed:.2f} {at_least(speed, 0.8)}")


if __name__ == "__main__":
    run(main)
