"""JSON bodies, strictly: no NaN or Infinity, no float that overflows.

Python's json module accepts them, but they are not JSON (RFC 8259) and
PostgreSQL's jsonb refuses them, so they would fail late, in the database.
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.http import HttpRequest
from ninja.parser import Parser

ERR_NOT_FINITE = "Numbers must be finite: NaN and Infinity are not JSON."


def _constant(name: str) -> Any:
    raise ValueError(ERR_NOT_FINITE)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(ERR_NOT_FINITE)
    return value


class StrictJsonParser(Parser):
    def parse_body(self, request: HttpRequest) -> Any:
        return json.loads(request.body, parse_constant=_constant, parse_float=_float)
