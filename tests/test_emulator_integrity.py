"""The emulator's copies and uploads, at their edges: what lands is a version of the file that
existed, a task whose source cannot be read ends, and a stopped emulator leaves no half
upload in a collection. (Found by a fresh-eyes tester after the worker and HTTPS speed-ups;
these fail on the code they were found on.)"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from typing import Any
from urllib.parse import urlsplit

import globus_sdk
import pytest

from pegasus_globus.token_store import TokenStore

from .conftest import wait_for, wait_task
from .test_bridge import https_token

MIB = 1 << 20


def test_a_named_pipe_in_a_directory_ends_the_task_instead_of_blocking_its_worker(
        emulator, transfer_client):
    """A FIFO among a directory's files: the worker must not open it and wait for a writer
    (the task stayed ACTIVE for ever, a cancel could not stop it, and the emulator's stop
    waited on the worker)."""
    source, destination = str(uuid.uuid4()), str(uuid.uuid4())
    tree = emulator.collection_path(source) / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("a")
    pipe = tree / "pipe"
    os.mkfifo(pipe)
    data = globus_sdk.TransferData(source, destination)
    data.add_item("/tree/", "/copy/", recursive=True)
    task_id = transfer_client.submit_transfer(data)["task_id"]
    try:
        assert wait_for(lambda: transfer_client.get_task(task_id)["status"]
                        in ("SUCCEEDED", "FAILED"), timeout=10)
    finally:
        _release_readers(pipe)  # so that the fixture's stop of the emulator cannot hang


def _release_readers(pipe: os.PathLike[str]) -> None:
    """A reader blocked opening the FIFO is let go: opened for writing, then closed (EOF)."""
    try:
        fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: no reader waits
        return
    os.close(fd)


def test_a_source_changed_while_it_is_copied_never_lands_torn_with_verify_checksum(
        emulator, transfer_client, monkeypatch):
    """Globus' verify_checksum compares the source's checksum with the copy's: a file
    rewritten while it was read (its first MiB read as A, the rest as B) must not land as
    that mixture under a SUCCEEDED task. The checksum taken from the blocks as they were
    copied always equals the copy's, so it can never see this."""
    source, destination = str(uuid.uuid4()), str(uuid.uuid4())
    src = emulator.collection_path(source) / "changing.dat"
    src.write_bytes(b"A" * 3 * MIB)
    real_read, real_sendfile = os.read, os.sendfile
    rewritten: list[bool] = []

    def rewrite_once(fd: int) -> None:
        """The writer's turn, once the copy read its first block of the source."""
        if not rewritten and os.path.realpath(f"/proc/self/fd/{fd}") == str(src.resolve()):
            rewritten.append(True)
            src.write_bytes(b"B" * 3 * MIB)  # in place: same inode, as a writer rewrites

    def read(fd: int, size: int) -> bytes:
        block = real_read(fd, size)
        rewrite_once(fd)
        return block

    def sendfile(out_fd: int, in_fd: int, offset: Any, count: int) -> int:
        sent = real_sendfile(out_fd, in_fd, offset, count)
        rewrite_once(in_fd)
        return sent

    monkeypatch.setattr(os, "read", read)
    monkeypatch.setattr(os, "sendfile", sendfile)
    data = globus_sdk.TransferData(source, destination, verify_checksum=True)
    data.add_item("/changing.dat", "/changing.dat")
    task = wait_task(transfer_client, transfer_client.submit_transfer(data)["task_id"])
    assert rewritten  # the writer did rewrite the file while it was being copied
    landed = emulator.collection_path(destination) / "changing.dat"
    if task["status"] == "SUCCEEDED":
        assert landed.read_bytes() in (b"A" * 3 * MIB, b"B" * 3 * MIB), \
            "a torn copy (neither version of the file) landed under a SUCCEEDED task"
    else:
        assert not landed.exists()


