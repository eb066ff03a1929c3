"""Every command has --help and a man page, and the pages say what --help says."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pegasus_globus.manpage import COMMANDS, pages

ROOT = Path(__file__).resolve().parent.parent


def console_scripts() -> dict[str, str]:
    """Every installed command -> the module it runs: pip's console scripts, and the shell
    scripts of ``scripts =`` (which run ``python -E -m MODULE``)."""
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    entries = setup["options.entry_points"]["console_scripts"].strip().splitlines()
    commands = dict(line.replace(" ", "").split("=") for line in entries)
    for script in setup["options"]["scripts"].split():
        module = re.search(r" -m ([\w.]+)|from ([\w.]+) import run", (ROOT / script)
                           .read_text()).group(1, 2)
        module = module[0] or module[1]
        commands[Path(script).name] = f"{module}:main"
    return commands


def test_every_console_script_has_a_man_page():
    assert set(console_scripts()) == set(COMMANDS)


def test_committed_man_pages_are_current():
    for filename, text in pages().items():
        committed = ROOT / "share" / "man" / "man1" / filename
        assert committed.read_text() == text, (
            f"{committed} is stale: run python -m pegasus_globus.manpage share/man/man1")


@pytest.mark.parametrize("command", sorted(console_scripts()))
def test_help_works(command):
    module = console_scripts()[command].split(":")[0]
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("usage:")


def test_the_installed_launcher_script_runs_the_sidecar():
    launcher = Path(sys.executable).parent / "pegasus-kickstart-gpu"
    result = subprocess.run([str(launcher), "--help"], capture_output=True, text=True,
                            timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONHOME": "/nowhere"})
    assert result.returncode == 0 and "usage: pegasus-kickstart-gpu" in result.stdout


@pytest.mark.skipif(not shutil.which("man"), reason="no man command on this machine")
def test_a_plain_pip_install_puts_pages_and_traces_where_they_are_found(tmp_path):
    """`pip install .` (not editable): `man pegasus-globus-setup` works from the environment's
    bin on PATH, and --backend replay:a2x-a100-training finds the installed trace."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", "--no-deps", str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    env.pop("MANPATH", None)
    for command in ("pegasus-globus-setup", "pegasus-globus-timer", "pegasus-kickstart-gpu"):
        page = subprocess.run(["man", "-w", command], capture_output=True, text=True, env=env)
        assert page.stdout.strip() == str(venv / "share" / "man" / "man1" / f"{command}.1")
    assert (venv / "share" / "kickstart-gpu" / "traces" / "a2x-a100-training.json").is_file()
    found = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "from kickstart_gpu.trace_file import trace_path; "
                            "print(trace_path('a2x-a100-training'))"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert found.stdout.strip().startswith(str(venv / "share" / "kickstart-gpu"))


@pytest.mark.parametrize("command,sections", [
    ("pegasus-globus-setup", ["install", "uninstall", "check", "snippets"]),
    ("pegasus-globus-timer", ["job transfer", "job status", "session whoami", "register"]),
    ("pegasus-kickstart-gpu", ["report"]),
])
def test_man_pages_document_every_subcommand(command, sections):
    page = (ROOT / "share" / "man" / "man1" / f"{command}.1").read_text()
    for section in sections:
        assert f".SS {command} {section}".replace("-", "\\-") in page
