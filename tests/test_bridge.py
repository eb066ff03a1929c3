"""go:// <-> file:// through the collections' HTTPS servers: pegasus-globus-transfer in
pegasus-transfer's place, against the emulator's HTTPS access."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from pegasus_globus.scopes import login_scopes
from pegasus_globus.token_store import StoredToken, TokenStore

from .conftest import admin, login

BRIDGE = [sys.executable, "-m", "pegasus_globus.bridge_cli"]


class Site:
    """A logged-in HOME, a collection with files and a plain local directory."""

    def __init__(self, emulator, tmp_path: Path, consent: bool = True) -> None:
        self.emulator = emulator
        self.collection = str(uuid.uuid4())
        root = emulator.collection_path(self.collection)
        (root / "data").mkdir()
        (root / "data" / "raw.csv").write_bytes(b"a,b\n1,2\n" * 1000)
        self.scratch = tmp_path / "scratch"
        self.scratch.mkdir()
        self.home = tmp_path / "home"
        client, tokens = login(" ".join(login_scopes([self.collection] if consent else [])))
        TokenStore(self.home / ".pegasus" / "globus.conf").save_tokens(
            StoredToken.from_response(tokens), client_id=client.client_id)
        self.env = {**os.environ, **emulator.environment, "HOME": str(self.home)}
        self.env.pop("PEGASUS_GLOBUS_CONFIG", None)

    def entry(self, source: str, target: str, lfn: str = "f", **checks: bool) -> dict:
        return {"type": "transfer", "linkage": "input", "lfn": lfn, "id": 1, **checks,
                "src_urls": [{"site_label": "a", "url": source, "priority": 100}],
                "dest_urls": [{"site_label": "b", "url": target}]}

    def run(self, *entries: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(BRIDGE, input=json.dumps(list(entries)), capture_output=True,
                              text=True, env=self.env, timeout=120, cwd=cwd)

    def job_directory(self, pegasus, recorded: dict[str, bytes]) -> Path:
        """A stage-out job's directory: the *.meta file PegasusLite wrote for its outputs
        (``recorded``: LFN -> the bytes whose sha256 it recorded), Pegasus' tools found."""
        self.env["PEGASUS_HOME"] = str(pegasus.home)
        job = self.scratch / "job"
        job.mkdir(exist_ok=True)
        (job / "analyse.meta").write_text(json.dumps([
            {"_id": lfn, "_type": "file", "_attributes": {
                "checksum.type": "sha256", "checksum.value": hashlib.sha256(data).hexdigest()}}
            for lfn, data in recorded.items()]))
        return job


@pytest.fixture
def site(emulator, tmp_path) -> Site:
    return Site(emulator, tmp_path)


def test_go_to_file_and_file_to_go(site):
    go = f"go://{site.collection}"
    (site.scratch / "out.dat").write_bytes(b"result\n" * 500)
    result = site.run(site.entry(f"{go}/data/raw.csv", f"file://{site.scratch}/in/raw.csv"),
                      site.entry(f"file://{site.scratch}/out.dat", f"{go}/results/run1/out.dat"))
    assert result.returncode == 0, result.stderr
    root = site.emulator.collection_path(site.collection)
    original = (root / "data" / "raw.csv").read_bytes()
    assert (site.scratch / "in" / "raw.csv").read_bytes() == original
    assert (root / "results" / "run1" / "out.dat").read_bytes() == b"result\n" * 500
    assert not list(site.scratch.rglob("*.part"))  # nothing half-written left
    umask = os.umask(0)
    os.umask(umask)
    assert (site.scratch / "in" / "raw.csv").stat().st_mode & 0o777 == 0o666 & ~umask
    assert "download" in result.stderr and "upload" in result.stderr


def test_an_empty_output_is_uploaded(site):
    """requests sends an empty file's body chunked, which the HTTPS server refuses (411)."""
    (site.scratch / "empty").write_bytes(b"")
    result = site.run(site.entry(f"file://{site.scratch}/empty",
                                 f"go://{site.collection}/results/empty"))
    assert result.returncode == 0, result.stderr
    assert (site.emulator.collection_path(site.collection) / "results" / "empty").read_bytes() \
        == b""


@pytest.mark.parametrize("recorded, exit_code", [(b"result\n" * 500, 0), (b"other\n", 1)],
                         ids=["matching", "corrupted"])
