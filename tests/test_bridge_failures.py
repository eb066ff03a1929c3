"""The HTTPS bridge where things go wrong: a server that keeps cutting a download off, Globus
Transfer out of reach for the size checks, part files that are taken or whose name would be
too long. (Beside tests/test_emulator_integrity.py's cases of the same defects.)"""

from __future__ import annotations

from typing import Any

import globus_sdk
import pytest

from pegasus_globus.token_store import TokenStore
from pegasus_globus.transfer.watch import TransferFailed

from .test_bridge import Site

MIB = 1 << 20


def bridge_of(site: Site, transfer_client) -> Any:
    from pegasus_globus.transfer.bridge import HttpsBridge
    from pegasus_globus.transfer.operations import GlobusTransfers

    return HttpsBridge(GlobusTransfers(transfer_client),
                       TokenStore(site.home / ".pegasus" / "globus.conf"),
                       sleep=lambda seconds: None)


def test_a_download_cut_off_every_time_fails_naming_the_url_and_why(
        tmp_path, emulator, transfer_client, monkeypatch):
    """Retries spent, the line says what broke (the body ended early), not ``: None``, and
    no part file is left."""
    from pegasus_globus.emulator import server
    from pegasus_globus.transfer.urls import GoUrl

    site = Site(emulator, tmp_path)
    (emulator.collection_path(site.collection) / "data" / "big.dat").write_bytes(b"y" * 2 * MIB)
    tries: list[int] = []

    def send_half(handler: Any, response: Any, body: Any) -> None:
        tries.append(1)
        handler._send_head(response, 2 * MIB)
        handler.wfile.write(b"y" * MIB)
        handler.close_connection = True

    monkeypatch.setattr(server._Handler, "_send_file", send_half)
    source = GoUrl(site.collection, "/data/big.dat")
    with pytest.raises(TransferFailed) as failed:
        bridge_of(site, transfer_client).download(source, site.scratch / "big.dat")
    assert failed.value.summary.startswith(f"{source}: Connection broken: IncompleteRead(")
    assert failed.value.summary.endswith("(tried 4 times)")
    assert len(tries) == 4
    assert list(site.scratch.iterdir()) == []
