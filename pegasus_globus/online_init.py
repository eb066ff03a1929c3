"""``pegasus-globus-online-init``: log in to Globus for Pegasus and keep the tokens."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import stat
import sys
import time
from typing import Any

from .scopes import AUTH_RS, TIMERS_RS, TRANSFER_RS, init_command, login_scopes
from .token_store import CLIENT_ID_ENV, DEFAULT_CLIENT_ID, StoredToken, TokenStore, TokenStoreError

PROG = "pegasus-globus-online-init"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Initializes OAuth tokens for Globus Online authentication: log in at "
        "Globus, paste the code shown there, and the tokens land in ~/.pegasus/globus.conf "
        "(mode 0600), where pegasus-transfer and this project's commands find them.",
        epilog="The authorization code is read from standard input, also from a pipe. "
        "Exit status: 0 done, 1 Globus refused or could not be reached, 2 bad input.",
    )
    parser.add_argument("-p", "--permanent", action="store_true",
                        help="request refresh tokens, usable until revoked (manage consents in "
                        "the Globus web app); without it tokens expire within about two days")
    parser.add_argument("-c", "--collections", nargs="+", default=[], metavar="UUID", type=_uuid,
                        help="also consent to data access on these collections")
    parser.add_argument("--https", nargs="+", default=[], metavar="UUID", type=_uuid,
                        help="consent to HTTPS access alone on these collections (guest and "
                        "high-assurance ones, which have no data access to consent to), for "
                        "pegasus-globus-transfer")
    parser.add_argument("-e", "--endpoints", nargs="+", default=[], metavar="UUID", type=_uuid,
                        help="also consent to managing collections on these endpoints")
    parser.add_argument("-d", "--domains", nargs="+", default=[], metavar="DOMAIN",
                        help="log in with an identity from one of these domains")
    parser.add_argument("--timers", action="store_true",
                        help="also consent to Globus Timers running transfers (and the "
                        "collections' data access) for recurring transfers")
    parser.add_argument("--client-id", default=None, metavar="ID",
                        help=f"Globus native-app client id (default: ${CLIENT_ID_ENV}, else "
                        f"Pegasus' {DEFAULT_CLIENT_ID})")
    parser.add_argument("--config", default=None, metavar="PATH",
                        help="token file (default: $PEGASUS_GLOBUS_CONFIG, else "
                        "~/.pegasus/globus.conf)")
    parser.add_argument("--no-browser", action="store_true",
                        help="print the login URL without opening a browser")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--status", action="store_true",
                        help="show who is logged in, what is consented, when tokens expire; "
                        "exit 1 when Transfer cannot be used")
    action.add_argument("--logout", action="store_true", help="remove the stored tokens")
    parser.add_argument("--revoke", action="store_true",
                        help="with --logout: revoke the tokens at Globus first")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="output of --status (default: text)")
    return parser


def _uuid(text: str) -> str:
    """A collection or endpoint id: Globus names them by UUID (see globus endpoint search)."""
    import uuid

    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a collection or endpoint UUID (find it on "
            "app.globus.org/collections, or with: globus endpoint search NAME)") from None


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.revoke and not args.logout:
        parser.error("--revoke only goes with --logout")
    try:
        store = TokenStore(args.config)
        if args.status:
            return show_status(store, args.format)
        if args.logout:
            return logout(store, args.revoke)
        return login(store, args)
    except TokenStoreError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    except LoginFailed as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1


class LoginFailed(Exception):
    """Globus refused or could not be reached; the message says what to do."""


def _globus_call(what: str, call: Any) -> Any:
    import globus_sdk

    try:
        return call()
    except globus_sdk.GlobusAPIError as error:
        raise LoginFailed(f"Globus Auth refused {what} ({error.http_status} {error.code}): "
                          f"run {PROG} again and paste the code shown after that login") from None
    except globus_sdk.NetworkError as error:
        url = os.environ.get("GLOBUS_SDK_SERVICE_URL_AUTH", "https://auth.globus.org/")
        raise LoginFailed(f"cannot reach Globus Auth at {url} ({error.__class__.__name__}): "
                          "check the network, or GLOBUS_SDK_SERVICE_URL_AUTH") from None


def login(store: TokenStore, args: argparse.Namespace) -> int:
    import globus_sdk

    store.read()  # a damaged file is reported before the user spends a login on it
    client_id = args.client_id or os.environ.get(CLIENT_ID_ENV) or DEFAULT_CLIENT_ID
    client = globus_sdk.NativeAppAuthClient(client_id)
    client.oauth2_start_flow(
        requested_scopes=login_scopes(args.collections, args.endpoints, args.timers,
                                      args.https),
        refresh_tokens=args.permanent)
    url = client.oauth2_get_authorize_url(
        session_required_single_domain=args.domains or globus_sdk.MISSING, prompt="login")
    print(f"Please go to this URL and login:\n\n    {url}\n", flush=True)
    if not args.no_browser:
        _open_browser(url)
    print("Please enter the code you get after login here: ", end="", file=sys.stderr,
          flush=True)
    try:
        answer = sys.stdin.buffer.readline().strip()
    except KeyboardInterrupt:
        print(file=sys.stderr)
        raise LoginFailed("login cancelled; nothing was saved") from None
    if not answer:
        raise LoginFailed(f"no authorization code was given: run {PROG} again and paste the "
                          "code shown after logging in")
    if not answer.isascii() or not answer.decode().isprintable():
        raise LoginFailed(f"that is not an authorization code (codes are plain letters and "
                          f"digits): run {PROG} again and paste the code shown after logging in")
    code = answer.decode()
    response = _globus_call("the authorization code",
                            lambda: client.oauth2_exchange_code_for_tokens(code))
    tokens = StoredToken.from_response(response)
    username = _username(tokens)
    store.save_tokens(tokens, client_id=client_id, meta={
        "username": username or "", "collections": " ".join(args.collections),
        "https": " ".join(args.https),
        "timers": "yes" if args.timers else "no", "refreshable": "yes" if args.permanent else "no",
        "logged_in_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    transfer = next(t for t in tokens if t.resource_server == TRANSFER_RS)
    lifetime = ("refreshable until revoked" if transfer.refreshable
                else f"valid until {_when(transfer.expires_at)}, not refreshable")
    print(f"Logged in{' as ' + username if username else ''}. Tokens saved to {store.path} "
          f"({lifetime}).")
    return 0


def _open_browser(url: str) -> None:
    # only where a graphical browser can be: a text browser would take over the terminal
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
            or sys.platform in ("darwin", "win32")):
        return
    import webbrowser

    with contextlib.suppress(webbrowser.Error):  # the URL is printed: it can be opened by hand
        webbrowser.open(url)


def _username(tokens: list[StoredToken]) -> str | None:
    import globus_sdk

    auth = next((t for t in tokens if t.resource_server == AUTH_RS), None)
    if auth is None:
        return None
    try:
        client = globus_sdk.AuthClient(authorizer=globus_sdk.AccessTokenAuthorizer(
            auth.access_token))
        return str(client.userinfo()["preferred_username"])
    except (globus_sdk.GlobusError, KeyError):
        return None  # the login itself worked; only the name is unknown


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def status_report(store: TokenStore) -> dict[str, Any]:
    """What ``--status`` shows, as data: the same for text and JSON output."""
    parser = store.read()
    tokens = store.tokens(parser)
    meta = store.meta(parser)
    collections = meta.get("collections", "").split()
    report: dict[str, Any] = {
        "config": str(store.path), "exists": store.path.exists(), "mode": None,
        "identity": meta.get("username") or None, "client_id": store.client_id(parser),
        "collections": collections, "tokens": {}, "problems": [], "next_steps": [],
    }
    if store.path.exists():
        report["mode"] = f"{stat.S_IMODE(store.path.stat().st_mode):04o}"
    exposure = store.exposure()
    if exposure:
        report["problems"].append(exposure[0])
        report["next_steps"].append(exposure[1])
    fix = init_command(collections, timers=TIMERS_RS in tokens)
    for name, server in (("transfer", TRANSFER_RS), ("timers", TIMERS_RS)):
        token = tokens.get(server)
        if token is None:
            continue
        report["tokens"][name] = {
            "resource_server": server, "expires_at": _when(token.expires_at),
            "expires_in": int(token.expires_at - time.time()), "refreshable": token.refreshable,
            "usable": token.refreshable or not token.expired(),
            "scopes": token.scopes.split(),
        }
        if not report["tokens"][name]["usable"]:
            report["problems"].append(f"the {name} token expired at {_when(token.expires_at)} "
                                      "and cannot be refreshed")
            report["next_steps"].append(fix)
    if "transfer" not in report["tokens"]:
        report["problems"].append("not logged in: no Globus Transfer token")
        report["next_steps"].append(init_command())
    elif not report["tokens"]["transfer"]["refreshable"]:
        report["next_steps"].append(f"{fix} (refreshable tokens outlive long workflows)")
    if "timers" not in report["tokens"]:
        report["next_steps"].append(f"{init_command(collections, timers=True)} "
                                    "(for recurring transfers)")
    report["next_steps"] = list(dict.fromkeys(report["next_steps"]))
    report["ok"] = not report["problems"]
    return report


def show_status(store: TokenStore, output: str) -> int:
    report = status_report(store)
    if output == "json":
        print(json.dumps(report, indent=2))
        return 0 if report["ok"] else 1
    rows = [("Config", f"{report['config']}"
             + (f" (mode {report['mode']})" if report["exists"] else " (missing)")),
            ("Identity", report["identity"] or "unknown"), ("Client ID", report["client_id"])]
    for name in ("transfer", "timers"):
        token = report["tokens"].get(name)
        if token is None:
            rows.append((name.title(), "not consented"))
            continue
        left = token["expires_in"]
        state = (f"valid until {token['expires_at']} (in {left // 3600}h{left % 3600 // 60:02d}m)"
                 if left > 0 else f"expired at {token['expires_at']}")
        refresh = "refreshable" if token["refreshable"] else "not refreshable"
        rows.append((name.title(), f"{state}, {refresh}"))
    rows.append(("Collections", ", ".join(report["collections"]) or "none with data access"))
    width = max(len(key) for key, _ in rows) + 1
    for key, value in rows:
        print(f"{key + ':':<{width}} {value}")
    for problem in report["problems"]:
        print(f"Problem: {problem}")
    if report["next_steps"]:
        print("Next steps:")
        for step in report["next_steps"]:
            print(f"  {step}")
    return 0 if report["ok"] else 1


def logout(store: TokenStore, revoke: bool) -> int:
    tokens = list(store.tokens().values())
    if revoke and tokens:
        import globus_sdk

        client = globus_sdk.NativeAppAuthClient(store.client_id())
        for token in tokens:
            for value in filter(None, (token.refresh_token, token.access_token)):
                _globus_call("token revocation", lambda v=value: client.oauth2_revoke_token(v))
    removed = store.remove_tokens()
    what = "revoked and removed" if revoke else "removed"
    print(f"{len(removed)} token(s) {what} from {store.path}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
