"""``provenance_rows``: a proposal's argument provenance (agents.provenance) as rows
for the review card, the explain page and the evidence pack."""

from __future__ import annotations

from typing import Any

from django import template

from agents.provenance import is_grounded

register = template.Library()

_LABELS = (
    ("trusted_field:", "trusted field “{}” of the work item"),
    ("tool_output:", "system-of-record lookup {} in this run"),
    ("untrusted_text:tool:", "only untrusted tool output {}"),
    ("untrusted_text:", "only untrusted text ({})"),
)


def source_label(source: str) -> str:
    if source == "allowlist":
        return "the workflow's allowlist"
    if source == "none":
        return "no source found"
    for prefix, label in _LABELS:
        if source.startswith(prefix):
            return label.format(source.removeprefix(prefix))
    return source


@register.filter
def provenance_rows(provenance: Any) -> list[dict[str, Any]]:
    if not isinstance(provenance, dict):
        return []
    rows = []
    for path, entry in provenance.items():
        if not isinstance(entry, dict):
            continue
        source = str(entry.get("source", "none"))
        rows.append(
            {
                "path": path,
                "role": str(entry.get("role", "")).replace("_", " "),
                "value": entry.get("value"),
                "source": source,
                "label": source_label(source),
                "grounded": is_grounded(source),
                "bound": entry.get("bound"),
                "binding": entry.get("binding", ""),
                "owner": entry.get("owner"),
            }
        )
    return rows