def test_an_upload_cut_short_by_stopping_the_emulator_leaves_no_part_file(tmp_path,
                                                                           monkeypatch):
    """SIGTERM stops the emulator with its state saved; an HTTPS upload still arriving
    must not stay behind in the collection as a hidden ``.https-*.part`` (streamed to disk
    now, it did: up to the bytes received, never removed by a restart)."""
    root = tmp_path / "g"
    process = subprocess.Popen(
        [sys.executable, "-m", "pegasus_globus.emulator.cli", "--root", str(root), "--port",
         "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    connection = None
    try:
        exports = [process.stdout.readline().strip() for _ in range(4)]
        for line in exports:
            name, value = line.removeprefix("export ").split("=", 1)
            monkeypatch.setenv(name, value)
        collection = str(uuid.uuid4())
        url = urlsplit(exports[0].split("=", 1)[1])
        token = https_token(collection)
        connection = socket.create_connection((url.hostname, url.port), timeout=10)
        connection.sendall(f"PUT /https/{collection}/big.dat HTTP/1.1\r\nHost: {url.netloc}"
                           f"\r\nAuthorization: Bearer {token}\r\nContent-Length: {10 * MIB}"
                           "\r\n\r\n".encode() + b"x" * MIB)
        directory = root / "collections" / collection
        # the upload is under way once its part file is there (a server that keeps the
        # body elsewhere until it is whole shows none: then it is stopped after 5 s)
        with contextlib.suppress(AssertionError):
            wait_for(lambda: directory.is_dir() and any(directory.iterdir()), timeout=5)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    finally:
        if connection is not None:
            connection.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not directory.is_dir() or sorted(p.name for p in directory.iterdir()) == []


def test_a_download_cut_off_mid_body_is_tried_again_and_lands_whole(tmp_path, emulator,
                                                                     transfer_client,
                                                                     monkeypatch):
    """The HTTPS server sends a download as it reads it, and hangs up when the file shrank
    or it stops: the client then sees fewer bytes than the Content-Length. That is a dropped
    connection like any other (retried), not an error line ending in ``: None``."""
    from pegasus_globus.emulator import server
    from pegasus_globus.transfer.bridge import HttpsBridge
    from pegasus_globus.transfer.operations import GlobusTransfers
    from pegasus_globus.transfer.urls import GoUrl

    from .test_bridge import Site

    site = Site(emulator, tmp_path)
    (emulator.collection_path(site.collection) / "data" / "big.dat").write_bytes(
        b"y" * 3 * MIB)
    real_send_file = server._Handler._send_file
    cut: list[bool] = []

    def send_half_once(handler: Any, response: Any, body: Any) -> None:
        if cut:
            return real_send_file(handler, response, body)
        cut.append(True)  # the head says 3 MiB, one MiB comes, then the connection ends
        handler._send_head(response, 3 * MIB)
        handler.wfile.write(b"y" * MIB)
        handler.close_connection = True

    monkeypatch.setattr(server._Handler, "_send_file", send_half_once)
    bridge = HttpsBridge(GlobusTransfers(transfer_client),
                         TokenStore(site.home / ".pegasus" / "globus.conf"),
                         sleep=lambda seconds: None)
    target = site.scratch / "big.dat"
    assert bridge.download(GoUrl(site.collection, "/data/big.dat"), target) == 3 * MIB
    assert cut and target.read_bytes() == b"y" * 3 * MIB


def test_a_task_whose_total_grows_as_its_items_go_is_not_polled_in_a_spin():
    """Globus expands a recursive item into subtasks as it walks the tree, so
    ``subtasks_total`` can stay just ahead of what is done. Each poll then expects the end
    within a few hundredths of a second and the next comes 0.02 s later: 50 polls a second
    for as long as the task runs. A minute of such a task should cost about what the
    quick polls of a young task cost (every 0.25 s), not 3,000 calls."""
    from pegasus_globus.transfer.watch import TaskWatcher

    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    def get_task(task_id: str) -> dict[str, Any]:
        if now[0] >= 60:
            return {"task_id": task_id, "status": "SUCCEEDED"}
        done = int(now[0] / 0.01)  # an item every 10 ms, the walk one item ahead
        return {"task_id": task_id, "status": "ACTIVE", "nice_status": "OK",
                "subtasks_total": done + 1, "subtasks_succeeded": done}

    watcher = TaskWatcher(get_task, lambda task_id: None, inactive_timeout=900,
                          progress_interval=1e9, is_transient=lambda error: False,
                          sleep=sleep, clock=lambda: now[0])
    assert watcher.wait("task").polls <= 60 / 0.25 + 10


def test_transfer_unreachable_for_the_uploads_size_check_is_one_line_per_upload(
        tmp_path, emulator, monkeypatch, caplog):
    """The uploads' sizes are now checked after the batch, outside the per-move guard: a
    Globus Transfer that cannot be reached then (globus-sdk's retries spent) must still be
    one line naming the upload, exit 1, not a traceback out of the command."""
    import json

    from pegasus_globus import bridge_cli

    from .test_bridge import Site

    site = Site(emulator, tmp_path)
    (site.scratch / "out.dat").write_text("result")
    spec = tmp_path / "transfers.json"
    target = f"go://{site.collection}/results/out.dat"
    spec.write_text(json.dumps([site.entry(f"file://{site.scratch}/out.dat", target)]))
    monkeypatch.setenv("HOME", str(site.home))
    monkeypatch.delenv("PEGASUS_GLOBUS_CONFIG", raising=False)

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise globus_sdk.GlobusConnectionError("cannot reach it", ConnectionRefusedError(111))

    monkeypatch.setattr(globus_sdk.TransferClient, "operation_stat", unreachable)
    monkeypatch.setattr(globus_sdk.TransferClient, "operation_ls", unreachable)
    status = bridge_cli.main(["--file", str(spec)])
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert status == 1
    assert len(errors) == 1 and target in errors[0]


def test_two_downloads_to_one_local_target_at_once_land_one_whole_version(
        tmp_path, emulator, transfer_client, monkeypatch):
    """Two downloads into the same file at once (two jobs staging into one shared
    directory): each writes ``.<name>.part``, the one fixed name, so both write into the
    same file, and the first to finish renames what the other is still writing. The file
    that lands must be one of the two versions, whole, not a mixture under a success."""
    import threading

    from pegasus_globus.emulator import server
    from pegasus_globus.transfer.bridge import HttpsBridge
    from pegasus_globus.transfer.operations import GlobusTransfers
    from pegasus_globus.transfer.urls import GoUrl

    from .test_bridge import Site

    site = Site(emulator, tmp_path)
    data = emulator.collection_path(site.collection) / "data"
    versions = {"one.dat": b"1" * 3 * MIB, "two.dat": b"2" * 3 * MIB}
    for name, content in versions.items():
        (data / name).write_bytes(content)
    bridge = HttpsBridge(GlobusTransfers(transfer_client),
                         TokenStore(site.home / ".pegasus" / "globus.conf"))
    target = site.scratch / "input.dat"
    real_send_file = server._Handler._send_file
    outcomes: dict[str, Any] = {}

    def download(name: str) -> None:
        try:
            outcomes[name] = bridge.download(GoUrl(site.collection, f"/data/{name}"), target)
        except Exception as error:
            outcomes[name] = error

    def other_download_midway(handler: Any, response: Any, body: Any) -> None:
        """The first MiB of one.dat goes out, then two.dat is downloaded whole."""
        if not str(body.path).endswith("one.dat"):
            return real_send_file(handler, response, body)
        handler._send_head(response, 3 * MIB)
        handler.wfile.write(versions["one.dat"][:MIB])
        handler.wfile.flush()
        wait_for(lambda: target.parent.joinpath(".input.dat.part").stat().st_size >= MIB)
        other = threading.Thread(target=download, args=("two.dat",))
        other.start()
        other.join()
        handler.wfile.write(versions["one.dat"][MIB:])

    monkeypatch.setattr(server._Handler, "_send_file", other_download_midway)
    download("one.dat")
    assert target.read_bytes() in versions.values(), \
        f"a mixture of both versions landed (outcomes: {outcomes})"


def test_a_file_whose_name_is_near_the_longest_allowed_is_copied(emulator, transfer_client):
    """The copy's part file beside the target takes a few bytes more than its name: a name of
    250 bytes (NAME_MAX is 255) failed with ENAMETOOLONG on the part file, not the target."""
    source, destination = str(uuid.uuid4()), str(uuid.uuid4())
    name = "é" * 100 + "x" * 50  # 250 bytes, 150 characters
    (emulator.collection_path(source) / name).write_text("long")
    data = globus_sdk.TransferData(source, destination, verify_checksum=True)
    data.add_item(f"/{name}", f"/{name}")
    task = wait_task(transfer_client, transfer_client.submit_transfer(data)["task_id"])
    assert task["status"] == "SUCCEEDED", task
    assert (emulator.collection_path(destination) / name).read_text() == "long"


def test_a_task_failed_by_the_file_system_names_collection_paths_never_the_services_own(
        emulator, transfer_client):
    """A destination below a file: the task's error, as a user reads it in ``globus task
    show`` and the handler's log, speaks of the collection's paths (/results/out.dat), not of
    the directory the emulator keeps collections in, as Globus never shows its servers'."""
    source, destination = str(uuid.uuid4()), str(uuid.uuid4())
    (emulator.collection_path(source) / "out.dat").write_text("data")
    (emulator.collection_path(destination) / "results").write_text("a file, not a directory")
    data = globus_sdk.TransferData(source, destination)
    data.add_item("/out.dat", "/results/out.dat")
    task_id = transfer_client.submit_transfer(data)["task_id"]
    task = wait_task(transfer_client, task_id)
    assert task["status"] == "FAILED"
    shown = str(list(transfer_client.task_event_list(task_id))) + str(task)
    root = str(emulator.collection_path(destination))
    assert "/results" in shown
    assert root not in shown and str(emulator.root) not in shown, shown


def submit(emulator, transfer_client, setup, source_path: str, destination_path: str,
           recursive: bool = False) -> tuple[str, str, dict]:
    source, destination = str(uuid.uuid4()), str(uuid.uuid4())
    setup(emulator.collection_path(source), emulator.collection_path(destination))
    data = globus_sdk.TransferData(source, destination)
    data.add_item(source_path, destination_path, recursive=recursive)
    task = wait_task(transfer_client, transfer_client.submit_transfer(data)["task_id"])
    return source, destination, task


def test_a_recursive_task_whose_destination_directory_is_a_file_names_its_path(
        emulator, transfer_client):
    """The directory /dir/sub of a recursive item cannot be made, /dir/sub being a file on
    the destination. Seen: IO_ERROR ``Not a directory`` / ``File exists``, no path at all
    (os.walk's mkdir in _file_pairs runs outside the try that names paths)."""
    def setup(source, destination) -> None:
        (source / "dir" / "sub").mkdir(parents=True)
        (source / "dir" / "sub" / "a").write_text("a")
        (destination / "dir").mkdir()
        (destination / "dir" / "sub").write_text("a file, not a directory")
    _, destination, task = submit(emulator, transfer_client, setup, "/dir", "/dir", True)
    assert task["status"] == "FAILED" and task["fatal_error"]["code"] == "IO_ERROR"
    assert f"{destination}:/dir/sub" in task["fatal_error"]["description"], task["fatal_error"]


def test_a_source_name_too_long_names_its_collection_path(emulator, transfer_client):
    """Seen: IO_ERROR ``File name too long``, no path (the source's stat, in
    _transfer_item, runs outside the try that names paths)."""
    source, _, task = submit(emulator, transfer_client, lambda s, d: None, "/" + "n" * 300,
                             "/a")
    assert task["status"] == "FAILED" and task["fatal_error"]["code"] == "IO_ERROR"
    assert f"{source}:/nnn" in task["fatal_error"]["description"], task["fatal_error"]


def rerun_as_nobody(test: str) -> None:
    """Run ``test`` of this file again as the user nobody (root reads and writes anything):
    it must pass there."""
    if not shutil.which("setpriv"):
        pytest.skip("needs setpriv to run as a user other than root")
    base = tempfile.mkdtemp(prefix="zz-found-")
    try:
        os.chmod(base, 0o777)
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
             "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={base}/t",
             f"{__file__}::{test}"],
            capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": base},
            cwd=os.path.dirname(os.path.dirname(__file__)))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert result.returncode == 0, result.stdout[-3000:]


