"""What every ``pegasus-globus-timer`` command shares: the user's tokens, the Timers client
built from them, and Globus' failures turned into one line that says what to run next."""

from __future__ import annotations

import argparse
from typing import Any, Callable

from ..scopes import TIMERS_RS, init_command
from ..token_store import TokenStore


class CommandError(Exception):
    """A one-line error for the user; ``status`` is the exit code."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class Context:
    """The token store and the clients built from it, made when a command first needs them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.store = TokenStore(getattr(args, "config", None))

    def timers(self) -> Any:
        import globus_sdk

        fix = init_command(timers=True)
        return globus_sdk.TimersClient(authorizer=self.store.authorizer(TIMERS_RS, fix=fix))


def api_errors(call: Callable[[], Any]) -> Any:
    """Run an SDK call; turn its failures into one line that says what to do."""
    import globus_sdk

    try:
        return call()
    except globus_sdk.GlobusAPIError as error:
        if error.http_status == 401:
            raise CommandError("Globus rejected the Timers token: run "
                               f"{init_command(timers=True)}") from None
        if error.http_status == 403:
            raise CommandError(f"Globus refused ({error.code}): run "
                               f"{init_command(timers=True)}") from None
        if error.http_status == 404:
            raise CommandError("no such timer: see pegasus-globus-timer job list") from None
        detail = " ".join(str(error.message).split())
        raise CommandError(f"Globus Timers refused ({error.http_status} {error.code}): "
                           f"{detail}") from None
    except globus_sdk.NetworkError as error:
        raise CommandError(f"cannot reach Globus Timers ({error.__class__.__name__}): "
                           "check the network, or GLOBUS_SDK_SERVICE_URL_TIMER") from None