def test_an_upload_is_pulled_back_and_checked_against_pegasuslites_checksum(
        site, pegasus, recorded, exit_code):
    """verify_checksum_remote, which the planner sets on outputs: the file as it arrived in
    the collection against the sha256 PegasusLite recorded (pegasus-integrity --verify)."""
    job = site.job_directory(pegasus, {"out.dat": recorded})
    (site.scratch / "out.dat").write_bytes(b"result\n" * 500)
    target = f"go://{site.collection}/results/out.dat"
    result = site.run(site.entry(f"file://{site.scratch}/out.dat", target, lfn="out.dat",
                                 verify_checksum_remote=True), cwd=job)
    assert result.returncode == exit_code, result.stderr
    if exit_code:
        assert f"{target}: the integrity check of out.dat failed" in result.stderr
        assert "does not match the calculated checksum" in result.stderr
    else:
        assert f"{target}: sha256 matches the one recorded for out.dat" in result.stderr


def test_a_go_to_go_output_is_checked_after_the_stock_transfer_moved_it(site, pegasus):
    """Stock pegasus-transfer skips verify_checksum_remote for go:// destinations ("Unable to
    pull file from go to local file"); the bridge checks the go->go output it moved."""
    raw = (site.emulator.collection_path(site.collection) / "data" / "raw.csv").read_bytes()
    job = site.job_directory(pegasus, {"raw.csv": raw, "bad.csv": b"not what arrived"})
    go = f"go://{site.collection}"
    result = site.run(
        site.entry(f"{go}/data/raw.csv", f"{go}/results/raw.csv", lfn="raw.csv",
                   verify_checksum_remote=True),
        {**site.entry(f"{go}/data/raw.csv", f"{go}/results/bad.csv", lfn="bad.csv",
                      verify_checksum_remote=True), "id": 2}, cwd=job)
    assert result.returncode == 1
    assert f"{go}/results/raw.csv: sha256 matches the one recorded for raw.csv" in result.stderr
    assert f"{go}/results/bad.csv: the integrity check of bad.csv failed" in result.stderr
    assert "Skipping integrity check" not in result.stderr + result.stdout


def test_a_go_to_go_output_the_bridge_cannot_pull_back_is_moved_unchecked(site, pegasus):
    """A destination without HTTPS (GCSv4, Globus Connect Personal): the stock tool moves the
    file and skips the check; the bridge says why it cannot check and fails nothing."""
    job = site.job_directory(pegasus, {"raw.csv": b"not what arrived"})
    site.emulator.mark_collection(site.collection, no_https=True)
    go = f"go://{site.collection}"
    result = site.run(site.entry(f"{go}/data/raw.csv", f"{go}/results/raw.csv", lfn="raw.csv",
                                 verify_checksum_remote=True), cwd=job)
    assert result.returncode == 0, result.stderr
    assert "serves no HTTPS" in result.stderr and "is not checked against its sha256" in (
        result.stderr)
    assert (site.emulator.collection_path(site.collection) / "results" / "raw.csv").exists()


def test_a_download_asked_to_generate_a_checksum_records_it_for_kickstart(site, pegasus):
    """generate_checksum: the sha256 goes to $KICKSTART_INTEGRITY_DATA, for the record."""
    job = site.job_directory(pegasus, {})
    site.env["KICKSTART_INTEGRITY_DATA"] = str(job / "integrity.yml")
    result = site.run(site.entry(f"go://{site.collection}/data/raw.csv",
                                 f"file://{site.scratch}/raw.csv", lfn="raw.csv",
                                 generate_checksum=True), cwd=job)
    assert result.returncode == 0, result.stderr
    recorded = yaml.safe_load((job / "integrity.yml").read_text())
    raw = (site.scratch / "raw.csv").read_bytes()
    assert recorded["raw.csv"]["sha256"] == hashlib.sha256(raw).hexdigest()


