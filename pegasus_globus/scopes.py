"""The scopes Pegasus asks Globus Auth for, and the login command that grants them."""

from __future__ import annotations

from typing import Iterable

TRANSFER_RS = "transfer.api.globus.org"
TIMERS_RS = "524230d7-ea86-4a52-8312-86065a9e0417"
AUTH_RS = "auth.globus.org"
TRANSFER_SCOPE = "urn:globus:auth:scope:transfer.api.globus.org:all"
TIMERS_SCOPE = f"https://auth.globus.org/scopes/{TIMERS_RS}/timer"
IDENTITY_SCOPES = ("openid", "profile", "email")
INIT_COMMAND = "pegasus-globus-online-init"
SERVICE_NAMES = {TRANSFER_RS: "Globus Transfer", TIMERS_RS: "Globus Timers",
                 AUTH_RS: "Globus Auth"}


def data_access(collection: str) -> str:
    return f"https://auth.globus.org/scopes/{collection}/data_access"


def https_access(collection: str) -> str:
    """Read and write a GCSv5 collection's files over HTTPS (the go<->file bridge)."""
    return f"https://auth.globus.org/scopes/{collection}/https"


def manage_collections(endpoint: str) -> str:
    return f"https://auth.globus.org/scopes/{endpoint}/manage_collections"


def transfer_scope(collections: Iterable[str] = ()) -> str:
    """Transfer, with each collection's data_access as an optional dependency."""
    dependencies = " ".join(f"*{data_access(c)}" for c in collections)
    return f"{TRANSFER_SCOPE}[{dependencies}]" if dependencies else TRANSFER_SCOPE


def login_scopes(collections: Iterable[str] = (), endpoints: Iterable[str] = (),
                 timers: bool = False, https: Iterable[str] = ()) -> list[str]:
    """Everything one ``pegasus-globus-online-init`` login asks for. ``https``: collections
    whose HTTPS access alone is wanted (guest and high-assurance ones have no data_access)."""
    collections = list(dict.fromkeys(collections))
    scopes = [transfer_scope(collections), *IDENTITY_SCOPES]
    scopes += [data_access(c) for c in collections]  # as stock Pegasus asks
    # for pegasus-globus-transfer's bridge
    scopes += [https_access(c) for c in dict.fromkeys([*collections, *https])]
    scopes += [manage_collections(e) for e in dict.fromkeys(endpoints)]
    if timers:
        scopes.append(f"{TIMERS_SCOPE}[{transfer_scope(collections)}]")
    return scopes


def init_command(collections: Iterable[str] = (), timers: bool = False,
                 permanent: bool = True, https: Iterable[str] = ()) -> str:
    """The exact command line that grants these consents."""
    words = [INIT_COMMAND]
    if permanent:
        words.append("--permanent")
    if timers:
        words.append("--timers")
    collections = list(dict.fromkeys(collections))
    if collections:
        words += ["--collections", *collections]
    https = [c for c in dict.fromkeys(https) if c not in collections]
    if https:
        words += ["--https", *https]
    return " ".join(words)
