"""Edit an INI file in place: change some keys, keep every other line as it was.

``configparser`` drops comments and reorders nothing but rewrites everything, so a user's
notes in ``globus.conf`` would vanish on our first write. This edits only the lines of the
keys it changes.
"""

from __future__ import annotations

import re
from typing import Mapping, Optional

_SECTION = re.compile(r"^\s*\[(?P<name>[^\]]+)\]\s*$")
_KEY = re.compile(r"^(?P<key>[^=:\s#;][^=:]*?)\s*[=:]")

# None as a key's value deletes the key; None as a section's value deletes the section.
Changes = Mapping[str, Optional[Mapping[str, Optional[str]]]]


def update_ini(text: str, changes: Changes) -> str:
    """``text`` with ``changes`` applied; keys match case-insensitively, as in configparser."""
    lines = text.splitlines()
    output: list[str] = []
    pending = {section: dict(keys) if keys is not None else None
               for section, keys in changes.items()}
    section: str | None = None

    def close_section() -> None:
        keys = pending.get(section) if section is not None else None
        if not keys:
            return
        trailing = []  # new keys go before the section's trailing blank lines
        while output and not output[-1].strip():
            trailing.append(output.pop())
        output.extend(f"{k} = {v}" for k, v in keys.items() if v is not None)
        output.extend(trailing)
        keys.clear()

    skipping = False
    replaced = False  # the last key line was replaced: drop its continuation lines
    for line in lines:
        if replaced and line[:1].isspace() and line.strip():
            continue
        replaced = False
        header = _SECTION.match(line)
        if header:
            close_section()
            section = header.group("name").strip()
            skipping = section in pending and pending[section] is None
            if not skipping:
                output.append(line)
            continue
        if skipping:
            continue
        key = _KEY.match(line)
        keys = pending.get(section) if section is not None else None
        if key and keys is not None:
            name = key.group("key").strip().lower()
            match = next((k for k in keys if k.lower() == name), None)
            if match is not None:
                value = keys.pop(match)
                if value is not None:
                    output.append(f"{match} = {value}")
                replaced = True
                continue
        output.append(line)
    close_section()
    for name, keys in pending.items():  # sections not in the file yet
        if keys and any(v is not None for v in keys.values()):
            if output and output[-1].strip():
                output.append("")
            output.append(f"[{name}]")
            output.extend(f"{k} = {v}" for k, v in keys.items() if v is not None)
    return "\n".join(output) + "\n"
