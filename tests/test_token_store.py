"""The token store every command shares: refresh, persistence, concurrency, secrecy."""

from __future__ import annotations

import configparser

import globus_sdk
import pytest

from bench.concurrent_refresh import logged_in_store, run
from pegasus_globus.ini import update_ini
from pegasus_globus.scopes import TIMERS_RS, TRANSFER_RS, init_command, login_scopes
from pegasus_globus.token_store import StoredToken, TokenStore, TokenStoreError

from .conftest import admin


def test_refresh_is_persisted_through_on_refresh(emulator, tmp_path):
    store = logged_in_store(emulator, tmp_path / "globus.conf")
    old = store.token(TRANSFER_RS)
    admin(emulator, "POST", "_emulator/tokens/expire")
    client = globus_sdk.TransferClient(authorizer=store.authorizer(TRANSFER_RS))
    client.get_submission_id()  # 401, refresh, retry
    new = store.token(TRANSFER_RS)
    assert new.access_token != old.access_token
    assert new.refresh_token == old.refresh_token
    assert store.read().get("mine", "keep") == "me"


def test_32_processes_refreshing_at_once(emulator, tmp_path):
    figures = run(emulator, tmp_path / "home" / "globus.conf", processes=32)
    assert figures["succeeded"] == 32, figures["errors"]
    assert figures["mode"] == "0600"
    assert figures["kept_unrelated"]
    assert figures["resource_servers"] == sorted([TRANSFER_RS, TIMERS_RS])
    assert figures["access_token_fresh"]
    configparser.RawConfigParser().read(tmp_path / "home" / "globus.conf")  # parses


def test_missing_token_names_the_command_to_run(tmp_path):
    with pytest.raises(TokenStoreError, match="run pegasus-globus-online-init --timers"):
        TokenStore(tmp_path / "none.conf").authorizer(TIMERS_RS,
                                                       fix="pegasus-globus-online-init --timers")


def test_expired_unrefreshable_token_is_refused_without_showing_it(tmp_path):
    store = TokenStore(tmp_path / "g.conf")
    store.save_tokens([StoredToken(TRANSFER_RS, "SECRET-AT", 100)], client_id="c")
    with pytest.raises(TokenStoreError) as caught:
        store.authorizer(TRANSFER_RS)
    assert "expired" in str(caught.value) and "SECRET" not in str(caught.value)
    assert "SECRET" not in repr(store.token(TRANSFER_RS))


def test_stock_none_refresh_token_reads_as_not_refreshable(tmp_path):
    path = tmp_path / "g.conf"
    path.write_text("[oauth]\nclient_id = c\ntransfer_at = a\ntransfer_rt = None\n"
                    "transfer_at_exp = 99999999999\n")
    assert TokenStore(path).token(TRANSFER_RS).refreshable is False


def test_bad_expiry_number_is_a_clear_error(tmp_path):
    path = tmp_path / "g.conf"
    path.write_text("[oauth]\ntransfer_at = a\ntransfer_at_exp = soon\n")
    with pytest.raises(TokenStoreError, match="transfer_at_exp is not a number"):
        TokenStore(path).tokens()


def test_update_ini_keeps_comments_and_order():
    text = "# top\n[oauth]\nclient_id = a ; old\n# inside\n\n[other]\nx = 1\n"
    out = update_ini(text, {"oauth": {"client_id": "b", "transfer_at": "t"},
                            "other": None, "new": {"k": "v", "gone": None}})
    assert out == "# top\n[oauth]\nclient_id = b\n# inside\ntransfer_at = t\n\n[new]\nk = v\n"


def test_update_ini_deletes_keys_case_insensitively():
    assert update_ini("[s]\nKey = 1\nother = 2\n", {"s": {"key": None}}) == "[s]\nother = 2\n"


def test_login_scopes_and_the_fix_command():
    collection = "6f2a4d2e-0a8e-4c4c-9a51-1c2b9f0e7a11"
    scopes = login_scopes([collection], timers=True)
    data_access = f"https://auth.globus.org/scopes/{collection}/data_access"
    assert f"urn:globus:auth:scope:transfer.api.globus.org:all[*{data_access}]" in scopes
    assert any(s.startswith("https://auth.globus.org/scopes/524230d7") and data_access in s
               for s in scopes)
    assert init_command([collection], timers=True) == (
        f"pegasus-globus-online-init --permanent --timers --collections {collection}")


# -- one write-back rule, and the file under real failures ---------------------------------------

def _refresh_later(store: TokenStore, server: str) -> globus_sdk.TransferClient:
    """A client that read the file now and will refresh on its next call."""
    return globus_sdk.TransferClient(authorizer=store.authorizer(server))