def test_the_bridges_transfers_are_in_the_record_as_pegasus_transfers_are(site, tmp_path):
    """transfer_attempts in $PEGASUS_MULTIPART_DIR, in the stock tool's form: Pegasus' own
    parser reads them from a record, beside kickstart's invocation."""
    from Pegasus.tools.kickstart_parser import YAMLParser

    multipart = tmp_path / "multipart"
    multipart.mkdir()
    site.env["PEGASUS_MULTIPART_DIR"] = str(multipart)
    (site.scratch / "out.dat").write_bytes(b"x" * 10)
    go = f"go://{site.collection}"
    result = site.run(site.entry(f"{go}/data/raw.csv", "file://$PWD/raw.csv", lfn="raw.csv"),
                      site.entry(f"file://{site.scratch}/out.dat", f"{go}/out/o.dat", lfn="o"),
                      site.entry(f"{go}/data/missing.csv", f"file://{site.scratch}/m", lfn="m"),
                      cwd=site.scratch)
    assert result.returncode == 1  # the missing one
    (block,) = multipart.iterdir()
    record = tmp_path / "job.out"
    stage_in = Path(__file__).parent / "fixtures" / "kickstart" / "success_stage_in.out"
    record.write_text(stage_in.read_text() + "\n---------------pegasus-multipart\n"
                      + block.read_text())  # as PegasusLite appends it
    entries = YAMLParser(str(record)).parse_stampede()
    attempts = {a["lfn"]: a for e in entries for a in e.get("transfer_attempts", [])}
    assert attempts["raw.csv"]["src_url"] == f"{go}/data/raw.csv"
    assert attempts["raw.csv"]["dst_url"] == f"file://{site.scratch}/raw.csv"
    assert attempts["raw.csv"]["success"] is True and attempts["raw.csv"]["bytes"] == 8000
    assert attempts["o"]["dst_url"] == f"{go}/out/o.dat" and attempts["o"]["bytes"] == 10
    assert attempts["m"]["success"] is False and "bytes" not in attempts["m"]
    assert {a["src_label"] for a in attempts.values()} == {"a"}


def test_pegasus_lites_pwd_urls_are_the_jobs_directory(site):
    """PegasusLite writes the job's directory as file://$PWD/... (seen in its scripts)."""
    result = subprocess.run(BRIDGE, input=json.dumps([site.entry(
        f"go://{site.collection}/data/raw.csv", "file://$PWD/raw.csv")]), capture_output=True,
        text=True, env=site.env, timeout=120, cwd=site.scratch)
    assert result.returncode == 0, result.stderr
    assert (site.scratch / "raw.csv").stat().st_size == 8000


def test_a_missing_source_fails_naming_it_and_leaves_nothing(site):
    result = site.run(site.entry(f"go://{site.collection}/data/none.csv",
                                 f"file://{site.scratch}/none.csv"))
    assert result.returncode == 1
    assert f"go://{site.collection}/data/none.csv: no such file" in result.stderr
    assert not list(site.scratch.iterdir())


def test_a_collection_without_https_names_the_alternative(site):
    site.emulator.mark_collection(site.collection, no_https=True)
    result = site.run(site.entry(f"go://{site.collection}/data/raw.csv",
                                 f"file://{site.scratch}/raw.csv"))
    assert result.returncode == 1
    assert "serves no HTTPS" in result.stderr and "--scratch-collection" in result.stderr


def test_without_the_https_consent_the_login_to_run_is_named(emulator, tmp_path):
    site = Site(emulator, tmp_path, consent=False)
    result = site.run(site.entry(f"go://{site.collection}/data/raw.csv",
                                 f"file://{site.scratch}/raw.csv"))
    assert result.returncode == 1
    assert f"run pegasus-globus-online-init --permanent --collections {site.collection}" in (
        result.stderr)


def test_without_any_login_the_command_to_run_names_the_collections(site):
    (site.home / ".pegasus" / "globus.conf").unlink()
    result = site.run(site.entry(f"go://{site.collection}/data/raw.csv",
                                 f"file://{site.scratch}/raw.csv"))
    assert result.returncode == 1 and "not logged in to Globus Transfer" in result.stderr
    assert f"--collections {site.collection}" in result.stderr


def test_the_emulators_https_server_checks_the_collections_https_scope(site, transfer_client):
    server = transfer_client.get_endpoint(site.collection)["https_server"]
    assert server.endswith(f"/https/{site.collection}")
    import requests

    wrong = transfer_client.authorizer.get_authorization_header()  # a Transfer token
    assert requests.get(f"{server}/data/raw.csv", headers={"Authorization": wrong},
                        timeout=10).status_code == 401
    _, tokens = login(f"https://auth.globus.org/scopes/{site.collection}/data_access")
    other = tokens.by_resource_server[site.collection]["access_token"]
    assert requests.get(f"{server}/data/raw.csv", headers={"Authorization": f"Bearer {other}"},
                        timeout=10).status_code == 403  # data_access is not https


