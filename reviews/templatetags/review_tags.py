"""Small filters for showing agent data. Output is escaped by the template engine:
these only shape values into text."""

from __future__ import annotations

import json
from typing import Any

from django import template
from django.core.serializers.json import DjangoJSONEncoder

register = template.Library()


@register.filter
def pretty(value: Any) -> str:
    """Indented JSON for a trace input or output (plain text, escaped by the caller)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, sort_keys=True, cls=DjangoJSONEncoder, ensure_ascii=False)


@register.filter
def describe(value: Any) -> str:
    """One line for a flag or citation that may be a string or a small dict."""
    if isinstance(value, dict):
        return " · ".join(f"{k}: {v}" for k, v in value.items() if v not in (None, ""))
    return str(value)


@register.filter
def scalar(value: Any) -> str:
    """An argument value as a reviewer reads it: strings bare, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)


@register.filter
def percent(fraction: float) -> int:
    return round(float(fraction or 0) * 100)


@register.filter
def label(key: Any) -> str:
    """``steps_attempted`` -> ``Steps attempted``."""
    return str(key).replace("_", " ").strip().capitalize()
