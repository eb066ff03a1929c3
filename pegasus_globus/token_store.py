"""The Globus tokens Pegasus uses, kept in ``~/.pegasus/globus.conf`` and shared by every command.

The file stays readable by stock Pegasus: section ``[oauth]`` holds ``client_id``,
``transfer_at``, ``transfer_at_exp`` and, for refreshable logins only, ``transfer_rt``. Tokens for
other resource servers (Timers, Auth, collections) live in ``[token <resource server>]``
sections, which stock Pegasus ignores. Writes take an exclusive lock, re-read the file, change
only their own keys (comments and unrelated content stay) and replace the file atomically with
mode 0600, so many ``pegasus-transfer`` processes can refresh at once.
"""

from __future__ import annotations

import configparser
import contextlib
import errno
import fcntl
import os
import shlex
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from .ini import Changes, update_ini
from .scopes import INIT_COMMAND, SERVICE_NAMES, TRANSFER_RS

if TYPE_CHECKING:
    import globus_sdk

DEFAULT_CLIENT_ID = "d7382f5a-4ea3-4b69-b094-99c392fc820d"  # Pegasus' native app
CONFIG_ENV = "PEGASUS_GLOBUS_CONFIG"
CLIENT_ID_ENV = "PEGASUS_GLOBUS_CLIENT_ID"
STOCK_SECTION = "oauth"
META_SECTION = "pegasus-globus"


class TokenStoreError(Exception):
    """A problem with the stored tokens. The message says what to run; it never holds a token."""


