"""How costs grow with the number of files: the handler and the bridge at N files.

    python -m bench.scaling handler [N ...]   (default 1000 10000 100000)
    python -m bench.scaling bridge [N ...]    (default 1000 10000)

handler: ``pegasus-globus-online --transfer`` on one spec of N one-byte files (parse, one
submission, completion), instant service. Prints its wall time, its peak resident memory
(wait4's ru_maxrss: the handler alone), its API calls, and how the wall splits: before the
submission reached the service, the service's work (the emulator copying N files, which is
not the handler's cost), and after the task ended until the handler exited (polling lag and
exit). "own" is the wall less the service's work. Targets at 10^5: own under 10 s, peak
under 300 MB.

bridge: ``pegasus-globus-transfer`` (the real command, as pegasus-transfer's replacement)
downloading N small files go->file, then uploading them file->go. Prints files per second,
the TCP connections it opened (the emulator's count), its API calls and peak resident memory.

The emulator runs in this process, its files on /dev/shm where there is one: creating a file
on this VM's disk costs about 1 ms, which would be the service's time, not the tools'. Each
line ends with the growth from the previous N (time ratio / size ratio: 1.0 is linear).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import common
from bench.common import at_most
from bench.handler_vs_stock import admin, spec_credentials
from pegasus_globus.emulator import Emulator, approve
from pegasus_globus.scopes import login_scopes
from pegasus_globus.token_store import StoredToken, TokenStore

BIN = Path(sys.executable).parent
HANDLER_TARGET_FILES = 100_000  # issue 25: at 10^5 files, under 10 s of its own and 300 MB
HANDLER_TARGET_SECONDS, HANDLER_TARGET_MB = 10.0, 300.0


def scratch_directory() -> tempfile.TemporaryDirectory:
    shm = Path("/dev/shm")
    return tempfile.TemporaryDirectory(prefix="bench-scaling-",
                                       dir=str(shm) if shm.is_dir() else None)


def run_measured(command: list[str], env: dict[str, str], stdin: str | None = None
                 ) -> tuple[float, float, str]:
    """(wall seconds, peak resident MiB of this one process, its stderr); raises on failure."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=errors, text=True)
        try:
            if stdin is not None:
                process.stdin.write(stdin)
            process.stdin.close()
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:  # Ctrl-C, SIGTERM (see common.run): it ends with the bench
            process.kill()
            process.wait()
            raise
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        errors.seek(0)
        log = errors.read()
    if process.returncode:
        raise SystemExit(f"{command[0]} failed (exit {process.returncode}):\n{log[-2000:]}")
    return wall, usage.ru_maxrss / 1024, log


class ServiceClock:
    """When the submission reached the emulator and when its task ended (this process's
    monotonic clock), by wrapping the emulator's own methods."""

    def __init__(self, emulator: Emulator) -> None:
        self.submitted = self.finished = 0.0
        tasks, worker = emulator.transfer.tasks, emulator.transfer.worker
        submit, finish = tasks.submit_transfer, worker._finish

        def submit_transfer(request: Any) -> Any:
            self.submitted = time.monotonic()
            return submit(request)

        def _finish(*args: Any, **kwargs: Any) -> Any:
            result = finish(*args, **kwargs)
            self.finished = time.monotonic()
            return result
        tasks.submit_transfer, worker._finish = submit_transfer, _finish
        for route in emulator.routes:  # the routes hold the bound method: point them here
            if route.handler == submit:
                route.handler = submit_transfer


def growth(previous: tuple[int, float] | None, n: int, value: float) -> str:
    if previous is None or previous[1] <= 0:
        return ""
    return f"  growth x{(value / previous[1]) / (n / previous[0]):.2f}"


