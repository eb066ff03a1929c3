"""``pegasus-globus-timer``: the Globus Timer CLI's commands, on today's Globus Timers."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any, Callable

from ..scopes import AUTH_RS, init_command
from ..token_store import NotLoggedIn, TokenStoreError
from . import display
from .schedule import (
    MAX_LABEL,
    MAX_NAME,
    check_path,
    check_text,
    end_condition,
    parse_bool,
    parse_datetime,
    parse_interval,
    parse_sync_level,
    read_items_file,
    shell_expanded_home,
    utc_iso,
)
from .service import CommandError, Context, api_errors
from .shape import one_line
from .workflow import PlanError

PROG = "pegasus-globus-timer"


def output_format(args: argparse.Namespace) -> str:
    return "json" if args.format == "json" or getattr(args, "verbose", False) else "text"


# -- job commands --------------------------------------------------------------------------

def job_transfer(ctx: Context, args: argparse.Namespace) -> None:
    import globus_sdk

    check_text(args.name, "--name", MAX_NAME)  # one line, never the text itself
    if args.label is not None:
        check_text(args.label, "--label", MAX_LABEL)
    items = [_item(values) for values in args.item or []]
    if args.items_file:
        items += read_items_file(args.items_file)
    if not items:
        raise CommandError("no items: give --item SRC DST RECURSIVE or --items-file FILE", 2)
    for source, destination, _ in items:
        for path in (source, destination):
            warning = shell_expanded_home(path)
            if warning:
                print(f"{PROG}: {warning}", file=sys.stderr)
    start = parse_datetime(args.start) if args.start else None
    stop = parse_datetime(args.stop_after_date) if args.stop_after_date else None
    first = start or dt.datetime.now(dt.timezone.utc)
    if stop is not None and stop < first:
        raise CommandError(f"--stop-after-date {args.stop_after_date} is before the first run "
                           f"({first.isoformat(timespec='seconds')}): the timer would never "
                           "run; give a later date", 2)
    end = end_condition(args.interval, start, args.stop_after_runs, stop)
    data = globus_sdk.TransferData(
        args.source_endpoint, args.dest_endpoint,
        label=args.label or f"Job from Timer service named {args.name}"[:MAX_LABEL],
        sync_level=args.sync_level or globus_sdk.MISSING,
        verify_checksum=args.verify_checksum, encrypt_data=args.encrypt_data,
        preserve_timestamp=args.preserve_timestamp, skip_source_errors=args.skip_source_errors,
        fail_on_quota_errors=args.fail_on_quota_errors)
    for source, destination, recursive in items:
        data.add_item(source, destination, recursive=recursive)
    schedule = globus_sdk.RecurringTimerSchedule(
        args.interval, start=utc_iso(start) if start else globus_sdk.MISSING,
        end=end or globus_sdk.MISSING)
    timer = globus_sdk.TransferTimer(name=args.name, schedule=schedule, body=data)
    created = api_errors(lambda: ctx.timers().create_timer(timer))["timer"]
    display.show(created, output_format(args), display.summary)


def job_status(ctx: Context, args: argparse.Namespace) -> None:
    job = api_errors(lambda: ctx.timers().get_job(args.job_id)).data
    if job.get("status") == "deleted" and not args.show_deleted:
        raise CommandError(f"timer {args.job_id} was deleted: add --show-deleted to see it")
    display.show(job, output_format(args), display.summary)


def job_list(ctx: Context, args: argparse.Namespace) -> None:
    statuses = ["new", "loaded", "updated", "inactive", "delete_pending"]
    if args.show_deleted:
        statuses.append("deleted")
    jobs = api_errors(lambda: ctx.timers().list_jobs(
        query_params={"filter_status": ",".join(statuses)}))["jobs"]
    display.show(jobs, output_format(args), display.table)


def job_delete(ctx: Context, args: argparse.Namespace) -> None:
    client = ctx.timers()
    deleted = [api_errors(lambda j=job_id: client.delete_job(j)).data for job_id in args.job_ids]
    display.show(deleted, output_format(args),
                 lambda jobs: "\n\n".join(display.summary(job) for job in jobs))


def job_pause(ctx: Context, args: argparse.Namespace) -> None:
    client = ctx.timers()
    api_errors(lambda: client.pause_job(args.job_id))
    display.show(client.get_job(args.job_id).data, output_format(args), display.summary)


def job_resume(ctx: Context, args: argparse.Namespace) -> None:
    """Resume; after an auth-requirements stop, with the credentials just consented."""
    client = ctx.timers()
    job = api_errors(lambda: client.get_job(args.job_id)).data
    update = display.needs_consent(job) is not None
    api_errors(lambda: client.resume_job(args.job_id, update_credentials=update or None))
    display.show(client.get_job(args.job_id).data, output_format(args), display.summary)


# -- session commands ------------------------------------------------------------------------

def session_whoami(ctx: Context, args: argparse.Namespace) -> None:
    import globus_sdk

    meta = ctx.store.meta()
    identity = {"username": meta.get("username") or None, "config": str(ctx.store.path)}
    if ctx.store.token(AUTH_RS) is not None:
        client = globus_sdk.AuthClient(authorizer=ctx.store.authorizer(AUTH_RS))
        info = api_errors(client.userinfo)
        identity.update(username=info.get("preferred_username"), identity_id=info.get("sub"),
                        name=info.get("name"))
    if not identity["username"]:
        raise CommandError(f"not logged in: run {init_command(timers=True)}")
    display.show(identity, args.format, lambda i: f"{i['username']}"
                 + (f" ({i['identity_id']})" if i.get("identity_id") else ""))


def session_logout(ctx: Context, args: argparse.Namespace, revoke: bool = False) -> None:
    from ..online_init import logout

    logout(ctx.store, revoke)


def session_revoke(ctx: Context, args: argparse.Namespace) -> None:
    session_logout(ctx, args, revoke=True)


# -- the parser ------------------------------------------------------------------------------

def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _typed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    convert.__name__ = parse.__name__
    return convert


def _item(values: list[str]) -> tuple[str, str, bool]:
    return (check_path(values[0], "SRC"), check_path(values[1], "DST"),
            parse_bool(values[2], "RECURSIVE"))


def _parser() -> argparse.ArgumentParser:
    from .registration import add_register_commands

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Schedules recurring Globus transfers with Globus Timers: the Globus Timer "
        "CLI's job and session commands, and timers registered from Pegasus workflow metadata.",
        epilog="Tokens come from pegasus-globus-online-init --permanent --timers. Times are "
        "printed in UTC. Exit status: 0 done, 1 Globus refused or failed, 2 bad input.")
    parser.add_argument("--config", metavar="PATH", help="token file (default: "
                        "$PEGASUS_GLOBUS_CONFIG, else ~/.pegasus/globus.conf)")
    groups = parser.add_subparsers(dest="group", metavar="{job,session,register,unregister}",
                                   required=True)

    def command(group: Any, name: str, handler: Callable[..., None], help: str,
                ) -> argparse.ArgumentParser:
        sub = group.add_parser(name, help=help, description=help)
        sub.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                         help="token file (also accepted before the command)")
        sub.add_argument("--format", choices=("text", "json"), default="text",
                         help="output format (default: text)")
        sub.set_defaults(handler=handler)
        return sub

    job = groups.add_parser("job", help="schedule and manage recurring transfers")
    jobs = job.add_subparsers(dest="command", required=True)
    transfer = command(jobs, "transfer", job_transfer, "schedule a recurring transfer")
    transfer.add_argument("--name", required=True,
                          help=f"a name for the timer, up to {MAX_NAME} characters")
    transfer.add_argument("--label", help=f"label of the Transfer tasks, up to {MAX_LABEL} "
                          "characters (default: 'Job from Timer service named NAME', cut to "
                          "that length)")
    transfer.add_argument("--interval", required=True, type=_typed(parse_interval),
                          help="seconds between runs, or 1d, 8h, 1h30m, 2w (at least 60 s)")
    transfer.add_argument("--start", type=_typed(lambda t: (parse_datetime(t), t)[1]),
                          help="first run: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[+zone]; without a "
                          "zone, local time (default: now)")
    transfer.add_argument("--source-endpoint", required=True, type=_typed(_uuid),
                          metavar="UUID", help="source collection")
    transfer.add_argument("--dest-endpoint", required=True, type=_typed(_uuid),
                          metavar="UUID", help="destination collection")
    transfer.add_argument("--item", nargs=3, action="append", metavar=("SRC", "DST", "RECURSIVE"),
                          type=str, help="a path to transfer (repeatable); RECURSIVE is true or "
                          "false")
    transfer.add_argument("--items-file", metavar="FILE", help="CSV lines 'src, dst, "
                          "true|false'; # starts a comment")
    transfer.add_argument("--sync-level", type=_typed(parse_sync_level),
                          help="skip files already there: exists, size, mtime or checksum")
    for flag, text in (("verify-checksum", "verify checksums after copying"),
                       ("encrypt-data", "encrypt the data channel"),
                       ("preserve-timestamp", "keep modification times"),
                       ("skip-source-errors", "skip source paths that fail"),
                       ("fail-on-quota-errors", "fail when a quota is exceeded")):
        transfer.add_argument(f"--{flag}", action="store_true", help=text)
    transfer.add_argument("--stop-after-runs", type=_positive, metavar="N",
                          help="stop after N runs")
    transfer.add_argument("--stop-after-date", type=_typed(lambda t: (parse_datetime(t), t)[1]),
                          metavar="DATE", help="stop running after this date-time (with "
                          "--stop-after-runs: whichever comes first)")
    transfer.add_argument("-v", "--verbose", action="store_true", help="print the full JSON")
    for name, handler, text in (("status", job_status, "show a timer"),
                                ("pause", job_pause, "pause a timer"),
                                ("resume", job_resume, "resume a paused or auth-stopped timer")):
        sub = command(jobs, name, handler, text)
        sub.add_argument("job_id", metavar="JOB_ID")
        sub.add_argument("-v", "--verbose", action="store_true", help="print the full JSON")
        sub.add_argument("--show-deleted", action="store_true", help="show a deleted timer")
    listing = command(jobs, "list", job_list, "list your timers")
    listing.add_argument("-v", "--verbose", action="store_true", help="print the full JSON")
    listing.add_argument("--show-deleted", action="store_true", help="include deleted timers")
    delete = command(jobs, "delete", job_delete, "delete timers")
    delete.add_argument("job_ids", nargs="+", metavar="JOB_ID")
    delete.add_argument("-v", "--verbose", action="store_true", help="print the full JSON")

    session = groups.add_parser("session", help="the Globus identity used")
    sessions = session.add_subparsers(dest="command", required=True)
    command(sessions, "whoami", session_whoami, "show the Globus identity in use")
    command(sessions, "logout", session_logout, "forget the stored tokens")
    command(sessions, "revoke", session_revoke, "revoke the tokens at Globus, then forget them")
    add_register_commands(groups, command)
    return parser


def _uuid(text: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ValueError(f"'{text}' is not a collection UUID") from None


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        args.handler(Context(args), args)
        return 0
    except CommandError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return error.status
    except TokenStoreError as error:  # not logged in: 1, as Globus refusing; damaged file: 2
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1 if isinstance(error, NotLoggedIn) else 2
    except PlanError as error:  # every problem, one line each, and nothing created
        for problem in error.problems:
            print(one_line(f"{PROG}: {problem}"), file=sys.stderr)
        return 2
    except ValueError as error:  # bad input found after parsing (items file, dates)
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
