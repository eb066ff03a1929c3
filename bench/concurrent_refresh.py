"""N processes refresh the same expired Globus access token at once, through the token store.

    python -m bench.concurrent_refresh [N]

Prints wall time, refresh calls seen by the emulator, and whether the file survived intact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import common
from pegasus_globus.emulator import Emulator, approve
from pegasus_globus.scopes import TIMERS_SCOPE, TRANSFER_RS, TRANSFER_SCOPE
from pegasus_globus.token_store import StoredToken, TokenStore

WORKER = """
import sys, time, pathlib, globus_sdk
from pegasus_globus.token_store import TokenStore
go = pathlib.Path(sys.argv[2])
(go.parent / f"ready.{sys.argv[3]}").touch()  # imports done
while not go.exists():
    time.sleep(0.005)
store = TokenStore(sys.argv[1])
client = globus_sdk.TransferClient(authorizer=store.authorizer("transfer.api.globus.org"))
client.get_submission_id()
"""


def logged_in_store(emulator: Emulator, path: Path) -> TokenStore:
    """A token store holding a refreshable login, as pegasus-globus-online-init leaves it."""
    import globus_sdk

    client = globus_sdk.NativeAppAuthClient("d7382f5a-4ea3-4b69-b094-99c392fc820d")
    client.oauth2_start_flow(requested_scopes=f"{TRANSFER_SCOPE} {TIMERS_SCOPE}[{TRANSFER_SCOPE}]",
                             refresh_tokens=True)
    tokens = client.oauth2_exchange_code_for_tokens(approve(client.oauth2_get_authorize_url()))
    store = TokenStore(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# kept across refreshes\n[mine]\nkeep = me\n")
    store.save_tokens(StoredToken.from_response(tokens), client_id=client.client_id)
    return store


def run(emulator: Emulator, path: Path, processes: int = 32) -> dict[str, Any]:
    store = logged_in_store(emulator, path)
    store.update({"oauth": {"transfer_at_exp": "0"}})  # expired in the file ...
    post = urllib.request.Request(emulator.url + "_emulator/tokens/expire", method="POST")
    urllib.request.urlopen(post).close()  # ... and at the service
    urllib.request.urlopen(urllib.request.Request(emulator.url + "_emulator/stats",
                                                  method="DELETE")).close()
    go = path.parent / "go"
    env = {**os.environ, **emulator.environment}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(go), str(n)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for n in range(processes)]
    deadline = time.monotonic() + 120
    while len(list(path.parent.glob("ready.*"))) < processes and time.monotonic() < deadline:
        time.sleep(0.01)  # every interpreter started and imported before the gun
    started = time.monotonic()
    go.touch()
    outcomes = [(w.wait(timeout=120), w.stderr.read()) for w in workers]
    elapsed = time.monotonic() - started
    with urllib.request.urlopen(emulator.url + "_emulator/stats") as answer:
        requests = json.load(answer)["requests"]
    final = TokenStore(path)
    return {
        "processes": processes,
        "succeeded": sum(1 for code, _ in outcomes if code == 0),
        "errors": [err.strip().splitlines()[-1] for code, err in outcomes if code][:3],
        "wall_seconds": round(elapsed, 3),
        "refresh_calls": requests.get("POST /v2/oauth2/token", 0),
        "mode": f"{path.stat().st_mode & 0o777:04o}",
        "kept_unrelated": final.read().get("mine", "keep", fallback=None) == "me",
        "resource_servers": sorted(final.tokens()),
        "access_token_fresh": not final.tokens()[TRANSFER_RS].expired(),
    }


def main() -> int:
    parser = common.Arguments("concurrent_refresh", __doc__)
    parser.add_argument("processes", metavar="N", type=common.positive, nargs="?", default=32)
    processes = parser.parse_args().processes
    with tempfile.TemporaryDirectory() as scratch, Emulator(Path(scratch) / "g") as emulator:
        os.environ.update(emulator.environment)
        print(json.dumps(run(emulator, Path(scratch) / "home" / "globus.conf", processes),
                         indent=2))
    return 0


if __name__ == "__main__":
    common.run(main)
