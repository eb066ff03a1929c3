"""Downloads' part files against what the first re-test did not try (tester s32c): a hard
link left as a part file, another user's file, a leftover this user cannot open, a read-only
directory. Each test failed on the bridge at commit 98d03e2. (A leftover behind two missing
numbers, which four downloads at once leave in a rare order, stays: README.)"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_bridge import BRIDGE, Site
from .test_bridge_part_files import DATA, download

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
NOBODY_IDS = 65534, 65534
as_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                             reason="needs root and setpriv")


@pytest.fixture
def site(emulator, tmp_path) -> Site:
    return Site(emulator, tmp_path)


def names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_a_hard_link_left_as_the_part_file_is_not_written_through(site, tmp_path):
    """``.raw.csv.part`` a hard link to some file (O_NOFOLLOW stops symbolic links only): the
    download truncated that file, wrote the collection's bytes in it, changed its mode and
    landed the target as a second name of it."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"someone's file\n")
    victim.chmod(0o600)
    os.link(victim, site.scratch / ".raw.csv.part")
    result = download(site)
    assert result.returncode == 0, result.stderr
    assert (site.scratch / "raw.csv").read_bytes() == DATA
    assert victim.read_bytes() == b"someone's file\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert not os.path.samefile(victim, site.scratch / "raw.csv")


@as_root
def test_root_passes_over_another_users_part_file(site):
    """As root, fchmod succeeds on any file, so another user's ``.raw.csv.part`` is taken
    over and the target lands owned by that user (who can then change it)."""
    leftover = site.scratch / ".raw.csv.part"
    leftover.write_bytes(b"nobody's")
    os.chown(leftover, *NOBODY_IDS)
    result = download(site)
    assert result.returncode == 0, result.stderr
    assert (site.scratch / "raw.csv").stat().st_uid == os.geteuid()


@pytest.fixture
def nobody_site(emulator) -> Iterator[Site]:
    """A Site whose HOME and scratch directory belong to nobody, in a directory nobody can
    reach (pytest's tmp_path is root's, mode 0700)."""
    base = Path(tempfile.mkdtemp(prefix="s32c-nobody-"))
    base.chmod(0o755)
    try:
        made = Site(emulator, base)
        for directory, subdirectories, files in os.walk(base):
            for name in subdirectories + files:
                os.lchown(os.path.join(directory, name), *NOBODY_IDS)
        os.chown(base, *NOBODY_IDS)
        yield made
    finally:
        shutil.rmtree(base)


def download_as_nobody(where: Site, umask: str = "022") -> subprocess.CompletedProcess:
    entry = where.entry(f"go://{where.collection}/data/raw.csv",
                        f"file://{where.scratch}/raw.csv")
    return subprocess.run([*NOBODY, "sh", "-c", f'umask {umask} && exec "$@"', "-", *BRIDGE],
                          input=json.dumps([entry]), capture_output=True, text=True,
                          env=where.env, timeout=60, cwd="/")


@as_root
def test_another_users_part_file_of_the_new_file_mode_is_passed_over(nobody_site):
    """umask 0 (or 002 with a group-writable leftover of a group member): another user's
    ``.raw.csv.part`` has the mode a new file gets, so no fchmod is tried to tell whose it
    is, and the download lands that user's file as its target."""
    leftover = nobody_site.scratch / ".raw.csv.part"
    leftover.write_bytes(b"root's")
    leftover.chmod(0o666)
    result = download_as_nobody(nobody_site, umask="000")
    assert result.returncode == 0, result.stderr
    assert (nobody_site.scratch / "raw.csv").stat().st_uid == NOBODY_IDS[0]


@as_root
def test_an_own_leftover_this_user_cannot_open_is_taken_over_or_removed(nobody_site):
    """The user's own ``.raw.csv.part`` of mode 000 (or 0444): its mode is never changed
    (the open fails first), it is passed over for ``.raw.csv.2.part``, and no sweep removes
    it: it stays beside the landed target for good."""
    subprocess.run([*NOBODY, "sh", "-c",
                    "echo killed > .raw.csv.part && chmod 000 .raw.csv.part"],
                   cwd=nobody_site.scratch, check=True)
    result = download_as_nobody(nobody_site)
    assert result.returncode == 0, result.stderr
    assert names(nobody_site.scratch) == ["raw.csv"]


@as_root
def test_a_read_only_directory_is_named_in_the_error_with_what_to_do(nobody_site):
    """The one-line error reads "go://... -> .../scratch/raw.csv: Permission denied": it does
    not say that the directory cannot be written, which is what to fix."""
    subprocess.run([*NOBODY, "chmod", "555", str(nobody_site.scratch)], check=True)
    try:
        result = download_as_nobody(nobody_site)
    finally:
        os.chmod(nobody_site.scratch, 0o755)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, result.stderr
    assert "writ" in errors[0].lower(), errors[0]  # "directory ... is not writable", say
