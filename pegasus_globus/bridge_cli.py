"""``pegasus-globus-transfer``: pegasus-transfer, plus go:// <-> file:// transfers.

Pegasus has no handler plug-in: pegasus-transfer maps protocol pairs to built-in handlers, and
a go:// replica meant for a plain directory fails with "Unable to find handlers for 'go' to
'file' transfers". This command takes pegasus-transfer's place (the transformation catalog's
pegasus::transfer entry): it moves the go<->file pairs itself, through the collections'
HTTPS servers, and hands every other entry, with the same options, to the stock
pegasus-transfer ($PEGASUS_HOME/bin, else PATH). Exit 0 only when both parts succeeded.

Integrity: an entry's generate_checksum and verify_checksum_remote are honoured with Pegasus'
own pegasus-integrity, go:// destinations pulled back over HTTPS to be checked, go->go ones too
(the stock tool moves those but cannot check them).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import multipart
from .transfer.integrity import IntegrityChecks, pegasus_tool, wants

PROG = "pegasus-globus-transfer"
log = logging.getLogger("pegasus_globus")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[1].replace("\n", " "),
        epilog="Every option other than --file goes to the stock pegasus-transfer unchanged. "
        "generate_checksum and verify_checksum_remote are honoured with pegasus-integrity; "
        "go:// destinations, go->go ones included, are pulled back over HTTPS and checked. "
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


@dataclass(frozen=True)
class Move:
    """A go<->file entry for the bridge, or a go->go one whose arrival the bridge checks."""

    direction: str  # "download" | "upload" | "check" (go->go, moved by the stock tool)
    url: str  # the go:// end
    local: str  # the file:// end's path ("" for "check")
    lfn: str = ""
    generate_checksum: bool = False
    verify_checksum_remote: bool = False
    source: tuple[str, str] = ("", "")  # (site label, URL) as the entry gave them
    target: tuple[str, str] = ("", "")


def check_shape(entries: list[Any]) -> None:
    """Raise ValueError naming the first entry that is not what pegasus-transfer writes: an
    object, and for a transfer, ``src_urls`` and ``dest_urls`` lists of objects with a
    string ``url``."""
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise ValueError(f"entry {number} is not an object: {json.dumps(entry)[:80]}")
        if entry.get("type") != "transfer":
            continue
        for key in ("src_urls", "dest_urls"):
            urls = entry.get(key)
            if not isinstance(urls, list) or not all(
                    isinstance(u, dict) and isinstance(u.get("url"), str) for u in urls):
                raise ValueError(f"entry {number} ({entry.get('lfn', 'no lfn')}): {key} must "
                                 "be a list of objects with a string url")


def split(entries: list[dict[str, Any]]) -> tuple[list[Move], list[dict[str, Any]]]:
    """(the bridge's moves, the entries for the stock pegasus-transfer). A go->go entry with
    ``verify_checksum_remote`` goes to the stock tool without it, and the bridge checks it after
    (the stock tool would skip the check: it cannot pull a go:// file back)."""
    ours, theirs = [], []
    for entry in entries:
        move = _bridge_move(entry) if entry.get("type") == "transfer" else None
        if move is None:
            theirs.append(entry)
            continue
        ours.append(move)
        if move.direction == "check":
            theirs.append({k: v for k, v in entry.items() if k != "verify_checksum_remote"})
    return ours, theirs


def _bridge_move(entry: dict[str, Any]) -> Move | None:
    sources = [u["url"] for u in entry.get("src_urls") or []]
    targets = [u["url"] for u in entry.get("dest_urls") or []]
    checks: dict[str, Any] = {"lfn": str(entry.get("lfn") or ""),
                              "generate_checksum": wants(entry, "generate_checksum"),
                              "verify_checksum_remote": wants(entry, "verify_checksum_remote")}
    go_source = next((u for u in sources if u.startswith("go://")), None)
    file_target = next((u for u in targets if u.startswith("file:")), None)
    file_source = next((u for u in sources if u.startswith("file:")), None)
    go_target = next((u for u in targets if u.startswith("go://")), None)
    labels = {u["url"]: u.get("site_label", "") for u in
              [*(entry.get("src_urls") or []), *(entry.get("dest_urls") or [])]}

    def ends(source: str, target: str) -> dict[str, Any]:
        return {**checks, "source": (labels[source], source), "target": (labels[target], target)}
    if go_source and file_target and not any(u.startswith("go://") for u in targets):
        return Move("download", go_source, _local(file_target), **ends(go_source, file_target))
    if file_source and go_target and not any(u.startswith("go://") for u in sources):
        return Move("upload", go_target, _local(file_source), **ends(file_source, go_target))
    if go_source and go_target and checks["verify_checksum_remote"]:
        return Move("check", go_target, "", **checks)
    return None


def _local(url: str) -> str:
    """The path of a file:// URL read as the stock pegasus-transfer reads it (``PegasusURL``):
    ``file:``, ``file://`` or ``file://localhost`` taken off, no percent-decoding (so
    ``file://relative/a`` is relative to the working directory), ``$VAR`` and ``${VAR}``
    expanded, unknown ones to nothing. ``$PWD`` is the working directory itself, as
    PegasusLite means it in ``file://$PWD/...``, whatever ``$PWD`` was inherited."""
    path = re.sub(r"^file:(//(localhost)?)?", "", url)
    for form in ("${PWD}", "$PWD"):
        path = path.replace(form, os.getcwd())
    return re.sub(r"\${?([a-zA-Z][a-zA-Z0-9_]+)}?",
                  lambda match: os.environ.get(match.group(1), ""), path)


def run_stock(entries: list[dict[str, Any]], options: list[str]) -> int:
    stock = pegasus_tool("pegasus-transfer")
    if stock is None:
        log.error("no stock pegasus-transfer for %d other transfer(s): set PEGASUS_HOME or put "
                  "Pegasus' bin on PATH", len(entries))
        return 1
    env, private = dict(os.environ), None
    directory = env.get("PEGASUS_MULTIPART_DIR")
    if directory and os.path.isdir(directory):  # its <seconds>-transfer must not replace ours
        private = env["PEGASUS_MULTIPART_DIR"] = tempfile.mkdtemp(dir=directory, prefix=".stock-")
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="pegasus-transfer-") as spec:
            json.dump(entries, spec)
            spec.flush()
            return _run_forwarding([stock, *options, "--file", spec.name], env)
    finally:
        if private:
            multipart.adopt(private, directory)


def _run_forwarding(command: list[str], env: dict[str, str]) -> int:
    """Run ``command``; SIGTERM, SIGINT and SIGHUP sent to us go to it, and once it has ended
    (and the caller cleaned up) we end by the same signal, so neither the child nor its spec
    file outlives a kill."""
    received: list[int] = []
    children: list[subprocess.Popen] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    kills = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {signum: signal.signal(signum, forward) for signum in kills}
    try:
        children.append(subprocess.Popen(command, env=env))
        for signum in received:  # came while it was starting
            children[0].send_signal(signum)
        status = children[0].wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        atexit.register(_die_of, received[0])  # after the callers' clean-up has run
        raise SystemExit(128 + received[0])
    return status


def _die_of(signum: int) -> None:
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def run_bridge(moves: list[Move], threads: int = 4) -> int:
    """The moves, ``threads`` at a time, each followed by the integrity checks it asks for;
    one line per failure; 0 when all succeeded."""
    import globus_sdk  # only when there is go:// work

    from .scopes import TRANSFER_RS, init_command
    from .token_store import TokenStore, TokenStoreError
    from .transfer.bridge import HttpsBridge, NoHttpsAccess
    from .transfer.operations import GlobusTransfers, announced_retries
    from .transfer.urls import parse_go_url

    jobs, failed = [], 0
    for move in moves:
        try:
            jobs.append((move, parse_go_url(move.url)))
        except ValueError as error:
            failed += 1
            log.error("%s", error)
    collections = sorted({location.collection for _, location in jobs})
    try:  # the store's authorizer: it refreshes and saves by the store's one rule
        store = TokenStore()
        client = globus_sdk.TransferClient(
            authorizer=store.authorizer(TRANSFER_RS, fix=init_command(collections)),
            retry_config=announced_retries("Globus Transfer"))
        bridge = HttpsBridge(GlobusTransfers(client), store)
    except TokenStoreError as error:
        log.error("%s", error)
        return 1
    checks = IntegrityChecks()
    started: dict[int, float] = {}
    finished: dict[int, float] = {}  # the end of a move's last step, for its attempt
    sent: dict[int, int] = {}  # upload -> bytes, their sizes checked all at once

    def moved(index: int, move: Move, location: Any) -> str | None:
        """The move itself and the checksum it asks to record; an error line or None."""
        started[index] = time.time()
        local = Path(move.local)
        if move.direction == "download":
            size = bridge.download(location, local)
            log.info("download %s -> %s: %d bytes", location, local, size)
        elif move.direction == "upload":
            sent[index] = bridge.upload(local, location, check=False)
        if move.generate_checksum and move.direction != "check":
            error = checks.generate(move.lfn, local)
            if error:
                return f"{local}: cannot record its checksum: {error}"
        return None

    def verified(index: int, move: Move, location: Any) -> str | None:
        """The remote checksum check the move asks for; an error line or None."""
        if not move.verify_checksum_remote:
            return None
        if move.direction == "download":
            return checks.verify(move.lfn, Path(move.local), str(location))
        with tempfile.TemporaryDirectory(prefix="pegasus-globus-check-") as scratch:
            pulled_back = Path(scratch) / "data"
            try:
                bridge.download(location, pulled_back)  # the file as it arrived
            except NoHttpsAccess as error:
                if move.direction == "upload":
                    raise
                log.warning("%s; so %s is not checked against its sha256 (the stock "
                            "pegasus-transfer does not check go:// destinations either)",
                            error.summary, location)
                return None
            return checks.verify(move.lfn, pulled_back, str(location))

    indexed = [(index, move, location) for index, (move, location) in enumerate(jobs)]
    errors = {job[0]: error
              for job, error in bridge.run(indexed, threads, _guarded(moved, finished))}
    # the uploads' sizes against the collections' listings, one per directory, once all
    # landed: a stat per file cost as much as its upload
    uploads = [index for index in sent if errors[index] is None]
    try:
        checked = [failure and failure.summary for failure in bridge.check_uploads(
            [(jobs[index][1], sent[index]) for index in uploads])]
    except Exception as failure:  # outside the moves' guard, it is each upload's failure
        checked = [f"{jobs[index][1]}: its size cannot be checked after the upload: "
                   f"{_reason(failure)}" for index in uploads]
    for index, error in zip(uploads, checked):
        finished[index] = time.time()
        if error:
            errors[index] = error
        else:
            log.info("upload %s <- %s: %d bytes", jobs[index][1], jobs[index][0].local,
                     sent[index])
    errors.update((job[0], error) for job, error in bridge.run(
        [job for job in indexed if errors[job[0]] is None], threads,
        _guarded(verified, finished)))
    attempts = [transfer_attempt(move, started[index], finished[index], errors[index] is None)
                for index, move, _ in indexed if move.direction != "check"]
    for index, _, _ in indexed:
        if errors[index]:
            failed += 1
            log.error("%s", errors[index])
    write_multipart(attempts)
    return 1 if failed else 0


def _guarded(step: Any, finished: dict[int, float]) -> Any:
    """``step``, its exception turned into its one line, as a result; when it ended goes in
    ``finished``."""
    def guarded(index: int, move: Move, location: Any) -> str | None:
        try:
            return step(index, move, location)
        except Exception as failure:
            return getattr(failure, "summary", None) or f"{move.url}: {_reason(failure)}"
        finally:
            finished[index] = time.time()
    return guarded


def _reason(failure: Exception) -> str:
    """An exception's one line: a TransferFailed's summary; for a Globus refusal its status
    and code (its str is a tuple of the request's parts)."""
    import globus_sdk

    if isinstance(failure, globus_sdk.GlobusAPIError):
        body = failure.raw_json if isinstance(failure.raw_json, dict) else {}
        code = failure.code or body.get("error") or ""  # OAuth errors: {"error": ...}
        return f"Globus refused a call ({failure.http_status} {code})".replace(" )", ")")
    return getattr(failure, "summary", None) or str(failure)


def transfer_attempt(move: Move, started: float, ended: float, success: bool) -> str:
    """One entry of pegasus-transfer's ``transfer_attempts``, as the stock tool writes it."""
    (src_label, src_url), (dst_label, dst_url) = (
        (label, f"file://{move.local}" if url.startswith("file:") else url)  # $PWD expanded
        for label, url in (move.source, move.target))
    fields = [("src_url", json.dumps(src_url)), ("src_label", json.dumps(src_label)),
              ("dst_url", json.dumps(dst_url)), ("dst_label", json.dumps(dst_label)),
              ("success", str(success)), ("start", f"{started:.0f}"),
              ("duration", f"{ended - started:.1f}")]
    if move.lfn:
        fields.append(("lfn", json.dumps(move.lfn)))
    with contextlib.suppress(OSError):
        if success:
            fields.append(("bytes", str(Path(move.local).stat().st_size)))
    return "".join(f"{'  - ' if i == 0 else '    '}{key}: {value}\n"
                   for i, (key, value) in enumerate(fields))


def write_multipart(attempts: list[str]) -> None:
    """The bridge's attempts into ``$PEGASUS_MULTIPART_DIR`` (PegasusLite puts that directory's
    files in the job's record; monitord merges them with the stock tool's ``transfer_attempts``,
    which it writes as ``<time>-transfer``)."""
    directory = os.environ.get("PEGASUS_MULTIPART_DIR")
    if not directory or not attempts:
        return
    try:
        multipart.publish(directory, "transfer-globus-https",
                          "- transfer_attempts:\n" + "".join(attempts))
    except OSError as error:
        log.error("cannot write the transfer statistics to $PEGASUS_MULTIPART_DIR: %s", error)


def main(argv: list[str] | None = None) -> int:
    args, options = _parser().parse_known_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)7s:  %(message)s", level=logging.INFO)
    try:
        text = Path(args.file).read_text() if args.file else sys.stdin.read()
        entries = json.loads(text)
        if not isinstance(entries, list):
            raise ValueError("the input must be a JSON list of transfers")
        check_shape(entries)
    except (OSError, ValueError) as error:
        log.error("cannot read the transfer list %s: %s", args.file or "(stdin)", error)
        return 2
    ours, theirs = split(entries)
    status = run_stock(theirs, ["--threads", str(args.threads), *options]) if theirs else 0
    if status:  # the go->go moves whose arrival the bridge would check did not all happen
        ours = [move for move in ours if move.direction != "check"]
    if ours:
        status = run_bridge(ours, args.threads) or status
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
