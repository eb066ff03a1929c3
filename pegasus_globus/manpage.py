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
    "pegasus-globus-transfer": "pegasus_globus.bridge_cli:_parser",
    "pegasus-globus-online": "pegasus_globus.online:_parser",
    "pegasus-kickstart-gpu": "kickstart_gpu.cli:_parser",
    "pegasus-globus-timer": "pegasus_globus.timers.cli:_parser",
    "pegasus-globus-setup": "pegasus_globus.setup_cli:_parser",
}
# commands whose subcommands have parsers of their own, outside argparse's subparsers
SUBCOMMANDS = {"pegasus-kickstart-gpu": {"report": "kickstart_gpu.report:_parser"}}


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


def _options(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    for action in parser._actions:  # argparse keeps no public list of its actions
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        if action.option_strings:
            shown = action.metavar or action.dest.upper()
            shown = " ".join(shown) if isinstance(shown, tuple) else shown  # --item SRC DST ...
            metavar = "" if action.nargs == 0 else f" {shown}" + (
                " ..." if action.nargs == "+" else "")
            label = ", ".join(f"\\fB{_escape(o)}\\fR{_escape(metavar)}"
                              for o in action.option_strings)
        else:
            label = f"\\fI{_escape(action.metavar or action.dest)}\\fR"
        lines += [".TP", label, _escape(_help(action))]
    return lines


def _commands(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
    """A section per subcommand, nested ones included (``job transfer``)."""
    lines = []
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, sub in action.choices.items():
            lines += _command(f"{prefix} {name}", sub, helps.get(name))
    return lines


def _command(title: str, parser: argparse.ArgumentParser, summary: str | None) -> list[str]:
    usage = parser.format_usage().replace("usage: ", "", 1).strip()
    lines = [f".SS {_escape(title)}", ".nf", _escape(" ".join(usage.split())), ".fi",
             _escape(parser.description or summary or "")]
    return lines + _options(parser) + _commands(parser, title)


def render(name: str, parser: argparse.ArgumentParser,
           subcommands: dict[str, argparse.ArgumentParser] | None = None) -> str:
    usage = parser.format_usage().replace("usage: ", "", 1).strip()
    lines = [
        f'.TH "{name.upper()}" "1" "" "pegasus-globus" "User Commands"',
        ".SH NAME", f"{_escape(name)} \\- {_escape(_summary(parser))}",
        ".SH SYNOPSIS", ".nf", _escape(" ".join(usage.split())), ".fi",
        ".SH DESCRIPTION", _escape(parser.description or ""), ".SH OPTIONS",
        *_options(parser),
    ]
    commands = _commands(parser, name)
    for sub, sub_parser in (subcommands or {}).items():
        commands += _command(f"{name} {sub}", sub_parser, None)
    if commands:
        lines += [".SH COMMANDS", *commands]
    if parser.epilog:
        lines += [".SH NOTES", _escape(parser.epilog)]
    lines += [".SH SEE ALSO", ", ".join(f"\\fB{_escape(other)}\\fR(1)"
                                        for other in COMMANDS if other != name)]
    return "\n".join(lines) + "\n"


def _load(target: str) -> argparse.ArgumentParser:
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)()


def pages() -> dict[str, str]:
    rendered = {}
    for name, target in COMMANDS.items():
        subcommands = {sub: _load(t) for sub, t in SUBCOMMANDS.get(name, {}).items()}
        rendered[f"{name}.1"] = render(name, _load(target), subcommands)
    return rendered


def main(argv: list[str] | None = None) -> int:
    directory = Path((argv or sys.argv[1:] or ["share/man/man1"])[0])
    directory.mkdir(parents=True, exist_ok=True)
    for filename, text in pages().items():
        (directory / filename).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
