"""``pegasus-globus-transfer``: pegasus-transfer, plus go:// <-> file:// transfers.

Pegasus has no handler plug-in: pegasus-transfer maps protocol pairs to built-in handlers, and
a go:// replica meant for a plain directory fails with "Unable to find handlers for 'go' to
'file' transfers". This command takes pegasus-transfer's place (the transformation catalog's
pegasus::transfer entry): it moves the go<->file pairs itself, through the collections'
HTTPS servers, and hands every other entry, with the same options, to the stock
pegasus-transfer ($PEGASUS_HOME/bin, else PATH). Exit 0 only when both parts succeeded.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote

PROG = "pegasus-globus-transfer"
log = logging.getLogger("pegasus_globus")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[1].replace("\n", " "),
        epilog="Every option other than --file goes to the stock pegasus-transfer unchanged. "
        "The go<->file pairs need HTTPS tokens: pegasus-globus-online-init --permanent "
        "--collections UUID... asks for them. PegasusLite (nonsharedfs, condorio) job scripts "
        "run the same pegasus::transfer entry on the worker, to pull inputs into the job's "
        "directory and push outputs to a go:// staging site: the entry's path must exist "
        "there, with a token file in the job's $HOME/.pegasus (or $PEGASUS_GLOBUS_CONFIG).")
    parser.add_argument("-f", "--file", help="pegasus-transfer's JSON input (default: stdin)")
    parser.add_argument("-n", "--threads", type=int, default=4,
                        help="transfers at a time, for the stock pegasus-transfer too "
                        "(default: 4)")
    return parser


def split(entries: list[dict[str, Any]]) -> tuple[list[Any], list[dict[str, Any]]]:
    """(go<->file pairs for the bridge, everything else for the stock pegasus-transfer)."""
    ours, theirs = [], []
    for entry in entries:
        pair = _bridge_pair(entry) if entry.get("type") == "transfer" else None
        (ours if pair else theirs).append(pair or entry)
    return ours, theirs


def _bridge_pair(entry: dict[str, Any]) -> tuple[str, str, str] | None:
    """("download"|"upload", go URL, local path) when the entry is go->file or file->go."""
    sources = [u["url"] for u in entry.get("src_urls") or []]
    targets = [u["url"] for u in entry.get("dest_urls") or []]
    go_source = next((u for u in sources if u.startswith("go://")), None)
    file_target = next((u for u in targets if u.startswith("file://")), None)
    if go_source and file_target and not any(u.startswith("go://") for u in targets):
        return "download", go_source, _local(file_target)
    file_source = next((u for u in sources if u.startswith("file://")), None)
    go_target = next((u for u in targets if u.startswith("go://")), None)
    if file_source and go_target and not any(u.startswith("go://") for u in sources):
        return "upload", go_target, _local(file_source)
    return None


def _local(url: str) -> str:
    """The path of a file:// URL; ``$PWD`` and other variables expanded, as PegasusLite
    writes ``file://$PWD/...`` for the job's own directory."""
    path = unquote(url[len("file://"):])  # not urlsplit: it would take $PWD for a host
    if not path.startswith(("/", "$")):  # file://host/path
        path = path[path.find("/"):] if "/" in path else "/"
    for form in ("${PWD}", "$PWD"):  # the working directory itself, not an inherited $PWD
        path = path.replace(form, os.getcwd())
    return os.path.expandvars(path)


def stock_pegasus_transfer() -> str | None:
    """The stock pegasus-transfer: $PEGASUS_HOME/bin first, as Pegasus' own tools look."""
    home = os.environ.get("PEGASUS_HOME")
    if home and os.access(Path(home) / "bin" / "pegasus-transfer", os.X_OK):
        return str(Path(home) / "bin" / "pegasus-transfer")
    return shutil.which("pegasus-transfer")


def run_stock(entries: list[dict[str, Any]], options: list[str]) -> int:
    stock = stock_pegasus_transfer()
    if stock is None:
        log.error("no stock pegasus-transfer for %d other transfer(s): set PEGASUS_HOME or put "
                  "Pegasus' bin on PATH", len(entries))
        return 1
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="pegasus-transfer-") as spec:
        json.dump(entries, spec)
        spec.flush()
        return subprocess.run([stock, *options, "--file", spec.name]).returncode


def run_bridge(pairs: list[tuple[str, str, str]], threads: int = 4) -> int:
    """Each pair in turn; one line per failure; 0 when all succeeded."""
    import globus_sdk  # only when there is go:// work

    from .scopes import TRANSFER_RS, init_command
    from .token_store import TokenStore, TokenStoreError
    from .transfer.bridge import HttpsBridge
    from .transfer.operations import GlobusTransfers, announced_retries
    from .transfer.urls import parse_go_url

    jobs, failed = [], 0
    for direction, url, local in pairs:
        try:
            jobs.append((direction, parse_go_url(url), Path(local)))
        except ValueError as error:
            failed += 1
            log.error("%s", error)
    collections = sorted({location.collection for _, location, _ in jobs})
    try:  # the store's authorizer: it refreshes and saves by the store's one rule
        store = TokenStore()
        client = globus_sdk.TransferClient(
            authorizer=store.authorizer(TRANSFER_RS, fix=init_command(collections)),
            retry_config=announced_retries("Globus Transfer"))
        bridge = HttpsBridge(GlobusTransfers(client), store)
    except TokenStoreError as error:
        log.error("%s", error)
        return 1
    for (direction, location, local), outcome in bridge.run(jobs, threads):
        if isinstance(outcome, BaseException):
            failed += 1
            log.error("%s", getattr(outcome, "summary", None) or outcome)
        else:
            log.info("%s %s %s %s: %d bytes", direction, location,
                     "->" if direction == "download" else "<-", local, outcome)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args, options = _parser().parse_known_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)7s:  %(message)s", level=logging.INFO)
    try:
        text = Path(args.file).read_text() if args.file else sys.stdin.read()
        entries = json.loads(text)
        if not isinstance(entries, list):
            raise ValueError("the input must be a JSON list of transfers")
    except (OSError, ValueError) as error:
        log.error("cannot read the transfer list %s: %s", args.file or "(stdin)", error)
        return 2
    ours, theirs = split(entries)
    status = run_stock(theirs, ["--threads", str(args.threads), *options]) if theirs else 0
    if ours:
        status = run_bridge(ours, args.threads) or status
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