def test_a_refresh_after_logout_resurrects_nothing(emulator, tmp_path):
    store = logged_in_store(emulator, tmp_path / "globus.conf")
    early = _refresh_later(store, TIMERS_RS)  # read before the logout
    store.remove_tokens()
    early.authorizer.handle_missing_authorization()  # as after a 401
    early.authorizer.get_authorization_header()  # refreshes
    assert store.tokens() == {}


def test_a_refresh_never_overwrites_a_newer_login(emulator, tmp_path):
    store = logged_in_store(emulator, tmp_path / "globus.conf")
    early = _refresh_later(store, TRANSFER_RS)
    newer = logged_in_store(emulator, tmp_path / "globus.conf").token(TRANSFER_RS)  # re-login
    admin(emulator, "POST", "_emulator/tokens/expire")
    early.get_submission_id()  # 401, refresh with the old login's refresh token, retry
    assert store.token(TRANSFER_RS).refresh_token == newer.refresh_token


def test_a_symlinked_file_is_written_through(emulator, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    target = shared / "globus.conf"
    link = tmp_path / "home" / ".pegasus" / "globus.conf"
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    store = logged_in_store(emulator, link)
    assert link.is_symlink() and store.token(TRANSFER_RS) is not None
    assert (target.stat().st_mode & 0o777) == 0o600


def test_a_continuation_line_does_not_survive_a_rewrite(tmp_path):
    path = tmp_path / "g.conf"
    path.write_text("[oauth]\nclient_id = c\ntransfer_at = a\ntransfer_at_exp = 1\n"
                    "  99999\nkeep = me\n")
    store = TokenStore(path)
    store.save_tokens([StoredToken(TRANSFER_RS, "b", 2_000_000_000)])
    assert store.token(TRANSFER_RS).expires_at == 2_000_000_000  # parses, no stale '99999'
    assert store.read().get("oauth", "keep") == "me"


def test_a_pegasus_directory_that_is_a_file_is_named(tmp_path):
    (tmp_path / ".pegasus").write_text("")
    store = TokenStore(tmp_path / ".pegasus" / "globus.conf")
    for action in (store.read, lambda: store.save_tokens([StoredToken(TRANSFER_RS, "a", 1)])):
        with pytest.raises(TokenStoreError, match=r"\.pegasus is not a directory.*move"):
            action()


def test_a_full_disk_is_one_line_and_the_file_is_unchanged(tmp_path, monkeypatch):
    import errno
    import os

    path = tmp_path / "g.conf"
    store = TokenStore(path)
    store.save_tokens([StoredToken(TRANSFER_RS, "old", 1)], client_id="c")
    before = path.read_text()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(TokenStoreError, match=r"No space left on device.*free some space"):
        store.save_tokens([StoredToken(TRANSFER_RS, "new", 2)])
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.conf", "g.conf.lock"]  # no temp left


def test_an_existing_pegasus_directory_keeps_its_mode(tmp_path):
    directory = tmp_path / ".pegasus"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    TokenStore(directory / "globus.conf").save_tokens([StoredToken(TRANSFER_RS, "a", 1)])
    assert directory.stat().st_mode & 0o777 == 0o755
    assert (directory / "globus.conf").stat().st_mode & 0o777 == 0o600
    fresh = tmp_path / "new" / ".pegasus"
    TokenStore(fresh / "globus.conf").save_tokens([StoredToken(TRANSFER_RS, "a", 1)])
    assert fresh.stat().st_mode & 0o777 == 0o700


def test_logout_without_a_file_creates_nothing(tmp_path):
    assert TokenStore(tmp_path / ".pegasus" / "globus.conf").remove_tokens() == []
    assert not (tmp_path / ".pegasus").exists()


def test_a_good_token_is_used_without_loading_the_auth_client(emulator, tmp_path):
    """globus-sdk's Auth client (PyJWT, cryptography: about 80 ms of imports) is loaded only
    to refresh; a token near its expiry is refreshed as before."""
    import subprocess
    import sys

    store = logged_in_store(emulator, tmp_path / "globus.conf")
    script = (
        "import sys, globus_sdk\n"
        "from pegasus_globus.token_store import TokenStore\n"
        f"store = TokenStore({str(store.path)!r})\n"
        f"client = globus_sdk.TransferClient(authorizer=store.authorizer({TRANSFER_RS!r}))\n"
        "client.get_submission_id()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('jwt', 'cryptography'))))\n")
    answer = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    assert answer.stdout.strip() == "[]"
    old = store.token(TRANSFER_RS)
    store.save_tokens([StoredToken(TRANSFER_RS, old.access_token, 100, old.refresh_token,
                                   old.scopes)])
    globus_sdk.TransferClient(authorizer=store.authorizer(TRANSFER_RS)).get_submission_id()
    assert store.token(TRANSFER_RS).access_token != old.access_token
