"""Values PostgreSQL (or JSON) cannot hold, found before they reach it.

A NUL character is refused by PostgreSQL's text and jsonb; a lone surrogate (half of
a UTF-16 pair, which JSON's ``\\ud800`` escape can produce) cannot be encoded as UTF-8
at all; NaN and Infinity are not JSON (RFC 8259) and jsonb refuses them. Each used to
fail late, as a 500, in the database driver. Every way in (forms, the API, tool
arguments) asks ``first_problem`` first and answers with a 4xx and one of these messages.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

ERR_NUL = "NUL characters (\\u0000) are not accepted."
ERR_SURROGATE = (
    "A lone surrogate (\\ud800 to \\udfff without its other half) is not a character; "
    "send the text as UTF-8 or as a complete surrogate pair."
)
ERR_NOT_FINITE = "Numbers must be finite: NaN and Infinity are not accepted."
ERR_JSON = "Enter valid JSON."

_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Problem:
    """What is wrong (one of the messages above) and where: a path of keys and indexes
    from the value's root (empty for the value itself)."""

    message: str
    path: tuple[str | int, ...] = ()

    @property
    def where(self) -> str:
        """The path as ``payload.items[3].name`` reads (``$`` for the root)."""
        out = "$"
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else f".{part}"
        return out


def text_problem(text: str) -> str | None:
    if "\x00" in text:
        return ERR_NUL
    if _SURROGATE.search(text):
        return ERR_SURROGATE
    return None


def first_problem(value: Any, path: tuple[str | int, ...] = ()) -> Problem | None:
    """The first NUL, lone surrogate or non-finite number in ``value`` (strings, numbers,
    and lists and dicts of them, keys included), or None. Iterative: a value nested
    thousands deep is walked without recursion."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            message = text_problem(item)
            if message:
                return Problem(message, where)
        elif isinstance(item, float):
            if not math.isfinite(item):
                return Problem(ERR_NOT_FINITE, where)
        elif isinstance(item, Decimal):
            if not item.is_finite():
                return Problem(ERR_NOT_FINITE, where)
        elif isinstance(item, Mapping):
            children = []
            for key, child in item.items():
                if isinstance(key, str) and (message := text_problem(key)):
                    return Problem(message, (*where, key))
                children.append((child, (*where, key)))
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            stack.extend(reversed([(child, (*where, i)) for i, child in enumerate(item)]))
    return None


def _refuse_constant(name: str) -> Any:
    raise ValueError(ERR_NOT_FINITE)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e999 overflows to Infinity
        raise ValueError(ERR_NOT_FINITE)
    return number


def json_loads_strict(text: str | bytes) -> Any:
    """``json.loads`` that refuses NaN, Infinity and numbers that overflow to it
    (ValueError with ``ERR_NOT_FINITE``); invalid JSON raises ValueError as usual."""
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