def test_other_entries_go_to_the_stock_pegasus_transfer(site, pegasus):
    (site.scratch / "a.txt").write_text("a")
    site.env["PEGASUS_HOME"] = str(pegasus.home)
    result = site.run(site.entry(f"file://{site.scratch}/a.txt", f"file://{site.scratch}/b.txt"),
                      site.entry(f"go://{site.collection}/data/raw.csv",
                                 f"file://{site.scratch}/raw.csv"))
    assert result.returncode == 0, result.stderr
    assert (site.scratch / "b.txt").read_text() == "a"  # by the stock pegasus-transfer
    assert (site.scratch / "raw.csv").exists()  # by the bridge


def https_token(collection: str) -> str:
    _, tokens = login(f"https://auth.globus.org/scopes/{collection}/https")
    return tokens.by_resource_server[collection]["access_token"]


def raw_put(url: str, token: str, head: str, body: bytes) -> bytes:
    """A PUT as a killed or chunking client sends it: headers as given, then ``body``, then
    the connection closed for writing; returns what the server answered (b"" if nothing)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as connection:
        connection.sendall(f"PUT {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                           f"Authorization: Bearer {token}\r\n{head}\r\n".encode() + body)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer


def test_a_cut_off_upload_leaves_the_file_as_it_was(site, transfer_client):
    """Content-Length 1000, 7 bytes sent, then the client is gone: whole or nothing."""
    server = transfer_client.get_endpoint(site.collection)["https_server"]
    before = (site.emulator.collection_path(site.collection) / "data" / "raw.csv").read_bytes()
    raw_put(f"{server}/data/raw.csv", https_token(site.collection), "Content-Length: 1000\r\n",
            b"partial")
    after = site.emulator.collection_path(site.collection) / "data" / "raw.csv"
    assert after.read_bytes() == before
    assert not [p for p in after.parent.iterdir() if p.name != "raw.csv"]  # no leftover part


def test_a_chunked_upload_is_refused_not_stored_empty(site, transfer_client):
    server = transfer_client.get_endpoint(site.collection)["https_server"]
    answer = raw_put(f"{server}/data/new.csv", https_token(site.collection),
                     "Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411")
    assert not (site.emulator.collection_path(site.collection) / "data" / "new.csv").exists()


def test_an_upload_is_written_as_it_arrives_of_any_size(site, transfer_client, tmp_path):
    """GCS writes an upload to disk as it arrives, and sends a download as it reads it: past
    the 64 MiB the emulator reads of a Globus document into memory, never holding a file
    whole; a refusal before the body is read still reaches the client, whose next request on
    the connection is answered (the body never taken for it)."""
    import socket
    import tracemalloc
    from urllib.parse import urlsplit

    import requests

    from pegasus_globus.emulator.server import MAX_BODY

    server = transfer_client.get_endpoint(site.collection)["https_server"]
    big = tmp_path / "big"
    with open(big, "wb") as handle:  # sparse: no 64 MiB of test data on disk
        handle.truncate(MAX_BODY + 1)
    with open(big, "rb") as handle:
        answer = requests.put(f"{server}/data/big", data=handle, timeout=60, headers={
            "Authorization": f"Bearer {https_token(site.collection)}"})
    assert answer.status_code == 200, answer.text
    stored = site.emulator.collection_path(site.collection) / "data" / "big"
    assert stored.stat().st_size == MAX_BODY + 1 and answer.json()["size"] == MAX_BODY + 1
    tracemalloc.start()  # the emulator is in this process: its memory is counted too
    try:
        with requests.get(f"{server}/data/big", stream=True, timeout=60, headers={
                "Authorization": f"Bearer {https_token(site.collection)}"}) as download:
            got = sum(len(chunk) for chunk in download.iter_content(1 << 20))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == MAX_BODY + 1 and peak < 16 * 1024 * 1024  # sent as read, never held whole
    stored.unlink()

    parts = urlsplit(server)
    smuggled = b"GET /_emulator/clock HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as connection:
        connection.sendall(f"PUT {parts.path}/data/x HTTP/1.1\r\nHost: x\r\nAuthorization: "
                           f"Bearer nonsense\r\nContent-Length: {len(smuggled)}\r\n\r\n"
                           .encode() + smuggled + b"GET /_emulator/settings HTTP/1.1\r\n"
                           b"Host: x\r\nConnection: close\r\n\r\n")
        answers = b""
        while chunk := connection.recv(65536):
            answers += chunk
    assert re.findall(rb"HTTP/1\.1 (\d+) ", answers) == [b"401", b"200"]
    assert b"fault_rate" in answers and b"time_scale" in answers  # settings', not clock's
    assert not (stored.parent / "x").exists()


@pytest.mark.parametrize("entries, named", [
    ([1], "entry 1 is not an object"),
    ([{"type": "transfer", "src_urls": "go://x/a", "dest_urls": []}], "src_urls must be"),
    ([{"type": "transfer", "lfn": "a", "src_urls": [{"site_label": "a"}], "dest_urls": []}],
     "entry 1 (a): src_urls must be"),
    ([{"type": "transfer", "src_urls": [{"url": "file:///tmp/a"}], "dest_urls": [{"url": 5}]}],
     "dest_urls must be"),
], ids=["not an object", "urls a string", "no url", "url a number"])
def test_input_of_the_wrong_shape_is_one_line_and_exit_2(site, entries, named):
    result = site.run(*entries)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert named in line


def test_sigterm_reaches_the_stock_tool_and_leaves_no_spec_file(site, pegasus, tmp_path):
    """The stock pegasus-transfer, blocked reading a FIFO nobody writes, gets the SIGTERM sent
    to the bridge; its temporary spec file (which holds nothing secret, but is ours) goes."""
    import signal
    import time

    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)
    spool = tmp_path / "spool"
    spool.mkdir()
    env = {**site.env, "PEGASUS_HOME": str(pegasus.home), "TMPDIR": str(spool)}
    bridge = subprocess.Popen(BRIDGE, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=env, text=True,
                              start_new_session=True)
    bridge.stdin.write(json.dumps([site.entry(f"file://{fifo}", f"file://{tmp_path}/copy")]))
    bridge.stdin.close()
    from bench.sidecar_signals import descendants

    def stock_tool() -> list[int]:
        """The Python pegasus-transfer.py, once exec'd: before, Pegasus' shell wrapper and a
        pyenv shim's bash bear its name, and so do their `$(...)` subshells, which come and
        go."""
        found = []
        for pid in descendants(bridge.pid):
            with contextlib.suppress(OSError):  # ended meanwhile
                if (b"pegasus-transfer.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
                        and os.path.basename(os.readlink(f"/proc/{pid}/exe")).startswith(
                            "python")):
                    found.append(pid)
        return found

    try:
        deadline = time.monotonic() + 30
        while not stock_tool():
            assert time.monotonic() < deadline, "the stock pegasus-transfer never started"
            time.sleep(0.05)
        (stock,) = stock_tool()
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(timeout=30) == -signal.SIGTERM
        assert not os.path.exists(f"/proc/{stock}")  # reaped by the bridge before it ended
        assert list(spool.glob("pegasus-transfer-*.json")) == []
    finally:  # failed or not, nothing of it is left (its session: the bridge and the tool)
        with contextlib.suppress(OSError):
            os.killpg(bridge.pid, signal.SIGKILL)
        bridge.wait(30)


@pytest.mark.parametrize("name", ["a b.txt", "100%.txt", "caf\u00e9.txt", "x#y?z.txt"])
def test_names_needing_percent_encoding_arrive_as_named(site, name):
    """The bridge encodes what it sends; the collection's HTTPS server decodes, as GCS does."""
    local = site.scratch / name
    local.write_bytes(b"named\n")
    up = site.run(site.entry(f"file://{local}", f"go://{site.collection}/data/{name}"))
    assert up.returncode == 0, up.stderr
    stored = site.emulator.collection_path(site.collection) / "data" / name
    assert stored.read_bytes() == b"named\n"
    back = site.scratch / f"back-{name}"
    down = site.run(site.entry(f"go://{site.collection}/data/{name}", f"file://{back}"))
    assert down.returncode == 0, down.stderr
    assert back.read_bytes() == b"named\n"


