"""Send each event to a monitoring URL as it happens, as upstream kickstart's ``-m`` does.

``file:///path`` appends JSON lines; ``http(s)://...`` POSTs each event as JSON;
``rabbitmq(s)://user:password@host[:port]/<vhost>/<exchange>`` publishes through RabbitMQ's
HTTP API (``/api/exchanges/<vhost>/<exchange>/publish``, routing key ``kickstart.inv.online``).
TLS certificates are verified.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.parse
import urllib.request
from typing import Any, Callable

TIMEOUT = 5.0
ROUTING_KEY = "kickstart.inv.online"

Sink = Callable[[dict[str, Any]], None]


def make_sink(url: str) -> Sink:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        path = urllib.parse.unquote(parts.path)

        def to_file(event: dict[str, Any]) -> None:
            with open(path, "a") as handle:
                handle.write(json.dumps(event) + "\n")
        return to_file
    if parts.scheme in ("http", "https"):
        return lambda event: _post(url, event, {})
    if parts.scheme in ("rabbitmq", "rabbitmqs"):
        segments = [urllib.parse.quote(urllib.parse.unquote(s), safe="")
                    for s in parts.path.strip("/").split("/")]
        if len(segments) != 2:
            raise ValueError(
                f"{url}: use rabbitmq://user:password@host[:port]/<vhost>/<exchange>")
        scheme = "https" if parts.scheme == "rabbitmqs" else "http"
        port = parts.port or (443 if scheme == "https" else 15672)
        target = (f"{scheme}://{parts.hostname}:{port}/api/exchanges/"
                  f"{segments[0]}/{segments[1]}/publish")
        credentials = f"{urllib.parse.unquote(parts.username or '')}:" \
                      f"{urllib.parse.unquote(parts.password or '')}"
        headers = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}

        def to_rabbitmq(event: dict[str, Any]) -> None:
            _post(target, {"properties": {}, "routing_key": ROUTING_KEY,
                           "payload": json.dumps(event), "payload_encoding": "string"}, headers)
        return to_rabbitmq
    raise ValueError(f"{url}: monitoring URLs are file://, http(s):// or rabbitmq(s)://")


def _post(url: str, document: dict[str, Any], headers: dict[str, str]) -> None:
    request = urllib.request.Request(url, data=json.dumps(document).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    context = ssl.create_default_context() if url.startswith("https") else None
    with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as answer:
        answer.read()
