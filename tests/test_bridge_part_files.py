"""Downloads' part files (``.<name>.part``, ``.<name>.2.part``, ...) against what a scratch
directory may hold in their place: links, named pipes, directories, and the leftovers of
downloads killed in an order that leaves a gap in the numbers."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .test_bridge import BRIDGE, Site

DATA = b"a,b\n1,2\n" * 1000  # what Site puts in data/raw.csv
HANG = 30  # seconds: a download of 8000 bytes from loopback that takes this long hangs


@pytest.fixture
def site(emulator, tmp_path) -> Site:
    return Site(emulator, tmp_path)


def download(site: Site) -> subprocess.CompletedProcess:
    """The bridge downloading data/raw.csv into scratch/raw.csv; a TimeoutExpired (the child
    killed) where it hangs."""
    entry = site.entry(f"go://{site.collection}/data/raw.csv", f"file://{site.scratch}/raw.csv")
    return subprocess.run(BRIDGE, input=json.dumps([entry]), capture_output=True, text=True,
                          env=site.env, timeout=HANG)


@contextmanager
def held(path: Path) -> Iterator[None]:
    """``path`` as another download under way holds it."""
    with open(path, "wb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def kill_a_download_once_there_are(site: Site, monkeypatch, entries: int) -> None:
    """A download into scratch/raw.csv, SIGKILLed once the scratch directory holds ``entries``
    (its part file made), its GET never answered: nothing of it lands."""
    resolve, serve = site.emulator.https._target, threading.Event()

    def unanswered(request, *args):
        if request.method == "GET":
            serve.wait(60)
        return resolve(request, *args)
    monkeypatch.setattr(site.emulator.https, "_target", unanswered)
    entry = site.entry(f"go://{site.collection}/data/raw.csv", f"file://{site.scratch}/raw.csv")
    killed = subprocess.Popen(BRIDGE, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=site.env)
    killed.stdin.write(json.dumps([entry]).encode())
    killed.stdin.close()
    deadline = time.monotonic() + 60
    while len(list(site.scratch.iterdir())) < entries and time.monotonic() < deadline:
        time.sleep(0.01)
    killed.kill()
    killed.wait(60)
    serve.set()  # the next downloads' answers


def test_a_download_killed_beside_another_leaves_nothing_once_the_file_lands(
        site, monkeypatch):
    """Two downloads into one file (two jobs staging into a shared directory): the second
    writes a part file of its own, and is SIGKILLed mid-download. Once the file lands (the
    rerun, here), neither part file is left: the usual one is taken over, the other removed
    (before, the second's ``.raw.csv.<pid>-1.part`` stayed for good)."""
    with held(site.scratch / ".raw.csv.part"):  # the first download's, under way
        kill_a_download_once_there_are(site, monkeypatch, 2)
    # the usual part file and the killed one's; nothing landed
    assert len(list(site.scratch.iterdir())) == 2 and not (site.scratch / "raw.csv").exists()
    result = download(site)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in site.scratch.iterdir()) == ["raw.csv"]
    assert (site.scratch / "raw.csv").read_bytes() == DATA


def test_a_dangling_link_named_as_the_part_file_does_not_hang_the_download(site, tmp_path):
    """``.raw.csv.part`` a symbolic link to nothing: O_CREAT|O_EXCL says it exists, an open
    without O_CREAT says it does not, and _part_file went round that forever at full CPU."""
    (site.scratch / ".raw.csv.part").symlink_to(tmp_path / "nowhere")
    result = download(site)  # raises TimeoutExpired where it hangs
    assert not (tmp_path / "nowhere").exists()  # nothing written through the link
    if result.returncode == 0:
        target = site.scratch / "raw.csv"
        assert not target.is_symlink() and target.read_bytes() == DATA
    else:
        assert len([line for line in result.stderr.splitlines() if "ERROR" in line]) == 1


def test_a_named_pipe_named_as_a_numbered_part_file_does_not_hang_a_download_that_landed(
        site):
    """_remove_leftover_parts opens ``.raw.csv.2.part`` for writing: a named pipe there blocks
    that open until a reader comes, which none does. The file had landed; the job never ends."""
    os.mkfifo(site.scratch / ".raw.csv.2.part")
    result = download(site)  # raises TimeoutExpired where it hangs
    assert result.returncode == 0, result.stderr
    assert (site.scratch / "raw.csv").read_bytes() == DATA


def test_a_download_beside_a_held_part_file_writes_nothing_through_a_link_named_as_the_next(
        site, tmp_path):
    """``.raw.csv.part`` held by another download, ``.raw.csv.2.part`` a symbolic link to some
    file: the download must not write the collection's bytes into that file, nor land the
    target as a link to it."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"someone's file\n")
    (site.scratch / ".raw.csv.2.part").symlink_to(victim)
    with held(site.scratch / ".raw.csv.part"):
        result = download(site)
    assert result.returncode == 0, result.stderr
    assert victim.read_bytes() == b"someone's file\n"
    target = site.scratch / "raw.csv"
    assert not target.is_symlink() and target.read_bytes() == DATA


def test_a_directory_named_as_a_numbered_part_file_does_not_fail_a_download_beside_a_held_one(
        site):
    """``.raw.csv.part`` held by another download and ``.raw.csv.2.part`` a directory: the
    download can write ``.raw.csv.3.part``; it failed, "-> .../raw.csv: Is a directory", about
    a target that is no directory (before the numbered part files it landed)."""
    (site.scratch / ".raw.csv.2.part").mkdir()
    with held(site.scratch / ".raw.csv.part"):
        result = download(site)
    assert result.returncode == 0, result.stderr
    assert (site.scratch / "raw.csv").read_bytes() == DATA


def test_a_numbered_part_file_left_past_a_gap_is_removed_once_the_file_lands(
        site, monkeypatch):
    """Three downloads into one file: the first writes ``.raw.csv.part``, the second
    ``.raw.csv.2.part``, the third ``.raw.csv.3.part`` and is SIGKILLed. The second lands,
    then the first; a rerun lands too. ``.raw.csv.3.part`` was left for good: the removal of
    leftovers stops at ``.raw.csv.2.part``, gone since the second landed."""
    first, second = site.scratch / ".raw.csv.part", site.scratch / ".raw.csv.2.part"
    with held(first), held(second):  # the first two downloads, under way
        kill_a_download_once_there_are(site, monkeypatch, 3)  # the third
        second.write_bytes(DATA)
        os.replace(second, site.scratch / "raw.csv")  # the second lands
        first.write_bytes(DATA)
        os.replace(first, site.scratch / "raw.csv")  # then the first
    assert sorted(p.name for p in site.scratch.iterdir()) == [".raw.csv.3.part", "raw.csv"]
    result = download(site)  # the rerun
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in site.scratch.iterdir()) == ["raw.csv"]