def test_the_https_scope_is_matched_whole(site, transfer_client):
    import requests

    server = transfer_client.get_endpoint(site.collection)["https_server"]
    _, tokens = login(f"https://auth.globus.org/scopes/{site.collection}/httpsXYZ")
    token = next(iter(tokens.by_resource_server.values()))["access_token"]
    answer = requests.get(f"{server}/data/raw.csv", headers={"Authorization": f"Bearer {token}"},
                          timeout=10)
    assert answer.status_code in (401, 403)


def test_a_rerun_leaves_no_partial_file_of_a_killed_download(site):
    (site.scratch / ".raw.csv.part").write_bytes(b"what a SIGKILLed run left")
    result = site.run(site.entry(f"go://{site.collection}/data/raw.csv",
                                 f"file://{site.scratch}/raw.csv"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in site.scratch.iterdir()) == ["raw.csv"]


def test_a_full_disk_names_the_file_and_keeps_nothing(site):
    import resource

    def small_files() -> None:  # writes past 1000 bytes fail, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))

    source = f"go://{site.collection}/data/raw.csv"
    result = subprocess.run(BRIDGE, input=json.dumps([site.entry(
        source, f"file://{site.scratch}/raw.csv")]), capture_output=True, text=True,
        env=site.env, timeout=120, preexec_fn=small_files)
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert f"{source} -> {site.scratch}/raw.csv: File too large" in line
    assert line.count(source) == 1
    assert list(site.scratch.iterdir()) == []


FILE_URLS = ["file://rel/a%20b.bin", "file:rel2/c.bin", "file://rel3/${NO_SUCH_VARIABLE}d.bin"]


def test_file_urls_are_read_as_the_stock_pegasus_transfer_reads_them(site, pegasus, tmp_path):
    """Relative after file://, no percent-decoding, unknown variables to nothing: where the
    stock tool writes a file:// destination, the bridge writes it too."""
    source = tmp_path / "source.bin"
    source.write_bytes(b"x")
    landed = {}
    for tool in ("stock", "bridge"):
        cwd = tmp_path / tool
        cwd.mkdir()
        if tool == "stock":
            entries = [site.entry(f"file://{source}", url) for url in FILE_URLS]
            result = subprocess.run([str(pegasus.home / "bin" / "pegasus-transfer")],
                                    input=json.dumps(entries), capture_output=True, text=True,
                                    env={**site.env, "PEGASUS_HOME": str(pegasus.home)},
                                    cwd=cwd, timeout=120)
        else:
            result = site.run(*[site.entry(f"go://{site.collection}/data/raw.csv", url)
                                for url in FILE_URLS], cwd=cwd)
        assert result.returncode == 0, result.stdout + result.stderr
        landed[tool] = sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*") if p.is_file())
    assert landed["bridge"] == landed["stock"] == ["rel/a%20b.bin", "rel2/c.bin", "rel3/d.bin"]


def test_the_environments_proxies_are_read_once_per_collection(site, transfer_client,
                                                              monkeypatch):
    """requests read proxies from os.environ on every request (a scan of the environment,
    2 ms a file on a small one); the bridge reads them once per collection, as requests
    would, so a proxy in the environment is still used."""
    import requests.sessions

    from pegasus_globus.transfer.bridge import HttpsBridge
    from pegasus_globus.transfer.operations import GlobusTransfers
    from pegasus_globus.transfer.urls import GoUrl

    asked: list[str] = []
    original = requests.sessions.get_environ_proxies

    def counting(url: str, no_proxy: Any = None) -> Any:
        if "/https/" in url:
            asked.append(url)
        return original(url, no_proxy=no_proxy)
    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counting)
    store = TokenStore(site.home / ".pegasus" / "globus.conf")
    bridge = HttpsBridge(GlobusTransfers(transfer_client), store)
    for index in range(3):
        bridge.download(GoUrl(site.collection, "/data/raw.csv"),
                        site.scratch / f"copy{index}.csv")
    assert len(asked) == 1
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    other = HttpsBridge(GlobusTransfers(transfer_client), store)
    assert other._settings(site.collection, "http://127.0.0.1:1/https/x")["proxies"] == {
        "http": "http://proxy.invalid:3128"}