def test_a_recursive_task_with_an_unreadable_directory_fails(emulator, transfer_client):
    """A user who cannot read /dir/sub. Seen: the task SUCCEEDED, /dir/sub/b silently left
    out (os.walk in _file_pairs drops the error)."""
    if os.geteuid() == 0:
        return rerun_as_nobody("test_a_recursive_task_with_an_unreadable_directory_fails")

    def setup(source, destination) -> None:
        (source / "dir" / "sub").mkdir(parents=True)
        (source / "dir" / "a").write_text("a")
        (source / "dir" / "sub" / "b").write_text("b")
        os.chmod(source / "dir" / "sub", 0)
    source, _, task = submit(emulator, transfer_client, setup, "/dir", "/dir", True)
    os.chmod(emulator.collection_path(source) / "dir" / "sub", 0o755)
    assert task["status"] == "FAILED", task
    assert f"{source}:/dir/sub" in task["fatal_error"]["description"], task["fatal_error"]


def test_delete_destination_extra_refused_by_the_file_system_names_the_path(
        emulator, transfer_client):
    """A task with delete_destination_extra whose extra file /dir/ro/extra the user may not
    remove. Seen: IO_ERROR ``Permission denied``, no path (_delete_extra runs outside the try
    that names paths)."""
    if os.geteuid() == 0:
        return rerun_as_nobody(
            "test_delete_destination_extra_refused_by_the_file_system_names_the_path")
    source, destination = str(uuid.uuid4()), str(uuid.uuid4())
    (emulator.collection_path(source) / "dir").mkdir()
    (emulator.collection_path(source) / "dir" / "a").write_text("a")
    read_only = emulator.collection_path(destination) / "dir" / "ro"
    read_only.mkdir(parents=True)
    (read_only / "extra").write_text("x")
    read_only.chmod(0o555)
    data = globus_sdk.TransferData(source, destination, delete_destination_extra=True)
    data.add_item("/dir", "/dir", recursive=True)
    task = wait_task(transfer_client, transfer_client.submit_transfer(data)["task_id"])
    read_only.chmod(0o755)
    assert task["status"] == "FAILED" and task["fatal_error"]["code"] == "IO_ERROR"
    assert f"{destination}:/dir/ro" in task["fatal_error"]["description"], task["fatal_error"]


def test_a_destination_below_a_file_names_that_file_not_the_source_of_the_same_collection(
        emulator, transfer_client):
    """/out -> /out.d/x on one collection, /out.d a file. The error's file name (the part file
    below /out.d) starts with the source's path string (/out), so the source is blamed.
    Seen: ``C:/out: Not a directory``; /out is a plain file that was read fine."""
    collection = str(uuid.uuid4())
    root = emulator.collection_path(collection)
    (root / "out").write_text("data")
    (root / "out.d").write_text("a file, not a directory")
    data = globus_sdk.TransferData(collection, collection)
    data.add_item("/out", "/out.d/x")
    task = wait_task(transfer_client, transfer_client.submit_transfer(data)["task_id"])
    assert task["status"] == "FAILED" and task["fatal_error"]["code"] == "IO_ERROR"
    assert f"{collection}:/out.d" in task["fatal_error"]["description"], task["fatal_error"]