class DamagedStore(TokenStoreError):
    """The file is there but is no configuration file: ``reason`` says why, in a few words."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class NotLoggedIn(TokenStoreError):
    """No usable token for a service: the user has to log in (again)."""


@dataclass(frozen=True)
class StoredToken:
    """One resource server's tokens. ``expires_at`` is in epoch seconds."""

    resource_server: str
    access_token: str = field(repr=False)
    expires_at: int
    refresh_token: str | None = field(default=None, repr=False)
    scopes: str = ""

    @property
    def refreshable(self) -> bool:
        return bool(self.refresh_token)

    def expired(self, margin: float = 0.0) -> bool:
        return self.expires_at <= time.time() + margin

    @classmethod
    def from_response(cls, response: Any) -> list[StoredToken]:
        """The tokens of a globus-sdk ``OAuthTokenResponse``, one per resource server."""
        return [
            cls(server, data["access_token"], int(data["expires_at_seconds"]),
                data.get("refresh_token"), data.get("scope", ""))
            for server, data in response.by_resource_server.items()
        ]


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``explicit``, else ``$PEGASUS_GLOBUS_CONFIG``, else ``~/.pegasus/globus.conf``."""
    chosen = explicit or os.environ.get(CONFIG_ENV)
    if chosen:
        return Path(chosen).expanduser()
    if not os.environ.get("HOME"):
        raise TokenStoreError("HOME is not set, so ~/.pegasus/globus.conf cannot be found: "
                              f"set HOME, or name the file with --config or {CONFIG_ENV}")
    return Path.home() / ".pegasus" / "globus.conf"


def _section(server: str) -> str:
    return STOCK_SECTION if server == TRANSFER_RS else f"token {server}"


def _token_changes(token: StoredToken) -> dict[str, str | None]:
    if token.resource_server == TRANSFER_RS:
        # stock Pegasus reads a missing transfer_rt as "not refreshable"; never write "None"
        return {"transfer_at": token.access_token, "transfer_at_exp": str(token.expires_at),
                "transfer_rt": token.refresh_token or None, "transfer_scopes": token.scopes}
    return {"access_token": token.access_token, "expires_at": str(token.expires_at),
            "refresh_token": token.refresh_token or None, "scopes": token.scopes}


class TokenStore:
    """Read and write the token file at ``path`` (see :func:`config_path`)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = config_path(path)

    # -- reading ---------------------------------------------------------------------------

    def read(self) -> configparser.RawConfigParser:
        """The parsed file (empty when missing); a clear error when unreadable or damaged."""
        return self._parse(self._text())

    def _text(self) -> str:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return ""
        except NotADirectoryError:
            raise self._not_a_directory() from None
        except UnicodeDecodeError:
            raise self._damaged("not UTF-8 text") from None
        except OSError as error:
            raise TokenStoreError(f"cannot read {self.path} ({error.__class__.__name__}: "
                                  f"{getattr(error, 'strerror', None) or error}): fix its "
                                  f"permissions, or remove it and run {INIT_COMMAND}") from None

    def _not_a_directory(self) -> TokenStoreError:
        parent = next((p for p in self.path.parents if p.exists() and not p.is_dir()),
                      self.path.parent)
        return TokenStoreError(f"{parent} is not a directory, so {self.path} cannot be kept "
                               f"there: move {parent} away, or name another file with "
                               f"--config or {CONFIG_ENV}")

    def _write_error(self, error: OSError) -> TokenStoreError:
        if isinstance(error, NotADirectoryError):
            return self._not_a_directory()
        hint = ("free some space" if error.errno in (errno.ENOSPC, errno.EDQUOT)
                else "fix the permissions of its directory")
        return TokenStoreError(f"cannot write {self.path} ({error.strerror or error}): "
                               f"{hint} and run the command again; the file is unchanged")

    def _parse(self, text: str) -> configparser.RawConfigParser:
        parser = configparser.RawConfigParser()
        try:
            parser.read_string(text, source=str(self.path))
        except configparser.Error as error:
            raise self._damaged(str(error).splitlines()[0]) from None
        return parser

    def _damaged(self, reason: str) -> DamagedStore:
        return DamagedStore(f"{self.path} is not a valid configuration file ({reason}): "
                            f"repair it, or remove it and run {INIT_COMMAND}", reason)

    def aside(self, login: str) -> str:
        """The fix for a damaged file: moved aside (kept, online-init will not overwrite
        it), then ``login``."""
        path = shlex.quote(str(self.path))
        return f"mv {path} {path}.damaged && {login}"

    def exposure(self) -> tuple[str, str] | None:
        """When others may read the file (it holds secrets): the problem and its fix."""
        try:
            mode = stat.S_IMODE(self.path.stat().st_mode)
        except OSError:
            return None
        if not mode & 0o077:
            return None
        return (f"{self.path} is readable by others (mode {mode:04o})",
                f"chmod 600 {shlex.quote(str(self.path))}")

    def client_id(self, parser: configparser.RawConfigParser | None = None) -> str:
        parser = parser or self.read()
        return (os.environ.get(CLIENT_ID_ENV)
                or parser.get(STOCK_SECTION, "client_id", fallback=None) or DEFAULT_CLIENT_ID)

    def tokens(self, parser: configparser.RawConfigParser | None = None) -> dict[str, StoredToken]:
        parser = parser or self.read()
        found: dict[str, StoredToken] = {}
        for section in parser.sections():
            if section == STOCK_SECTION:
                server = TRANSFER_RS
                keys = ("transfer_at", "transfer_at_exp", "transfer_rt", "transfer_scopes")
            elif section.startswith("token "):
                server = section[len("token "):].strip()
                keys = ("access_token", "expires_at", "refresh_token", "scopes")
            else:
                continue
            access, expires, refresh, scopes = (parser.get(section, k, fallback="") for k in keys)
            if not access:
                continue
            try:
                expires_at = int(float(expires or 0))
            except ValueError:
                raise TokenStoreError(f"{self.path}: [{section}] {keys[1]} is not a number: run "
                                      f"{INIT_COMMAND} to log in again") from None
            refresh = None if refresh in ("", "None") else refresh  # stock wrote "None"
            found[server] = StoredToken(server, access, expires_at, refresh, scopes)
        return found

    def token(self, server: str) -> StoredToken | None:
        return self.tokens().get(server)

    def meta(self, parser: configparser.RawConfigParser | None = None) -> dict[str, str]:
        parser = parser or self.read()
        return dict(parser.items(META_SECTION)) if parser.has_section(META_SECTION) else {}

    # -- writing ---------------------------------------------------------------------------

    @property
    def target(self) -> Path:
        """The file written: ``path``, or where it links to (a symlinked globus.conf, e.g. to
        a shared home, is written through, never replaced by a regular file)."""
        return Path(os.path.realpath(self.path))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock on the token file, across processes; a failure to take it or to
        write under it is a :class:`TokenStoreError` saying what to do."""
        try:
            self._ensure_directory()
            target = self.target
            fd = os.open(target.with_name(target.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise self._write_error(error) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        except OSError as error:
            raise self._write_error(error) from None
        finally:
            os.close(fd)

    def update(self, changes: Changes) -> None:
        """Apply ``changes`` (see :func:`update_ini`) under the lock, atomically, mode 0600."""
        with self.locked():
            text = self._text()
            self._parse(text)  # refuse to build on a damaged file
            self._write(update_ini(text, changes))

    def save_tokens(self, tokens: Iterable[StoredToken], client_id: str | None = None,
                    meta: dict[str, str] | None = None) -> None:
        # [oauth] and its client_id first, where stock Pegasus writes them
        changes: dict[str, dict[str, str | None]] = {
            STOCK_SECTION: {"client_id": client_id} if client_id else {}}
        for token in tokens:
            changes.setdefault(_section(token.resource_server), {}).update(_token_changes(token))
        if meta:
            changes[META_SECTION] = dict(meta)
        self.update(changes)

    def remove_tokens(self) -> list[StoredToken]:
        """Forget every token (keeping everything else in the file); returns what was removed."""
        if not self.path.exists():
            return []  # nothing to forget, and no ~/.pegasus or lock file to create for it
        with self.locked():
            text = self._text()
            parser = self._parse(text)
            removed = list(self.tokens(parser).values())
            changes: dict[str, Any] = {_section(t.resource_server): None for t in removed
                                       if t.resource_server != TRANSFER_RS}
            changes[STOCK_SECTION] = dict.fromkeys(
                ("transfer_at", "transfer_at_exp", "transfer_rt", "transfer_scopes"))
            changes[META_SECTION] = None
            if text:
                self._write(update_ini(text, changes))
        return removed

    def _ensure_directory(self) -> None:
        # a new ~/.pegasus is made 0700; an existing one keeps its mode (Pegasus keeps other
        # files there): the token file itself is always 0600
        directory = self.path.parent
        if not directory.exists():
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o700)

    def _write(self, text: str) -> None:
        target = self.target
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "w") as handle:  # mkstemp files are mode 0600
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    # -- authorizers -----------------------------------------------------------------------

    def authorizer(self, server: str,
                   fix: str = INIT_COMMAND) -> globus_sdk.authorizers.GlobusAuthorizer:
        """An authorizer for ``server`` that refreshes when it can and saves refreshed tokens.

        :param fix: the command to suggest when there is no usable token
        """
        import globus_sdk

        parser = self.read()
        token = self.tokens(parser).get(server)
        service = SERVICE_NAMES.get(server, f"Globus service {server}")
        if token is None:
            raise NotLoggedIn(f"not logged in to {service} (no token in {self.path}): "
                              f"run {fix}")
        if token.refreshable:
            from .lazy_refresh import LazyRefreshAuthorizer

            return LazyRefreshAuthorizer(
                token.refresh_token, self.client_id(parser),
                access_token=token.access_token, expires_at=token.expires_at,
                on_refresh=self._on_refresh(token.refresh_token))
        if token.expired():
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(token.expires_at))
            raise NotLoggedIn(f"the {service} token in {self.path} expired at {when} and "
                              f"cannot be refreshed: run {fix}")
        return globus_sdk.AccessTokenAuthorizer(token.access_token)

    def save_refreshed(self, response: Any, used_refresh_token: str) -> bool:
        """Save what a refresh grant returned, the one rule for every writer: only while the
        file still holds the login that was refreshed. After a logout or a newer login the
        file's state is newer and wins. Says whether anything was saved; a refresh token the
        answer leaves out is kept."""
        with self.locked():
            text = self._text()
            stored = self.tokens(self._parse(text))
            fresh = [StoredToken(t.resource_server, t.access_token, t.expires_at,
                                 t.refresh_token or used_refresh_token,
                                 t.scopes or stored[t.resource_server].scopes)
                     for t in StoredToken.from_response(response)
                     if t.resource_server in stored
                     and stored[t.resource_server].refresh_token == used_refresh_token]
            if fresh:
                self._write(update_ini(text, {_section(t.resource_server): _token_changes(t)
                                              for t in fresh}))
        return bool(fresh)

    def _on_refresh(self, used_refresh_token: str) -> Any:
        def save(response: Any) -> None:
            try:
                self.save_refreshed(response, used_refresh_token)
            except TokenStoreError as error:  # the command goes on with the fresh token
                print(f"warning: {error}", file=sys.stderr)
        return save