def test_downloads_from_one_directory_list_it_once_and_check_every_size(site, transfer_client):
    """One listing per directory instead of a stat per file; a file the listing lacks (it came
    after) is stat'ed, and a size that differs from the listing's is still refused."""
    from pegasus_globus.transfer.bridge import HttpsBridge
    from pegasus_globus.transfer.operations import GlobusTransfers
    from pegasus_globus.transfer.urls import GoUrl
    from pegasus_globus.transfer.watch import TransferFailed

    root = site.emulator.collection_path(site.collection) / "many"
    root.mkdir()
    for index in range(5):
        (root / f"f{index}").write_bytes(b"x" * index)
    bridge = HttpsBridge(GlobusTransfers(transfer_client),
                         TokenStore(site.home / ".pegasus" / "globus.conf"))
    admin(site.emulator, "DELETE", "_emulator/stats")
    for index in range(5):
        assert bridge.download(GoUrl(site.collection, f"/many/f{index}"),
                               site.scratch / f"f{index}") == index
    calls = admin(site.emulator, "GET", "_emulator/stats")["requests"]
    assert calls.get("GET /v0.10/operation/endpoint/{endpoint_id}/ls") == 1
    assert "GET /v0.10/operation/endpoint/{endpoint_id}/stat" not in calls
    (root / "late").write_bytes(b"late")
    assert bridge.download(GoUrl(site.collection, "/many/late"), site.scratch / "late") == 4
    (root / "f3").write_bytes(b"changed since it was listed")
    with pytest.raises(TransferFailed, match="the collection lists 3"):
        bridge.download(GoUrl(site.collection, "/many/f3"), site.scratch / "f3-again")
    assert not (site.scratch / "f3-again").exists()


