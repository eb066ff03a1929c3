"""Write each command's man page from its own argument parser, so pages and --help agree.

    python -m pegasus_globus.manpage share/man/man1
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

# command name -> "module:function" returning its ArgumentParser
COMMANDS = {
    "pegasus-globus-emulator": "pegasus_globus.emulator.cli:_parser",
    "pegasus-globus-online-init": "pegasus_globus.online_init:_parser",
    "pegasus-globus-online": "pegasus_globus.online:_parser",
    "pegasus-kickstart-gpu": "kickstart_gpu.cli:_parser",
    "pegasus-globus-timer": "pegasus_globus.timers.cli:_parser",
    "pegasus-globus-setup": "pegasus_globus.setup_cli:_parser",
}


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("-", "\\-").replace("'", "\\(aq")


def _help(action: argparse.Action) -> str:
    text = action.help or ""
    if "%(" in text:
        text = text % {**vars(action), "default": action.default}
    return text


def _summary(parser: argparse.ArgumentParser) -> str:
    """The description's first clause: up to the first colon or sentence end."""
    return re.split(r"[:.](?:\s|$)", parser.description or "", maxsplit=1)[0]


def render(name: str, parser: argparse.ArgumentParser) -> str:
    usage = parser.format_usage().replace("usage: ", "", 1).strip()
    lines = [
        f'.TH "{name.upper()}" "1" "" "pegasus-globus" "User Commands"',
        ".SH NAME", f"{_escape(name)} \\- {_escape(_summary(parser))}",
        ".SH SYNOPSIS", ".nf", _escape(" ".join(usage.split())), ".fi",
        ".SH DESCRIPTION", _escape(parser.description or ""), ".SH OPTIONS",
    ]
    for action in parser._actions:  # argparse keeps no public list of its actions
        if action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            metavar = "" if action.nargs == 0 else " " + (
                action.metavar or action.dest.upper()) + (" ..." if action.nargs == "+" else "")
            label = ", ".join(f"\\fB{_escape(o)}\\fR{_escape(metavar)}"
                              for o in action.option_strings)
        else:
            label = f"\\fI{_escape(action.metavar or action.dest)}\\fR"
        lines += [".TP", label, _escape(_help(action))]
    if parser.epilog:
        lines += [".SH NOTES", _escape(parser.epilog)]
    lines += [".SH SEE ALSO", ", ".join(f"\\fB{_escape(other)}\\fR(1)"
                                        for other in COMMANDS if other != name)]
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    rendered = {}
    for name, target in COMMANDS.items():
        module, function = target.split(":")
        parser = getattr(importlib.import_module(module), function)()
        rendered[f"{name}.1"] = render(name, parser)
    return rendered


def main(argv: list[str] | None = None) -> int:
    directory = Path((argv or sys.argv[1:] or ["share/man/man1"])[0])
    directory.mkdir(parents=True, exist_ok=True)
    for filename, text in pages().items():
        (directory / filename).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
