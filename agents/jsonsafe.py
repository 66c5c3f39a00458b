"""Values made safe to store as JSON in PostgreSQL, whatever a model or a tool returned.

A trace step, an escalation packet and a dead letter hold values the runtime did not
choose: a model's tool arguments, a tool's output, a work item's payload. PostgreSQL
refuses some of what Python's ``json`` writes (``NaN``, ``Infinity``, ``\\u0000``, a
lone surrogate), and the recursive walks (redaction, encoding) fail on a value nested
deeper than Python's recursion limit. ``json_safe`` returns a copy holding none of
these: non-finite numbers become their names as strings, NUL and lone surrogates
become U+FFFD, and containers deeper than ``max_depth`` are replaced by a note.

The usual value costs one encode and one decode (which a step paid already); the walk
runs only when the text shows something to clean or the encoder gave up.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

# Deeper than any trace needs, far below Python's recursion limit (the redaction and
# the encoder recurse once per level).
MAX_DEPTH = 64
CUT = "[cut: nested deeper than {depth} levels]"
REPLACEMENT = "\ufffd"

_NON_FINITE = {"NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity"}
_FLOAT_NAMES = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
# In ensure_ascii output, NUL and every surrogate are escapes; a pair (an emoji) sends
# the value through the walk too, which keeps it.
_NEEDS_WALK = re.compile(r"\\u0000|\\ud[89a-f]", re.IGNORECASE)
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


def _clean_text(text: str) -> str:
    if not _BAD_CHARS.search(text):
        return text
    # Re-pair surrogates that form a character; what stays alone is replaced.
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text.replace("\x00", REPLACEMENT)


def _walk(value: Any, depth: int, max_depth: int) -> Any:
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _FLOAT_NAMES[str(value)]
    if isinstance(value, Decimal):
        return str(value)  # as DjangoJSONEncoder writes it; "NaN", "Infinity" when not finite
    if isinstance(value, dict | list | tuple | set | frozenset):
        if depth >= max_depth:
            return CUT.format(depth=max_depth)
        if isinstance(value, dict):
            return {_clean_text(str(k)): _walk(v, depth + 1, max_depth) for k, v in value.items()}
        return [_walk(v, depth + 1, max_depth) for v in value]
    try:
        return _walk(json.loads(json.dumps(value, cls=DjangoJSONEncoder)), depth, max_depth)
    except (TypeError, ValueError, RecursionError):
        return _clean_text(repr(value))[:2000]


def json_safe(value: Any, *, max_depth: int = MAX_DEPTH) -> Any:
    """A copy of ``value`` that PostgreSQL's ``jsonb`` takes and a recursive walk survives."""
    try:
        text = json.dumps(value, sort_keys=True, cls=DjangoJSONEncoder)
        loaded = json.loads(text, parse_constant=_NON_FINITE.__getitem__)
    except (TypeError, ValueError, RecursionError):
        return _walk(value, 0, max_depth)
    # Nesting needs at least as many brackets as levels: counting them (in C) spares
    # the usual small value any look at its shape; a large one has its containers
    # (not its leaves) looked at once.
    if _NEEDS_WALK.search(text) or (
        text.count("[") + text.count("{") > max_depth and _too_deep(loaded, max_depth)
    ):
        return _walk(loaded, 0, max_depth)
    return loaded


def _too_deep(value: Any, max_depth: int) -> bool:
    """Whether the containers of a decoded value (dicts and lists only) nest deeper
    than ``max_depth``: level by level, no recursion, each container seen once."""
    level = [value]
    for _ in range(max_depth):
        below = []
        for container in level:
            for child in container.values() if type(container) is dict else container:
                if type(child) is dict or type(child) is list:
                    below.append(child)
        if not below:
            return False
        level = below
    return True


def error_text(exc: BaseException, *, limit: int = 1000) -> str:
    """An exception's message, safe to store and never itself a failure."""
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break the crash handler
        message = repr(type(exc))
    return _clean_text(message)[:limit]
