"""What a person's browser does at the emulator: open the authorize URL, read the code."""

from __future__ import annotations

import json
import urllib.request


def approve(authorize_url: str, timeout: float = 10.0) -> str:
    """The authorization code the emulator shows for ``authorize_url``.

    Only for the emulator: real Globus Auth needs a person to log in.
    """
    request = urllib.request.Request(authorize_url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return str(json.load(answer)["code"])