def test_threads_downloading_from_one_directory_list_it_once(site, transfer_client,
                                                             monkeypatch):
    """Seen (bench.scaling bridge): 4 listings of a 10,000-file directory, one per thread, each
    thread asking before the first listing came back. The listing is made slow here, so that
    every thread asks while it is under way; and so the endpoint document."""
    import time

    from pegasus_globus.emulator.transfer import endpoints, operations
    from pegasus_globus.transfer.bridge import HttpsBridge
    from pegasus_globus.transfer.operations import GlobusTransfers
    from pegasus_globus.transfer.urls import GoUrl

    root = site.emulator.collection_path(site.collection) / "many"
    root.mkdir()
    for index in range(8):
        (root / f"f{index}").write_bytes(b"x" * index)
    def slow(answer: Any) -> Any:
        return lambda *args: (time.sleep(0.5), answer(*args))[1]
    monkeypatch.setattr(operations, "_ls_filtered", slow(operations._ls_filtered))
    monkeypatch.setattr(endpoints, "collection_id", slow(endpoints.collection_id))
    bridge = HttpsBridge(GlobusTransfers(transfer_client),
                         TokenStore(site.home / ".pegasus" / "globus.conf"))
    admin(site.emulator, "DELETE", "_emulator/stats")
    moved = bridge.run([("download", GoUrl(site.collection, f"/many/f{index}"),
                         site.scratch / f"f{index}") for index in range(8)], threads=4)
    assert [result for _, result in moved] == list(range(8))
    calls = admin(site.emulator, "GET", "_emulator/stats")["requests"]
    assert calls.get("GET /v0.10/operation/endpoint/{endpoint_id}/ls") == 1
    assert calls.get("GET /v0.10/endpoint/{endpoint_id}") == 1  # was 4 too
    assert "GET /v0.10/operation/endpoint/{endpoint_id}/stat" not in calls


@pytest.mark.parametrize("unreachable", ["get_endpoint", "operation_ls"])
def test_threads_share_the_first_ones_globus_unreachable(site, transfer_client, monkeypatch,
                                                        unreachable):
    """Globus Transfer out of reach (globus-sdk's retries spent, about 15 s a request): the
    threads waiting for the first one's endpoint document or listing take its failure instead
    of asking again one after another. Seen: 62 s for 4 files on 4 threads, 18.7 s before the
    threads waited for one another."""
    import globus_sdk

    from pegasus_globus.transfer.bridge import HttpsBridge
    from pegasus_globus.transfer.operations import GlobusTransfers
    from pegasus_globus.transfer.urls import GoUrl

    root = site.emulator.collection_path(site.collection) / "many"
    root.mkdir()
    for index in range(8):
        (root / f"f{index}").write_bytes(b"x" * index)
    asked = []

    def out_of_reach(*args: Any, **kwargs: Any) -> Any:
        asked.append(args)
        raise globus_sdk.NetworkError("ConnectionError on request",
                                      ConnectionError("Connection refused"))
    monkeypatch.setattr(transfer_client, unreachable, out_of_reach)
    bridge = HttpsBridge(GlobusTransfers(transfer_client),
                         TokenStore(site.home / ".pegasus" / "globus.conf"))
    moved = bridge.run([("download", GoUrl(site.collection, f"/many/f{index}"),
                         site.scratch / f"f{index}") for index in range(8)], threads=4)
    assert len(asked) == 1
    assert all("ConnectionError" in str(result) for _, result in moved), moved
    assert not list(site.scratch.glob("f*"))


