"""Structured values (JSON from traces, audit events, frozen evidence) as labelled
fields and small tables, for people rather than parsers.

``{{ value|fields }}`` renders a dict as a list of labelled fields, a list of
similar dicts as a table, a list of scalars inline, and recurses into nested
values. Every piece of text is escaped here (format_html / conditional_escape),
so the result is safe to mark safe. Amounts are shown as written (never as
floats). The raw JSON stays one click away wherever this is used.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django import template
from django.core.serializers.json import DjangoJSONEncoder
from django.utils.html import conditional_escape, format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from governance.money import money

register = template.Library()

MAX_DEPTH = 6
MAX_ROWS = 200
_MONEY_KEYS = {
    "amount",
    "amount_usd",
    "total",
    "refundable",
    "refunded",
    "price",
    "cap",
    "cost_usd",
}


def label_for(key: Any) -> str:
    """``customer_email`` -> ``Customer email``."""
    return str(key).replace("_", " ").strip().capitalize() or "—"


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | Decimal)


def _scalar(value: Any, key: Any = None, currency: str = "USD") -> SafeString:
    if value is None or value == "":
        return mark_safe('<span class="muted">—</span>')
    if isinstance(value, bool):
        return mark_safe("yes" if value else "no")  # noqa: S308 - a constant
    if str(key).lower() in _MONEY_KEYS and not isinstance(value, bool):
        return format_html('<span class="num">{}</span>', money(value, currency))
    if isinstance(value, int | float | Decimal):
        return format_html('<span class="num">{}</span>', value)
    text = str(value)
    if "\n" in text or len(text) > 160:
        return format_html('<span class="long-text">{}</span>', text)
    return conditional_escape(text)


def _table(rows: list[dict[str, Any]], depth: int, currency: str) -> SafeString:
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    head = format_html_join("", "<th scope=col>{}</th>", ((label_for(c),) for c in columns))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        (
            (
                format_html_join(
                    "",
                    "<td>{}</td>",
                    ((render(row.get(c), depth + 1, key=c, currency=currency),) for c in columns),
                ),
            )
            for row in rows[:MAX_ROWS]
        ),
    )
    more = (
        format_html('<p class="muted small">and {} more rows</p>', len(rows) - MAX_ROWS)
        if len(rows) > MAX_ROWS
        else ""
    )
    return format_html(
        '<div class="table-wrap"><table class="fields-table"><thead><tr>{}</tr></thead>'
        "<tbody>{}</tbody></table></div>{}",
        head,
        body,
        more,
    )


def _dict(value: dict[Any, Any], depth: int, currency: str) -> SafeString:
    if not value:
        return mark_safe('<span class="muted">(none)</span>')
    currency = str(value.get("currency") or currency)
    return format_html(
        '<dl class="fields">{}</dl>',
        format_html_join(
            "",
            "<div><dt>{}</dt><dd>{}</dd></div>",
            (
                (label_for(k), render(v, depth + 1, key=k, currency=currency))
                for k, v in value.items()
            ),
        ),
    )


def render(value: Any, depth: int = 0, *, key: Any = None, currency: str = "USD") -> SafeString:
    if depth > MAX_DEPTH:
        return format_html("<code>{}</code>", json.dumps(value, cls=DjangoJSONEncoder))
    if _is_scalar(value):
        return _scalar(value, key, currency)
    if isinstance(value, dict):
        return _dict(value, depth, currency)
    if isinstance(value, list | tuple):
        items = list(value)
        if not items:
            return mark_safe('<span class="muted">(none)</span>')
        if all(_is_scalar(v) for v in items):
            return format_html_join(
                ", ", "{}", ((_scalar(v, key, currency),) for v in items[:MAX_ROWS])
            )
        if all(isinstance(v, dict) for v in items):
            return _table(items, depth, currency)
        return format_html(
            '<ol class="fields-list">{}</ol>',
            format_html_join(
                "", "<li>{}</li>", ((render(v, depth + 1, currency=currency),) for v in items)
            ),
        )
    return conditional_escape(str(value))


@register.filter(name="fields")
def fields_filter(value: Any) -> SafeString:
    """A structured value as labelled fields and tables (escaped)."""
    return render(value)


@register.filter(name="money")
def money_filter(value: Any, currency: str = "USD") -> str:
    """An amount in its currency: ``{{ amount|money:"EUR" }}``."""
    if value is None or value == "":
        return "—"
    return money(value, currency)


@register.filter(name="as_json")
def as_json(value: Any) -> str:
    """Indented JSON (escaped by the template)."""
    return json.dumps(value, indent=2, sort_keys=True, cls=DjangoJSONEncoder, ensure_ascii=False)


@register.filter(name="gates_and_rest")
def gates_and_rest(evidence: Any) -> tuple[list[tuple[str, dict]], dict[str, Any]]:
    """Frozen evidence split into gate results (shown as criteria tables) and the rest."""
    if not isinstance(evidence, dict):
        return [], {"evidence": evidence}
    gates = [
        (key, value)
        for key, value in evidence.items()
        if isinstance(value, dict) and isinstance(value.get("criteria"), list)
    ]
    names = {key for key, _ in gates}
    return gates, {k: v for k, v in evidence.items() if k not in names}


@register.filter(name="fact")
def fact(value: Any, key: str = "") -> SafeString:
    """One fact's value: amounts as money (by their name), structures as fields."""
    return render(value, key=key)
