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
