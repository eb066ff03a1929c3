"""bench.handler_vs_stock makes the stock handler's virtual environment once, in
.bench/stock-venv, and takes it as made when its bin/python exists (tester s32c). Ctrl-C or
SIGTERM during its pip installs (the first run's first 30 s) leaves bin/python without
globus-sdk 3 or Pegasus: every later run then ends in a CalledProcessError traceback
(``import Pegasus`` fails) until the directory is removed by hand. Fails at commit 98d03e2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench import handler_vs_stock


def test_a_stock_venv_setup_interrupted_in_its_installs_is_redone_next_run(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setattr(handler_vs_stock, "STOCK_VENV", tmp_path / "stock-venv")
    commands: list[list[str]] = []

    def interrupted(command, **options):  # the venv made, then Ctrl-C in the first install
        commands.append(list(command))
        if "venv" in command:
            (tmp_path / "stock-venv" / "bin").mkdir(parents=True)
            (tmp_path / "stock-venv" / "bin" / "python").symlink_to(sys.executable)
            return subprocess.CompletedProcess(command, 0)
        raise KeyboardInterrupt
    monkeypatch.setattr(handler_vs_stock.subprocess, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        handler_vs_stock.stock_command()

    installs: list[list[str]] = []

    def recorded(command, **options):  # the next run
        installs.extend([command] if "install" in command else [])
        return subprocess.CompletedProcess(command, 0, stdout="/x/pegasus-globus-online.py\n")
    monkeypatch.setattr(handler_vs_stock.subprocess, "run", recorded)
    handler_vs_stock.stock_command()
    assert any("globus-sdk>=3,<4" in command for command in installs), \
        "the half-made stock venv was taken as made"
