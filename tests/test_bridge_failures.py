"""The HTTPS bridge where things go wrong: a server that keeps cutting a download off, Globus
Transfer out of reach for the size checks, part files that are taken or whose name would be
too long, an output that changes while it is uploaded or is no file. (Beside
tests/test_emulator_integrity.py's cases of the same defects.)"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import globus_sdk
import pytest

from pegasus_globus.token_store import TokenStore
from pegasus_globus.transfer.watch import TransferFailed

from .conftest import deny_as_mode_000
from .test_bridge import BRIDGE, Site

MIB = 1 << 20
CHANGED = "the file changed while it was uploaded"


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


def unreachable_transfer(monkeypatch) -> list[str]:
    """Globus Transfer's listings and stats fail as globus-sdk fails them once its retries
    are spent; returns the calls made."""
    calls: list[str] = []

    def unreachable(client: Any, collection: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(collection)
        raise globus_sdk.GlobusConnectionError("ConnectionError on request",
                                               ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(globus_sdk.TransferClient, "operation_stat", unreachable)
    monkeypatch.setattr(globus_sdk.TransferClient, "operation_ls", unreachable)
    return calls


def run_command(site: Site, tmp_path, monkeypatch, *entries: dict) -> int:
    import json

    from pegasus_globus import bridge_cli

    spec = tmp_path / "transfers.json"
    spec.write_text(json.dumps(list(entries)))
    monkeypatch.setenv("HOME", str(site.home))
    monkeypatch.delenv("PEGASUS_GLOBUS_CONFIG", raising=False)
    return bridge_cli.main(["--file", str(spec)])


def error_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]


def test_transfer_unreachable_for_a_batchs_size_checks_is_asked_once_and_fails_each_upload(
        tmp_path, emulator, monkeypatch, caplog):
    """Three uploads into two directories: one line each, naming the upload and that Globus
    Transfer could not be reached; after the first call that could not reach it no other is
    made (each would wait globus-sdk's retries out again)."""
    site = Site(emulator, tmp_path)
    targets = [f"go://{site.collection}/{path}" for path in ("a/1.dat", "a/2.dat", "b/3.dat")]
    for number in (1, 2, 3):
        (site.scratch / f"{number}.dat").write_text(str(number))
    calls = unreachable_transfer(monkeypatch)
    status = run_command(site, tmp_path, monkeypatch, *(
        site.entry(f"file://{site.scratch}/{number}.dat", target)
        for number, target in zip((1, 2, 3), targets)))
    errors = error_lines(caplog)
    assert status == 1 and len(calls) == 1
    assert sorted(errors) == sorted(
        f"{target}: its size cannot be checked after the upload: Globus Transfer could not "
        "be reached (ConnectionError on request: [Errno 111] Connection refused)"
        for target in targets)


def refused(*args: Any, **kwargs: Any) -> Any:
    """Globus Auth refusing the Transfer token's refresh, as the authorizer raises it."""
    import requests

    answer = requests.Response()
    answer.status_code = 400
    answer.headers["Content-Type"] = "application/json"
    answer._content = b'{"error": "invalid_grant"}'
    answer.url = "https://auth.globus.org/v2/oauth2/token"
    answer.request = requests.Request("POST", answer.url).prepare()
    raise globus_sdk.AuthAPIError(answer)


def test_a_size_check_that_fails_otherwise_is_still_one_line_per_upload_and_recorded(
        tmp_path, emulator, monkeypatch, caplog):
    """Any other failure of the after-batch size check (here the Transfer token's refresh
    refused): each upload's line, exit 1, and the attempts in $PEGASUS_MULTIPART_DIR, as a
    failed move's are."""
    site = Site(emulator, tmp_path)
    (site.scratch / "out.dat").write_text("result")
    target = f"go://{site.collection}/results/out.dat"
    monkeypatch.setattr(globus_sdk.TransferClient, "operation_stat", refused)
    records = tmp_path / "multipart"
    records.mkdir()
    monkeypatch.setenv("PEGASUS_MULTIPART_DIR", str(records))
    status = run_command(site, tmp_path, monkeypatch,
                         site.entry(f"file://{site.scratch}/out.dat", target))
    (error,) = error_lines(caplog)
    assert status == 1
    assert error == (f"{target}: its size cannot be checked after the upload: Globus refused "
                     "a call (400 invalid_grant)")
    (record,) = records.iterdir()
    assert record.name.endswith("-transfer-globus-https")
    assert "success: False" in record.read_text()


def test_transfer_unreachable_for_a_downloads_size_is_one_line_naming_it(
        tmp_path, emulator, transfer_client, monkeypatch):
    from pegasus_globus.transfer.urls import GoUrl

    site = Site(emulator, tmp_path)
    unreachable_transfer(monkeypatch)
    source = GoUrl(site.collection, "/data/raw.csv")
    with pytest.raises(TransferFailed) as failed:
        bridge_of(site, transfer_client).download(source, site.scratch / "raw.csv")
    assert failed.value.summary == (
        f"{source}: its size cannot be looked up: Globus Transfer could not be reached "
        "(ConnectionError on request: [Errno 111] Connection refused)")
    assert list(site.scratch.iterdir()) == []


def test_a_move_failing_on_a_globus_refusal_is_one_line_naming_it(tmp_path, emulator,
                                                                  monkeypatch, caplog):
    """Not a tuple of the refused request's parts (a GlobusAPIError's str) and no URL of
    ours: the move's go:// URL, Globus' status and code."""
    site = Site(emulator, tmp_path)
    source = f"go://{site.collection}/data/raw.csv"
    monkeypatch.setattr(globus_sdk.TransferClient, "operation_ls", refused)
    status = run_command(site, tmp_path, monkeypatch,
                         site.entry(source, f"file://{site.scratch}/raw.csv"))
    assert status == 1
    assert error_lines(caplog) == [f"{source}: Globus refused a call (400 invalid_grant)"]


def test_a_download_the_collection_denies_you_says_what_to_do(tmp_path, emulator,
                                                              monkeypatch):
    """A directory whose storage permissions keep you out (403 EndpointPermissionDenied, as
    Globus answers path by path; see deny_as_mode_000). Seen: "Globus Transfer refused
    a stat (403 EndpointPermissionDenied)", and no word of what to do."""
    site = Site(emulator, tmp_path)
    locked = emulator.collection_path(site.collection) / "locked"
    locked.mkdir()
    (locked / "raw.csv").write_text("1,1\n")
    deny_as_mode_000(monkeypatch, locked)
    source = f"go://{site.collection}/locked/raw.csv"
    result = site.run(site.entry(source, f"file://{site.scratch}/raw.csv"))
    line = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1
    assert line.endswith(f"{source}: the collection denies you access there (403 "
                         "EndpointPermissionDenied): ask its administrator for access, or use "
                         "a path you can reach"), line


def test_a_target_name_of_250_bytes_lands_its_part_files_names_cut_short(
        tmp_path, emulator, transfer_client):
    """``.<name>.part`` would be 256 bytes, past NAME_MAX: the target fits, so its download
    must not fail for its part file's name, neither the usual one nor the one taken while
    another download holds the usual one; each leaves nothing behind but the target."""
    import fcntl

    from pegasus_globus.transfer.urls import GoUrl

    site = Site(emulator, tmp_path)
    name = "n" * 246 + ".dat"
    (emulator.collection_path(site.collection) / "data" / name).write_bytes(b"z" * 1000)
    bridge, source = bridge_of(site, transfer_client), GoUrl(site.collection, f"/data/{name}")
    target = site.scratch / name
    assert bridge.download(source, target) == 1000
    assert sorted(p.name for p in site.scratch.iterdir()) == [name]

    from pegasus_globus.files import hidden_beside

    target.unlink()
    held = hidden_beside(target, "part")
    with open(held, "wb") as other:  # another download's, under way
        fcntl.flock(other, fcntl.LOCK_EX)
        assert bridge.download(source, target) == 1000
    assert target.read_bytes() == b"z" * 1000
    assert sorted(p.name for p in site.scratch.iterdir()) == sorted([name, held.split("/")[-1]])


def test_a_download_lands_where_the_file_system_has_no_locks(
        tmp_path, emulator, transfer_client, monkeypatch):
    """flock failing with ENOLCK (an NFS mount without its lock daemon) says nothing about who
    holds a part file: the download writes one of its own and lands, leaving nothing else."""
    import errno
    import fcntl

    from pegasus_globus.transfer.urls import GoUrl

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
    site = Site(emulator, tmp_path)
    bridge = bridge_of(site, transfer_client)
    monkeypatch.setattr(fcntl, "flock", no_locks)  # after the login: the token file locks too
    target = site.scratch / "raw.csv"
    assert bridge.download(GoUrl(site.collection, "/data/raw.csv"), target) == 8000
    assert sorted(p.name for p in site.scratch.iterdir()) == ["raw.csv"]


def test_a_download_below_a_file_names_the_file_in_the_way(emulator, tmp_path):
    """Not ``[Errno 17] File exists`` about the directory wanted."""
    site = Site(emulator, tmp_path)
    (site.scratch / "in").write_text("a file where a directory should be")
    source, target = f"go://{site.collection}/data/raw.csv", site.scratch / "in" / "raw.csv"
    result = site.run(site.entry(source, f"file://{target}"))
    assert result.returncode == 1
    assert (f"{source} -> {target}: {site.scratch / 'in'} is a file, not a directory: remove "
            "it or choose another destination") in result.stderr
    assert (site.scratch / "in").read_text() == "a file where a directory should be"


def test_a_download_below_a_dangling_link_names_the_link(emulator, tmp_path):
    """Not ``[Errno 17] File exists`` about the directory wanted."""
    site = Site(emulator, tmp_path)
    (site.scratch / "in").symlink_to(tmp_path / "unmounted")
    source, target = f"go://{site.collection}/data/raw.csv", site.scratch / "in" / "x" / "raw.csv"
    result = site.run(site.entry(source, f"file://{target}"))
    assert result.returncode == 1
    assert (f"{source} -> {target}: {site.scratch / 'in'} is a symbolic link to "
            f"{tmp_path / 'unmounted'}, which does not exist: make that directory, or remove "
            "the link") in result.stderr
    assert not (tmp_path / "unmounted").exists()


def change_the_upload_source_when_it_is_sent(emulator, monkeypatch, change) -> None:
    """``change()`` runs on the emulator's HTTPS server once a PUT's head has arrived, before
    any of its body is read."""
    resolve = emulator.https._target

    def target(request, *args):
        if request.method == "PUT":
            change()
        return resolve(request, *args)
    monkeypatch.setattr(emulator.https, "_target", target)


def test_an_output_that_grows_during_its_upload_fails_and_sends_no_byte_past_its_length(
        emulator, tmp_path, monkeypatch):
    """Sent as it was when the upload began (its Content-Length), the landed copy passes the
    size check: only a second look at the local file tells it is stale. The bytes written
    meanwhile never reach the connection (they would be read as the next request)."""
    site = Site(emulator, tmp_path)
    output = site.scratch / "out.dat"
    output.write_bytes(b"x" * MIB)

    def grow() -> None:
        with open(output, "ab") as handle:
            handle.write(b"y" * 1000)
    change_the_upload_source_when_it_is_sent(emulator, monkeypatch, grow)
    target = f"go://{site.collection}/results/out.dat"
    result = site.run(site.entry(f"file://{output}", target))
    assert result.returncode == 1
    assert (f"{output} -> {target}: the file changed while it was uploaded ({MIB} bytes when "
            f"the upload began, {MIB + 1000} bytes after): upload it once the job that writes "
            "it has ended") in result.stderr
    assert (emulator.collection_path(site.collection) / "results" / "out.dat").read_bytes() \
        == b"x" * MIB


def test_an_output_that_shrinks_during_its_upload_fails_at_once(emulator, tmp_path,
                                                                 monkeypatch):
    """Cut to nothing before the server read any of it (64 MiB: more than loopback buffers
    hold), the upload stops where the file ended, not after the HTTPS timeout; nothing
    lands."""
    site = Site(emulator, tmp_path)
    output = site.scratch / "out.dat"
    output.write_bytes(b"x" * 64 * MIB)
    change_the_upload_source_when_it_is_sent(emulator, monkeypatch,
                                             lambda: os.truncate(output, 0))
    target = f"go://{site.collection}/results/out.dat"
    result = site.run(site.entry(f"file://{output}", target))
    assert result.returncode == 1
    assert (f"{output} -> {target}: the file changed while it was uploaded ({64 * MIB} bytes "
            "when the upload began, 0 bytes after)") in result.stderr
    assert not (emulator.collection_path(site.collection) / "results" / "out.dat").exists()


def test_an_upload_refused_for_a_stale_token_is_sent_again_whole(emulator, tmp_path):
    """The HTTPS token expired at the service, not yet in the token file: the PUT is refused
    (401), the token refreshed, and the file sent again from its first byte (the retry sent
    the body already read to its end: an empty file, refused by the size check)."""
    from .conftest import admin

    site = Site(emulator, tmp_path)
    output = site.scratch / "out.dat"
    output.write_bytes(os.urandom(100_000))
    admin(emulator, "POST", "_emulator/tokens/expire")
    result = site.run(site.entry(f"file://{output}", f"go://{site.collection}/results/out.dat"))
    assert result.returncode == 0, result.stderr
    assert (emulator.collection_path(site.collection) / "results" / "out.dat").read_bytes() \
        == output.read_bytes()


def change_once_the_upload_is_under_way(emulator, monkeypatch, change) -> None:
    """``change()`` runs once the emulator's HTTPS server has read the first bytes of a PUT's
    body: the bridge has read them from the local file by then, deterministically."""
    resolve = emulator.https._target

    def target(request, *args):
        if request.method == "PUT":
            read, changed = request.stream.read, []

            def reading(*amount):
                data = read(*amount)
                if data and not changed:
                    changed.append(True)
                    change()
                return data
            request.stream.read = reading
        return resolve(request, *args)
    monkeypatch.setattr(emulator.https, "_target", target)


def upload(site: Site, local) -> tuple[str, subprocess.CompletedProcess]:
    target = f"go://{site.collection}/results/out.dat"
    return target, site.run(site.entry(f"file://{local}", target))


def landed(emulator, site: Site) -> bytes | None:
    path = emulator.collection_path(site.collection) / "results" / "out.dat"
    return path.read_bytes() if path.exists() else None


def test_an_output_rewritten_in_place_by_cp_p_during_its_upload_fails(
        emulator, tmp_path, monkeypatch):
    """``cp -p other out.dat`` (same size) while out.dat is sent: cp truncates and rewrites
    the same inode, then puts the old mtime back, so (inode, size, mtime) match. Seen: exit
    0, and the collection's copy is not the local file (first MiB old, the rest new)."""
    site = Site(emulator, tmp_path)
    output, other = site.scratch / "out.dat", site.scratch / "other"
    output.write_bytes(b"x" * 8 * MIB)
    other.write_bytes(b"y" * 8 * MIB)
    os.utime(other, ns=(output.stat().st_atime_ns, output.stat().st_mtime_ns))
    change_once_the_upload_is_under_way(emulator, monkeypatch, lambda: subprocess.run(
        ["cp", "-p", str(other), str(output)], check=True))
    _, result = upload(site, output)
    assert result.returncode == 1, (result.stderr, landed(emulator, site) == output.read_bytes())
    assert CHANGED in result.stderr and str(output) in result.stderr


def test_a_named_pipe_as_an_upload_source_fails_naming_it_instead_of_hanging(emulator,
                                                                             tmp_path):
    """stat says 0 bytes, but open() of a FIFO with no writer blocks: seen, the bridge hangs
    for ever (faulthandler: bridge.py ``send``, ``open(source, "rb")``)."""
    site = Site(emulator, tmp_path)
    fifo = site.scratch / "out.dat"
    os.mkfifo(fifo)
    target = f"go://{site.collection}/results/out.dat"
    try:
        result = subprocess.run(BRIDGE, input=json.dumps([site.entry(f"file://{fifo}", target)]),
                                capture_output=True, text=True, env=site.env, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the upload of the named pipe {fifo} still runs after 30 s")
    assert result.returncode == 1 and str(fifo) in result.stderr, result.stderr


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null"])
def test_a_special_file_as_an_upload_source_fails_naming_it(emulator, tmp_path, special):
    """stat gives devices 0 bytes, yet /dev/zero reads without end. Seen: exit 0 and an empty
    file on the collection, where the emulator's own copy refuses such a source ("not a
    regular file, not copied")."""
    site = Site(emulator, tmp_path)
    _, result = upload(site, special)
    assert result.returncode == 1 and special in result.stderr, (result.stderr,
                                                                 landed(emulator, site))
    assert landed(emulator, site) is None


def test_retries_spent_the_line_names_the_url_once(emulator, tmp_path, monkeypatch):
    """Seen: ``go://C/results/out.dat: go://C/results/out.dat: HTTPS server answered 500
    (tried 4 times)`` (the _Transient's text already starts with the URL), and nothing of the
    server's reason (a full disk)."""
    site = Site(emulator, tmp_path)
    output = site.scratch / "out.dat"
    output.write_bytes(b"x" * 100)
    resolve = emulator.https._target

    def failing(request, *args):
        if request.method == "PUT":
            raise OSError(28, "No space left on device")
        return resolve(request, *args)
    monkeypatch.setattr(emulator.https, "_target", failing)
    target, result = upload(site, output)
    line = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and "tried 4 times" in line
    assert line.count(target) == 1, line
    assert "answered 500 OSError (ENOSPC): No space left on device (tried" in line, line


def test_an_upload_into_a_directory_that_is_a_file_says_so(emulator, tmp_path):
    """Seen: "no such file or directory on the collection", of a file that was never there."""
    site = Site(emulator, tmp_path)
    output = site.scratch / "out.dat"
    output.write_bytes(b"x" * 100)
    (emulator.collection_path(site.collection) / "results").write_text("a file")
    target, result = upload(site, output)
    assert result.returncode == 1
    assert (f"{target}: the collection has no directory /results to write it in (missing, or "
            "a file)") in result.stderr, result.stderr


@pytest.mark.parametrize("kind", ["a directory", "missing"])
def test_an_upload_source_that_is_no_file_says_so_in_words(emulator, tmp_path, kind):
    """Seen: ``go://C/results/out.dat: [Errno 21] Is a directory: '/…/scratch'`` and
    ``… [Errno 2] No such file or directory: '/…/nope'`` (Python's repr of the OSError),
    where every other upload failure reads ``<file> -> <go URL>: <why>``."""
    site = Site(emulator, tmp_path)
    local = site.scratch if kind == "a directory" else site.scratch / "nope"
    target, result = upload(site, local)
    line = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1
    assert f"{local} -> {target}: " in line and "[Errno" not in line, line


def test_a_file_the_file_system_sizes_at_0_bytes_yet_reads_fails_naming_it(emulator, tmp_path):
    """/proc and /sys give their files 0 bytes in stat and content when read (a job's output
    copied from /proc/self/status, say, or a symbolic link to one). Seen: exit 0 and an
    empty file on the collection: the upload sent the 0 bytes stat gave, and the size check
    agreed."""
    site = Site(emulator, tmp_path)
    pseudo = site.scratch / "status"
    pseudo.symlink_to("/proc/self/status")
    assert pseudo.stat().st_size == 0 and pseudo.read_bytes()
    _, result = upload(site, pseudo)
    line = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1, (result.stderr, landed(emulator, site))
    assert str(pseudo) in line and "0 bytes" in line and "copy it" in line, line
    assert landed(emulator, site) is None


def test_a_sys_file_that_reads_fewer_bytes_than_stat_gives_fails_naming_it(emulator,
                                                                           tmp_path):
    """/sys gives its files 4096 bytes in stat, and reads fewer. Seen: "the file changed while
    it was uploaded (4096 bytes when the upload began, 4096 bytes after)", which it had not."""
    site = Site(emulator, tmp_path)
    pseudo = Path("/sys/devices/system/cpu/online")
    if not pseudo.exists() or pseudo.stat().st_size <= len(pseudo.read_bytes()):
        pytest.skip(f"{pseudo}: no sysfs file here that reads fewer bytes than stat gives")
    _, result = upload(site, pseudo)
    line = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1, (result.stderr, landed(emulator, site))
    assert f"{pseudo} -> " in line and "gives it 4096 bytes, yet it reads fewer" in line, line
    assert "changed" not in line
    assert landed(emulator, site) is None


def test_a_local_file_that_cannot_be_read_fails_in_the_usual_form(emulator, tmp_path):
    """/proc/self/mem stats at 0 bytes, and reading it fails (EIO). Seen: ``go://C/…:
    [Errno 5] Input/output error``, without the file's name; an unreadable file (EACCES)
    read ``[Errno 13] Permission denied: '/…'``."""
    site = Site(emulator, tmp_path)
    target, result = upload(site, "/proc/self/mem")
    line = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1
    assert line.endswith(f"/proc/self/mem -> {target}: Input/output error"), line
    assert landed(emulator, site) is None


def test_an_empty_output_is_uploaded_as_an_empty_file(emulator, tmp_path):
    site = Site(emulator, tmp_path)
    output = site.scratch / "out.dat"
    output.write_bytes(b"")
    _, result = upload(site, output)
    assert result.returncode == 0, result.stderr
    assert landed(emulator, site) == b""
