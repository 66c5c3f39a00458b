"""JSON bodies, strictly: no NaN or Infinity, no float that overflows, no lone
surrogate.

Python's json module accepts them, but they are not JSON (RFC 8259) or not text, and
PostgreSQL refuses them, so they would fail late, in the database. NUL characters are
refused before the body is parsed (``console.api``).
"""

from __future__ import annotations

import re
from typing import Any

from django.http import HttpRequest
from ninja.parser import Parser

from governance.api import errors
from governance.hygiene import ERR_NOT_FINITE, first_problem, json_loads_strict

__all__ = ["ERR_NOT_FINITE", "StrictJsonParser"]


# A lone surrogate can only come from a \uD800-\uDFFF escape (UTF-8 cannot carry one):
# only a body with such an escape is walked.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class StrictJsonParser(Parser):
    def parse_body(self, request: HttpRequest) -> Any:
        body = request.body
        data = json_loads_strict(body)
        problem = first_problem(data) if _SURROGATE_ESCAPE.search(body) else None
        if problem is not None:
            # Raised through ninja's "cannot parse" wrapper: errors._http_error unwraps it.
            raise errors.ApiError(
                422,
                errors.VALIDATION_FAILED,
                problem.message,
                {"loc": ["body", *problem.path], "where": problem.where},
            )
        return data
