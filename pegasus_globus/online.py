"""``pegasus-globus-online``: the Globus handler stock ``pegasus-transfer`` runs for go:// URLs.

Same command line and JSON spec as Pegasus 5.1's tool; exit 0 only when every item of the
batch succeeded, otherwise one line per failure on stderr and a non-zero exit, after which
pegasus-transfer retries.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import signal
import sys
import time
from types import FrameType
from typing import Any, Iterator

from .scopes import init_command
from .transfer.operations import GlobusTransfers, announced_retries
from .transfer.options import VARIABLES, OptionError, TransferOptions
from .transfer.spec import Credentials, Spec, SpecError, load_spec
from .transfer.watch import TransferFailed

PROG = "pegasus-globus-online"
log = logging.getLogger("pegasus_globus")


class Interrupted(BaseException):  # like KeyboardInterrupt: no "except Exception" swallows it
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)


class _Signals:
    """SIGTERM/SIGINT end the run, except while a task is being submitted: then the signal
    waits until the task's id is known, so the task can be cancelled rather than orphaned."""

    def __init__(self) -> None:
        self._holding = False
        self._pending: int | None = None
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._holding:
            self._pending = signum
            return
        raise Interrupted(signum)

    def absorb(self) -> None:
        """From now on a signal only waits: the run is ending and cancels its task, which a
        second SIGTERM (HTCondor, a user's impatience) must not cut short."""
        self._holding = True

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
            if self._pending is not None:
                raise Interrupted(self._pending)


class _Redact(logging.Filter):
    """Defence in depth: no token reaches the log, whatever a message carries."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 8]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for secret in self.secrets:
            message = message.replace(secret, "***")
        record.msg, record.args = message, None
        return True


def _parser() -> argparse.ArgumentParser:
    variables = ", ".join(VARIABLES)
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Globus transfer handler for pegasus-transfer: runs the transfer, mkdir or "
        "remove described by a JSON spec as one Globus task and exits 0 only if every item "
        "succeeded.",
        epilog=f"Transfer options come from the environment (Pegasus env profiles): {variables}. "
        "Refreshed tokens are written back to the token file (PEGASUS_GLOBUS_CONFIG, else "
        "~/.pegasus/globus.conf). Exit status: 0 success, 1 failure, 2 bad spec or option.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    for name in ("transfer", "mkdir", "remove"):
        mode.add_argument(f"--{name}", dest="mode", action="store_const", const=name,
                          help=f"{name} as described by the spec")
    parser.add_argument("--file", required=True, metavar="SPEC",
                        help="the JSON spec pegasus-transfer wrote")
    parser.add_argument("--debug", action="store_true",
                        help="log more (tokens are never logged)")
    return parser


def _configure_logging(debug: bool, secrets: list[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)7s:  %(message)s"))
    handler.addFilter(_Redact(secrets))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False


def transfer_client(credentials: Credentials) -> Any:
    """A TransferClient on the spec's tokens, saving refreshed tokens to the token store."""
    import globus_sdk

    if credentials.refresh_token is None:
        if credentials.expires_at and credentials.expires_at < time.time():
            raise TransferFailed("the Globus access token in the spec has expired and cannot be "
                                 f"refreshed: run {init_command()}")
        authorizer = globus_sdk.AccessTokenAuthorizer(credentials.access_token)
    else:
        from .lazy_refresh import LazyRefreshAuthorizer

        known_expiry = credentials.expires_at > 0  # without one, globus-sdk refreshes at once
        authorizer = LazyRefreshAuthorizer(
            credentials.refresh_token, credentials.client_id,
            access_token=credentials.access_token if known_expiry else None,
            expires_at=credentials.expires_at if known_expiry else None,
            on_refresh=lambda response: _write_back(credentials, response))
    return globus_sdk.TransferClient(authorizer=authorizer,
                                     retry_config=announced_retries("Globus Transfer"))


def _write_back(credentials: Credentials, response: Any) -> None:
    """Save refreshed tokens by the token store's one rule (not over a newer login)."""
    from .token_store import TokenStore, TokenStoreError  # only on a refresh

    try:
        store = TokenStore()
        if store.save_refreshed(response, credentials.refresh_token or ""):
            log.debug("refreshed Globus token saved to %s", store.path)
        else:
            log.debug("token file holds another login; refreshed token not saved")
    except TokenStoreError as error:  # the transfer goes on with the fresh token
        log.warning("could not save the refreshed token: %s", error)


def run(spec: Spec, transfers: GlobusTransfers) -> str:
    started = time.monotonic()
    if spec.mode == "mkdir":
        created = transfers.mkdir(spec.endpoint, spec.files)
        return f"mkdir complete: {created} directories created on {spec.endpoint}"
    if spec.mode == "remove":
        outcome = transfers.remove(spec.endpoint, spec.files, spec.recursive)
        return f"remove complete: task {outcome.task_id}, {len(spec.files)} path(s)"
    outcome = transfers.transfer(spec.source, spec.destination,
                                 [(f["src"], f["dst"]) for f in spec.files])
    task = outcome.document
    return (f"transfer complete: task {outcome.task_id}, {task.get('files_transferred', 0)} "
            f"files, {task.get('bytes_transferred', 0)} bytes, "
            f"{time.monotonic() - started:.1f} s")


def main(argv: list[str] | None = None) -> int:
    status = _main(argv)
    # the run is over: the interpreter's exit would go through every object globus-sdk and
    # requests made for a cycle to collect (90 ms, a quarter of a small file's whole run);
    # none holds anything to finish (the token file is written, the log flushed per line)
    gc.freeze()
    return status


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(args.debug, [])
    transfers: GlobusTransfers | None = None
    signals = _Signals()
    try:
        spec = load_spec(args.file, args.mode)
        _configure_logging(args.debug, spec.credentials.secrets())
        options = TransferOptions.from_environment()
        log.debug("%s with %d item(s); options %s", spec.mode, len(spec.files), options)
        transfers = GlobusTransfers(transfer_client(spec.credentials), options,
                                    submitting=signals.held)
        log.info(run(spec, transfers))
        return 0
    except (SpecError, OptionError) as error:
        log.error("%s", error)
        return 2
    except TransferFailed as failure:
        for reason in failure.reasons:
            log.error("%s", reason)
        log.error("%s", failure.summary)
        return 1
    except Interrupted as signal_name:
        signals.absorb()
        cancelled = transfers is not None and transfers.cancel_current()
        log.error("interrupted by %s%s", signal_name,
                  "; the Globus task was cancelled" if cancelled else "")
        return 1
    except Exception as error:  # one redacted line, never a traceback that could hold a token
        log.error("unexpected %s: %s", error.__class__.__name__, " ".join(str(error).split()))
        return 1


if __name__ == "__main__":
    sys.exit(main())
