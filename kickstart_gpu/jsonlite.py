"""JSON out and in through the C functions that json itself runs, without importing json.

json's decoder imports re, and re imports enum and functools: 7 to 14 ms on every job the
sidecar wraps, whose only JSON is the record it writes (and a replayed trace, read before the
job starts). The results are json's: the same C encoder and scanner, with json's arguments;
where they are not to be had (another Python), and for every error message, json itself runs.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

_WHITESPACE = " \t\n\r"


def _encoder(allow_nan: bool) -> Callable[[Any], str]:
    """``json.dumps(value, separators=(",", ":"), default=str, allow_nan=allow_nan)``."""
    try:
        from _json import encode_basestring_ascii, make_encoder

        encode = make_encoder(None, str, encode_basestring_ascii, None, ":", ",", False, False,
                              allow_nan)
        return lambda value: "".join(encode(value, 0))
    except (ImportError, TypeError):
        import json

        return lambda value: json.dumps(value, separators=(",", ":"), default=str,
                                        allow_nan=allow_nan)


dumps = _encoder(allow_nan=True)
dumps_finite = _encoder(allow_nan=False)  # NaN and infinities raise ValueError


class _DecoderSettings:
    """What json's C scanner reads from a ``json.JSONDecoder()``."""

    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int = float, int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"),
                      "NaN": float("nan")}.__getitem__


def loads(text: str) -> Any:
    """``json.loads(text)``: the same value, or json's own error (a ValueError)."""
    try:
        from _json import make_scanner

        start = len(text) - len(text.lstrip(_WHITESPACE))
        value, end = make_scanner(_DecoderSettings())(text, start)
        if not text[end:].strip(_WHITESPACE):
            return value
    except (ImportError, TypeError, ValueError, StopIteration):
        pass
    import json

    return json.loads(text)  # what it says of a bad text is json's