def handler(sizes: list[int]) -> int:
    rows = []
    with scratch_directory() as scratch:
        work = Path(scratch)
        with Emulator(work / "globus") as emulator:
            os.environ.update(emulator.environment)
            credentials = spec_credentials(emulator, work / "home")
            env = {**os.environ, "HOME": str(work / "home")}
            source = str(uuid.uuid4())
            clock = ServiceClock(emulator)
            for n in sizes:
                folder = emulator.collection_path(source) / f"n{n}"
                folder.mkdir()
                for index in range(n):
                    (folder / f"f{index}").write_bytes(b"x")
                spec = work / f"spec-{n}.json"
                spec.write_text(json.dumps({
                    **credentials, "src_endpoint": source, "dst_endpoint": str(uuid.uuid4()),
                    "files": [{"src": f"/n{n}/f{i}", "dst": f"/~/n{n}/f{i}"}
                              for i in range(n)]}))
                admin(emulator, "DELETE", "_emulator/stats")
                started = time.monotonic()
                wall, mib, _ = run_measured([str(BIN / "pegasus-globus-online"), "--transfer",
                                             "--file", str(spec)], env)
                ended = started + wall
                calls = admin(emulator, "GET", "_emulator/stats")["total"]
                service = clock.finished - clock.submitted
                rows.append((n, wall, mib, calls, clock.submitted - started, service,
                             ended - clock.finished))
    print(f"{'files':>8}{'wall s':>9}{'own s':>8}{'peak MiB':>10}{'calls':>7}"
          f"{'before submit':>15}{'service':>9}{'after':>7}")
    previous = None
    for n, wall, mib, calls, before, service, after in rows:
        own = wall - service
        print(f"{n:>8}{wall:>9.2f}{own:>8.2f}{mib:>10.1f}{calls:>7}{before:>15.2f}"
              f"{service:>9.2f}{after:>7.2f}{growth(previous, n, own)}")
        previous = (n, own)
    for n, wall, mib, *_, service, _ in rows:
        if n == HANDLER_TARGET_FILES:  # the target is set there, and says nothing elsewhere
            own, megabytes = wall - service, mib * 2**20 / 1e6
            print(f"handler at {n:,} files: own {own:.2f} s "
                  f"{at_most(own, HANDLER_TARGET_SECONDS, ' s')}, peak {megabytes:.0f} MB "
                  f"{at_most(megabytes, HANDLER_TARGET_MB, ' MB')}")
    return 0


def bridge(sizes: list[int]) -> int:
    rows = []
    with scratch_directory() as scratch:
        work = Path(scratch)
        with Emulator(work / "globus") as emulator:
            os.environ.update(emulator.environment)
            source, destination = str(uuid.uuid4()), str(uuid.uuid4())
            import globus_sdk

            client = globus_sdk.NativeAppAuthClient("d7382f5a-4ea3-4b69-b094-99c392fc820d")
            client.oauth2_start_flow(requested_scopes=login_scopes([source, destination]),
                                     refresh_tokens=True)
            tokens = client.oauth2_exchange_code_for_tokens(
                approve(client.oauth2_get_authorize_url()))
            home = work / "home"
            TokenStore(home / ".pegasus" / "globus.conf").save_tokens(
                StoredToken.from_response(tokens), client_id=client.client_id)
            env = {**os.environ, "HOME": str(home)}
            env.pop("PEGASUS_GLOBUS_CONFIG", None)
            env.pop("PEGASUS_MULTIPART_DIR", None)
            for n in sizes:
                folder = emulator.collection_path(source) / f"n{n}"
                folder.mkdir()
                for index in range(n):
                    (folder / f"f{index}").write_bytes(b"x" * 1000)
                local = work / "local" / f"n{n}"

                def entry(src: str, dst: str, index: int) -> dict[str, Any]:
                    return {"type": "transfer", "linkage": "input", "lfn": f"f{index}",
                            "id": index, "src_urls": [{"site_label": "a", "url": src}],
                            "dest_urls": [{"site_label": "b", "url": dst}]}
                for direction, entries in (
                        ("go->file", [entry(f"go://{source}/n{n}/f{i}",
                                            f"file://{local}/f{i}", i) for i in range(n)]),
                        ("file->go", [entry(f"file://{local}/f{i}",
                                            f"go://{destination}/n{n}/f{i}", i)
                                      for i in range(n)])):
                    admin(emulator, "DELETE", "_emulator/stats")
                    wall, mib, _ = run_measured([str(BIN / "pegasus-globus-transfer")], env,
                                                stdin=json.dumps(entries))
                    stats = admin(emulator, "GET", "_emulator/stats")
                    rows.append((direction, n, wall, mib, stats["connections"] - 1,
                                 stats["total"]))
    print(f"{'direction':<10}{'files':>7}{'wall s':>9}{'files/s':>9}{'connections':>13}"
          f"{'calls':>7}{'peak MiB':>10}")
    previous: dict[str, tuple[int, float]] = {}
    for direction, n, wall, mib, connections, calls in rows:
        print(f"{direction:<10}{n:>7}{wall:>9.2f}{n / wall:>9.0f}{connections:>13}{calls:>7}"
              f"{mib:>10.1f}{growth(previous.get(direction), n, wall)}")
        previous[direction] = (n, wall)
    print("connections: those the command opened (the stats request's own left out)")
    return 0


def main() -> int:
    parser = common.Arguments("scaling", __doc__)
    parser.add_argument("tool", choices=("handler", "bridge"))
    parser.add_argument("sizes", metavar="N", type=common.positive, nargs="*",
                        help="files (default: 1000 10000 100000 for the handler, "
                        "1000 10000 for the bridge)")
    args = parser.parse_args()
    sizes = list(dict.fromkeys(args.sizes))  # each once
    if args.tool == "handler":
        return handler(sizes or [1000, 10_000, 100_000])
    return bridge(sizes or [1000, 10_000])


if __name__ == "__main__":
    common.run(main)
