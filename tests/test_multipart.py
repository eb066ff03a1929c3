"""Files in $PEGASUS_MULTIPART_DIR: every writer there names its file after the time in seconds,
so two writers in one job within one second (PegasusLite's stage-in and stage-out by the
bridge, the stock pegasus-transfer beside it) must never replace each other's file."""

from __future__ import annotations

import os

from kickstart_gpu.block_writer import write_record
from pegasus_globus import bridge_cli, multipart


def test_two_bridge_runs_in_the_same_second_keep_both_attempt_lists(tmp_path, monkeypatch):
    monkeypatch.setenv("PEGASUS_MULTIPART_DIR", str(tmp_path))
    monkeypatch.setattr(multipart.time, "time", lambda: 1700000000.5)
    bridge_cli.write_multipart(["  - lfn: first\n"])
    bridge_cli.write_multipart(["  - lfn: second\n"])
    files = sorted(os.listdir(tmp_path))  # what PegasusLite lists: ls | sort
    assert len(files) == 2, files
    assert [(tmp_path / name).read_text().splitlines()[1] for name in files] == [
        "  - lfn: first", "  - lfn: second"]


def test_the_stock_tools_file_cannot_replace_one_of_the_same_name(tmp_path):
    (tmp_path / "1700000000-transfer").write_text("- transfer_attempts: ours\n")
    private = tmp_path / ".stock-x"
    private.mkdir()
    (private / "1700000000-transfer").write_text("- transfer_attempts: stock\n")
    multipart.adopt(str(private), str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["1700000000-transfer", "1700000000-transfer.1"]
    assert (tmp_path / "1700000000-transfer.1").read_text() == "- transfer_attempts: stock\n"


def test_gpu_blocks_from_one_process_in_one_second_are_both_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(multipart.time, "time", lambda: 1700000000.0)
    environ = {"PEGASUS_MULTIPART_DIR": str(tmp_path)}
    first = write_record({"kickstart.inv.gpu.stats": [{"n": 1}]}, None, environ)
    second = write_record({"kickstart.inv.gpu.stats": [{"n": 2}]}, None, environ)
    assert first != second and sorted(os.listdir(tmp_path)) == sorted(
        os.path.basename(path) for path in (first, second))
