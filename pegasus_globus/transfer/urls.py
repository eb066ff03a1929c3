"""``go://<collection uuid>/<absolute path>`` URLs, as Pegasus writes them."""

from __future__ import annotations

import re
import uuid
from typing import NamedTuple

_GO_URL = re.compile(r"^go://(?P<collection>[^/]+)(?P<path>/.*)?$")


class GoUrl(NamedTuple):
    collection: str
    path: str

    def __str__(self) -> str:
        return f"go://{self.collection}{self.path}"


def parse_go_url(url: str) -> GoUrl:
    """Split a go:// URL; a ValueError says what is wrong with it."""
    match = _GO_URL.match(url.strip())
    if not match:
        raise ValueError(f"'{url}' is not a go:// URL (go://<collection uuid>/<absolute path>)")
    try:
        collection = str(uuid.UUID(match.group("collection")))
    except ValueError:
        raise ValueError(f"'{url}' does not name a collection by UUID "
                         "(go://<collection uuid>/<absolute path>)") from None
    return GoUrl(collection, match.group("path") or "/")