def test_uploads_to_one_directory_are_checked_with_one_listing(site, transfer_client):
    """An upload's size is checked against the collection after it landed: for a batch, one
    listing per directory once all landed, instead of a stat each (which cost as much as the
    upload); a lone upload is stat'ed. A size that differs, or a file gone, is refused."""
    from pegasus_globus.transfer.bridge import HttpsBridge
    from pegasus_globus.transfer.operations import GlobusTransfers
    from pegasus_globus.transfer.urls import GoUrl

    for index in range(5):
        (site.scratch / f"f{index}").write_bytes(b"x" * index)
    bridge = HttpsBridge(GlobusTransfers(transfer_client),
                         TokenStore(site.home / ".pegasus" / "globus.conf"))
    admin(site.emulator, "DELETE", "_emulator/stats")
    moved = bridge.run([("upload", GoUrl(site.collection, f"/up/f{index}"),
                         site.scratch / f"f{index}") for index in range(5)])
    assert [result for _, result in moved] == [0, 1, 2, 3, 4]
    calls = admin(site.emulator, "GET", "_emulator/stats")["requests"]
    assert calls.get("GET /v0.10/operation/endpoint/{endpoint_id}/ls") == 1
    assert "GET /v0.10/operation/endpoint/{endpoint_id}/stat" not in calls

    admin(site.emulator, "DELETE", "_emulator/stats")
    assert bridge.upload(site.scratch / "f3", GoUrl(site.collection, "/lone/f3")) == 3
    calls = admin(site.emulator, "GET", "_emulator/stats")["requests"]
    assert calls.get("GET /v0.10/operation/endpoint/{endpoint_id}/stat") == 1
    assert "GET /v0.10/operation/endpoint/{endpoint_id}/ls" not in calls

    checked = bridge.check_uploads([(GoUrl(site.collection, "/up/f1"), 1),
                                    (GoUrl(site.collection, "/up/f2"), 99),
                                    (GoUrl(site.collection, "/up/gone"), 3)])
    assert checked[0] is None
    assert "the collection lists 2 bytes after the upload of 99" in str(checked[1])
    assert "no such file" in str(checked[2])


def test_the_commands_uploads_to_one_directory_are_checked_with_one_listing(site):
    go = f"go://{site.collection}"
    entries = []
    for index in range(3):
        (site.scratch / f"out{index}").write_bytes(b"result\n" * index)
        entries.append(site.entry(f"file://{site.scratch}/out{index}",
                                  f"{go}/results/out{index}", lfn=f"out{index}"))
    admin(site.emulator, "DELETE", "_emulator/stats")
    result = site.run(*entries)
    assert result.returncode == 0, result.stderr
    calls = admin(site.emulator, "GET", "_emulator/stats")["requests"]
    assert calls.get("GET /v0.10/operation/endpoint/{endpoint_id}/ls") == 1
    assert "GET /v0.10/operation/endpoint/{endpoint_id}/stat" not in calls
    assert result.stderr.count("upload go://") == 3  # each landed file named, as before
    root = site.emulator.collection_path(site.collection) / "results"
    assert [(root / f"out{index}").read_bytes() for index in range(3)] == [
        b"result\n" * index for index in range(3)]


def test_an_upload_is_sent_in_the_chunks_a_download_is_read_in(site, transfer_client,
                                                                monkeypatch):
    """1 MiB at a time, not urllib3's 16 KiB: each write lets another thread take the
    interpreter, and 64 of them a MiB made a 0.32 MB upload cost twice its download."""
    import http.client

    from pegasus_globus.transfer.bridge import CHUNK, HttpsBridge
    from pegasus_globus.transfer.operations import GlobusTransfers
    from pegasus_globus.transfer.urls import GoUrl

    sent: list[int] = []
    send = http.client.HTTPConnection.send

    def counted(connection: Any, data: Any) -> None:
        sent.append(len(data))
        send(connection, data)
    monkeypatch.setattr(http.client.HTTPConnection, "send", counted)
    (site.scratch / "big").write_bytes(b"x" * (3 * CHUNK))
    bridge = HttpsBridge(GlobusTransfers(transfer_client),
                         TokenStore(site.home / ".pegasus" / "globus.conf"))
    assert bridge.upload(site.scratch / "big", GoUrl(site.collection, "/data/big")) == 3 * CHUNK
    assert [size for size in sent if size > 4096] == [CHUNK] * 3  # headers and API calls aside
