"""``pegasus-globus-emulator``: serve the Globus emulator until interrupted."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from types import FrameType

from ..files import write_atomically
from .errors import ApiError
from .server import DEFAULT_TOKEN_LIFETIME, Emulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pegasus-globus-emulator",
        description="Serve Globus Auth, Transfer and Timers locally for rehearsals and tests. "
        "On start it prints the export lines that point globus-sdk at it, and with --env-file "
        "writes them to a file to source: "
        "pegasus-globus-emulator --root /tmp/g --env-file /tmp/g/env & "
        "while [ ! -e /tmp/g/env ]; do sleep 0.1; done; . /tmp/g/env",
    )
    parser.add_argument("--root", required=True,
                        help="directory for collections (ROOT/collections/<uuid>/) and state")
    parser.add_argument("--env-file", metavar="PATH",
                        help="once listening, write the export lines to PATH (complete or not at "
                        "all) for a shell to source; removed when the emulator stops")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0,
                        help="TCP port; 0 picks a free one (default)")
    parser.add_argument("--time-scale", type=float, default=1.0, metavar="X",
                        help="run the timers' clock X times faster than real time (default: 1)")
    parser.add_argument("--fault-rate", type=float, default=0.0, metavar="R",
                        help="answer this fraction of requests with 502/503 or a dropped "
                        "connection (default: 0)")
    parser.add_argument("--seed", type=int, help="seed for fault injection")
    parser.add_argument("--token-lifetime", type=float, default=DEFAULT_TOKEN_LIFETIME,
                        metavar="SECONDS", help="access token lifetime (default: %(default)s)")
    parser.add_argument("--bandwidth", type=float, default=0.0, metavar="BYTES_PER_S",
                        help="emulated transfer rate; 0 is unlimited (default)")
    parser.add_argument("--task-latency", type=float, default=0.0, metavar="SECONDS",
                        help="real seconds before a task starts, as a real service takes a "
                        "moment to pick one up (default: 0)")
    parser.add_argument("--collection", action="append", default=[], metavar="UUID=DIR",
                        help="serve collection UUID from the existing directory DIR, as Globus "
                        "Connect exposes a path (repeatable); other collections live under "
                        "ROOT/collections/")
    for flag in ("consent-required", "permission-denied", "inactive", "guest", "high-assurance",
                 "no-https"):
        parser.add_argument(f"--{flag}", action="append", default=[], metavar="UUID",
                            help=f"mark a collection as {flag.replace('-', ' ')} (repeatable)")
    return parser


def _mapping(text: str) -> tuple[str, str]:
    collection, equals, directory = text.partition("=")
    if not equals or not directory:
        raise ValueError(f"--collection {text!r}: give UUID=DIR, e.g. "
                         "--collection 6f2a4d2e-0a8e-4c4c-9a51-1c2b9f0e7a11=/scratch/run")
    return collection, directory


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        emulator = Emulator(args.root, host=args.host, port=args.port,
                            time_scale=args.time_scale, fault_rate=args.fault_rate,
                            seed=args.seed, token_lifetime=args.token_lifetime,
                            bandwidth=args.bandwidth, task_latency=args.task_latency,
                            collections=dict(_mapping(text) for text in args.collection))
        for flag in ("consent_required", "permission_denied", "inactive", "guest",
                     "high_assurance", "no_https"):
            for collection in getattr(args, flag):
                emulator.mark_collection(collection, **{flag: True})
    except (OSError, ValueError, ApiError) as error:
        print(f"pegasus-globus-emulator: {error}", file=sys.stderr)
        return 2

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return, so it must run in another thread
        threading.Thread(target=emulator.shutdown, daemon=True).start()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exports = "".join(f"export {name}={value}\n" for name, value in
                      {**emulator.environment, **emulator.tls_environment}.items())
    print(exports, end="", flush=True)
    if args.env_file:
        try:
            write_atomically(args.env_file, exports)
        except OSError as error:
            print(f"pegasus-globus-emulator: --env-file {args.env_file}: {error.strerror}",
                  file=sys.stderr)
            emulator.close()
            return 2
    print(f"Globus emulator serving {emulator.root} at {emulator.url} "
          f"(time scale {args.time_scale}); Ctrl-C stops it", file=sys.stderr)
    try:
        emulator.serve_forever()
    finally:
        emulator.close()
        if args.env_file:
            with contextlib.suppress(OSError):
                os.unlink(args.env_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
