"""The facts a reviewer needs beside a proposal's arguments, as its tool declares
them (``Tool.review_facts``): values from the read tools' outputs in the same run
(the system of record) or from the work item's trusted fields, so the order's
total, what is refundable and what was already refunded are on the card, not
inside the collapsed trace."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.models import Step

_READ_KINDS = {Step.Kind.TOOL_CALL, Step.Kind.RETRIEVAL}
_MISSING = object()


@dataclass(frozen=True)
class Fact:
    label: str
    value: Any
    key: str  # the last name on the path, so amounts are shown as money
    source: str


def _walk(value: Any, path: list[str]) -> Any:
    for name in path:
        if isinstance(value, dict) and name in value:
            value = value[name]
        elif isinstance(value, list) and name.isdigit() and int(name) < len(value):
            value = value[int(name)]
        else:
            return _MISSING
    return value


def _matching_read(steps: list[Step], tool: str, arguments: dict[str, Any]) -> Step | None:
    """The last successful read of ``tool``; one whose arguments agree with the
    proposal's (the same order number) wins over another read of the same tool."""
    reads = [s for s in steps if s.kind in _READ_KINDS and s.name == tool and not s.error]
    for step in reversed(reads):
        given = step.input if isinstance(step.input, dict) else {}
        shared = [k for k in given if k in arguments]
        if shared and all(str(given[k]) == str(arguments[k]) for k in shared):
            return step
    return reads[-1] if reads else None


def review_facts(
    *, tool: Any, steps: list[Step], payload: Any, arguments: dict[str, Any]
) -> list[Fact]:
    declared = getattr(tool, "review_facts", ()) or ()
    facts: list[Fact] = []
    for label, where in declared:
        source_name, _, rest = str(where).partition(".")
        path = [p for p in rest.split(".") if p]
        if source_name == "item":
            value = _walk(payload, path)
            source = "the work item (trusted field)"
        else:
            step = _matching_read(steps, source_name, arguments)
            if step is None:
                continue
            value = _walk(step.output, path)
            source = f"{source_name} (step {step.index})"
        if value is _MISSING:
            continue
        facts.append(Fact(label=label, value=value, key=path[-1] if path else "", source=source))
    return facts
