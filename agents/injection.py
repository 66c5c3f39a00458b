"""Untrusted input stays data: delimiting for prompts and a simple injection detector.

The detector only flags, for the reviewer. Safety does not depend on it: grants,
caps and allowlists are enforced in code whatever the text says.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

DATA_OPEN = '<untrusted_data source="{source}">'
DATA_CLOSE = "</untrusted_data>"

_PATTERNS: tuple[tuple[str, str], ...] = (
    (
        "override_instructions",
        r"\b(ignore|disregard|forget)\b.{0,40}\b(instructions?|rules?|prompt|polic(y|ies))\b",
    ),
    ("role_play", r"\b(you are now|act as|pretend to be|developer mode|jailbreak)\b"),
    (
        "fake_system",
        r"(^|\n)\s*(system|assistant|developer)\s*:|\[\s*system\s*\]|<\s*/?\s*(system|untrusted_data)",
    ),
    (
        "tool_instruction",
        r"\b(call|use|invoke|run)\s+(the\s+)?(tool|function)\b|\b(call|invoke)\s+[a-z]+_[a-z_]+\b",
    ),
    (
        "raise_limits",
        r"\b(raise|increase|lift|remove|bypass|override|ignore)\b.{0,30}"
        r"\b(cap|caps|limit|limits|allowlist|approval|policy)\b"
        r"|\b(cap|limit|allowlist|policy|rules?)\b.{0,12}\b(was|has been|is|is now|were)\b.{0,12}"
        r"\b(updated|changed|lifted|removed|raised|disabled)\b",
    ),
    ("exfiltration", r"\b(send|email|forward|cc|bcc)\b.{0,60}\b[\w.+-]+@[\w-]+\.[\w.]+"),
    (
        "skip_review",
        r"\b(without|skip|no need for|don'?t need)\b.{0,30}\b(review|approval|approve|human)\b"
        r"|\bauto-?approve",
    ),
    ("privilege", r"\b(domain-admins|prod-admin|superuser|root access|admin rights)\b"),
)
_COMPILED = tuple((code, re.compile(pattern, re.IGNORECASE)) for code, pattern in _PATTERNS)


def injection_detect(text: str) -> list[dict[str, str]]:
    """Flags for likely injection attempts: [{"code", "match"}], one per kind."""
    if not text:
        return []
    flags = []
    for code, pattern in _COMPILED:
        match = pattern.search(text)
        if match:
            flags.append({"code": code, "match": match.group(0).strip()[:120]})
    return flags


def _neutralise(text: str) -> str:
    # Data can never close its own delimiter and pose as instructions.
    return re.sub(r"<\s*(/?)\s*untrusted_data", r"&lt;\1untrusted_data", text, flags=re.IGNORECASE)


def as_data(source: str, value: Any) -> str:
    """Wrap a value as delimited, untrusted data for a prompt."""
    body = (
        value
        if isinstance(value, str)
        else json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True)
    )
    return f"{DATA_OPEN.format(source=source)}\n{_neutralise(body)}\n{DATA_CLOSE}"


_DATA_RE = re.compile(r'<untrusted_data source="([^"]*)">\n(.*?)\n</untrusted_data>', re.DOTALL)


def data_blocks(text: str) -> list[tuple[str, str]]:
    """The (source, body) pairs of the data blocks in a prompt (used by the demo model)."""
    return _DATA_RE.findall(text or "")
