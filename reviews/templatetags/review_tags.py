"""Small filters for showing agent data. Output is escaped by the template engine:
these only shape values into text."""

from __future__ import annotations

import json
from typing import Any

from django import template
from django.core.serializers.json import DjangoJSONEncoder
from django.utils.html import format_html
from django.utils.safestring import mark_safe

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


_ROW = (
    '<li id="q-{pk}" class="queue-row{current}" data-queue-row>'
    '<a href="{url}" hx-get="{url}" hx-target="#card" hx-swap="outerHTML">'
    '<span class="q-line"><code>{tool}</code> <span class="badge risk risk-{risk}">{risk_label}'
    "</span>{flags}</span>"
    '<span class="q-title">{title}</span>'
    '<span class="q-meta">{meta}</span></a></li>'
)
_INJECTION = ' <span class="badge danger" title="Possible prompt injection">injection?</span>'
_SAMPLE = (
    ' <span class="badge sample" title="Executed automatically; picked for post-hoc review">'
    "sample</span>"
)


@register.simple_tag
def queue_rows(rows: Any, current: Any, scope: Any) -> str:
    """The queue list's rows (``reviews.selectors.QueueRow``), every value escaped by
    ``format_html``. Built here rather than by a template loop: the list is rendered
    on every decision and every poll, and a loop of 25 rows cost the template engine
    more than the rest of the response."""
    out = []
    for p in rows:
        empty = mark_safe("")  # an empty literal; SafeString + SafeString stays safe
        meta = format_html("{} · ", p.workflow_name) if not scope else empty
        meta += format_html("{}", p.age)
        if p.priority:
            meta += format_html(" · priority {}", p.priority)
        if p.holder:
            meta += format_html(' · <span class="held">with {}</span>', p.holder)
        flags = (mark_safe(_INJECTION) if p.flagged_injection else empty) + (  # noqa: S308 - constant markup
            mark_safe(_SAMPLE) if p.status == "executed" else empty  # noqa: S308 - constant markup
        )
        out.append(
            format_html(
                _ROW,
                pk=p.pk,
                current=" is-current" if current == p.pk else "",
                url=p.card_url,
                tool=p.tool,
                risk=p.risk_class,
                risk_label=p.risk_label,
                flags=flags,
                title=p.title_short,
                meta=meta,
            )
        )
    return mark_safe("\n".join(out))  # noqa: S308 - each part built by format_html
