"""Where each sensitive argument of a proposed action came from, and whether the
action may run without a human.

At limited and autonomous an action runs on its own only if every sensitive
argument (money, recipient, subject) is grounded in a trusted source:

* ``trusted_field:<name>`` -- a work-item payload field the integration declared
  trusted (``Workflow.trusted_fields``);
* ``tool_output:<tool>#step<n>`` -- the output of a read tool in this run whose
  output is not marked untrusted (a system of record's answer);
* ``allowlist`` -- a value on the workflow's allowlist for that argument.

A value found only in untrusted text (``untrusted_text:payload.text``, the title,
``untrusted_text:tool:<tool>#step<n>``) or nowhere (``none``) makes the action wait
for a human; so does a subject record that does not belong to the work item's
subject, and any flagged injection. ``auto_execute_decision`` is the one place
that decides.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from agents.roles import ArgRoles, money_of, sensitive_values

GROUNDED_PREFIXES = ("trusted_field:", "tool_output:", "allowlist")

RULE_INJECTION_WAITS = (
    "A possible prompt injection was flagged in this work item: a human approves "
    "every action, whatever the autonomy level."
)
RULE_UNGROUNDED = (
    "Not run on its own: {args} came only from untrusted text or from nowhere "
    "(not a trusted field, a system-of-record lookup in this run or an allowlist); "
    "a human approves."
)
RULE_UNBOUND = "Not run on its own: {reason} A human approves."
RULE_MONEY_UNDECLARED = (
    "{tool} moves money but declares no amount argument: it never runs without a human "
    "(declare the money path on the tool or in the workflow's policy roles)."
)
BIND_NO_ITEM_SUBJECT = (
    "the work item has no trusted subject to bind {path} = {value} to "
    "(set the workflow's policy subject field to a trusted payload field)."
)
BIND_UNKNOWN_OWNER = (
    "the system of record does not say whose {path} = {value} is, so it cannot be "
    "checked against the work item's subject."
)
BIND_OTHER_OWNER = "{path} = {value} belongs to someone else than the work item's subject."


@dataclass(frozen=True)
class AutoDecision:
    auto: bool
    rule: str = ""


@dataclass(frozen=True)
class ToolOutput:
    tool: str
    step: int
    output: Any
    untrusted: bool = False

    @property
    def label(self) -> str:
        return f"{self.tool}#step{self.step}"


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, scalar) for every scalar in a JSON-like value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from leaves(item, f"{path}[{index}]")
    elif value is not None and not isinstance(value, bool):
        yield path, value


def same_value(a: Any, b: Any) -> bool:
    """Equal as numbers when both are numbers, else equal as trimmed, case-folded text."""
    na, nb = money_of(a), money_of(b)
    if na is not None and nb is not None:
        return na == nb
    return str(a).strip().casefold() == str(b).strip().casefold()


def _in_text(value: Any, text: str) -> bool:
    needle = str(value).strip().casefold()
    if not needle:
        return False
    haystack = text.casefold()
    if needle in haystack:
        return True
    number = money_of(value)
    if number is not None:
        forms = {format(number.normalize(), "f"), format(number.quantize(Decimal("0.01")), "f")}
        return any(form in haystack for form in forms if form)
    return False


def _field_of(path: str, trusted: Iterable[str]) -> str | None:
    for name in trusted:
        if path == name or path.startswith((f"{name}.", f"{name}[")):
            return name
    return None


def value_allowed(value: Any, entries: Iterable[Any]) -> bool:
    text = str(value).strip().casefold()
    for entry in entries:
        entry_text = str(entry).strip().casefold()
        if entry_text.startswith("@") and "@" in text:
            if text.rsplit("@", 1)[1] == entry_text[1:]:
                return True
        elif same_value(value, entry):
            return True
    return False


def argument_allowlist(policy: dict[str, Any] | None, tool: str, path: str) -> list[Any] | None:
    """The workflow's allowlist for one argument (``allowlists.arguments.<tool>.<path>``),
    by the declared path (``$.to``) or the concrete one (``$.items[0].to``)."""
    lists = (((policy or {}).get("allowlists") or {}).get("arguments") or {}).get(tool) or {}
    if not isinstance(lists, dict):
        return None
    if path in lists:
        return list(lists[path] or [])
    generic = _generic(path)
    if generic in lists:
        return list(lists[generic] or [])
    return None


def _generic(path: str) -> str:
    return re.sub(r"\[\d+\]", "[*]", path)


def source_of(
    value: Any,
    *,
    role: str,
    path: str,
    tool: str,
    payload: Any,
    title: str,
    trusted_fields: Iterable[str],
    outputs: Iterable[ToolOutput],
    policy: dict[str, Any] | None,
) -> str:
    trusted = [str(t).strip() for t in trusted_fields or () if str(t).strip()]
    items = list(leaves(payload)) if isinstance(payload, dict) else []
    for where, leaf in items:
        name = _field_of(where, trusted)
        if name is not None and same_value(value, leaf):
            return f"trusted_field:{name}"
    outputs = list(outputs)
    for out in outputs:
        if not out.untrusted and any(same_value(value, leaf) for _, leaf in leaves(out.output)):
            return f"tool_output:{out.label}"
    allowlist = argument_allowlist(policy, tool, path)
    if allowlist is None and role == "recipient":
        domains = ((policy or {}).get("allowlists") or {}).get("email_domains")
        allowlist = [f"@{str(d).lstrip('@')}" for d in domains] if domains else None
    if allowlist is not None and value_allowed(value, allowlist):
        return "allowlist"
    if title and "title" not in trusted and _in_text(value, title):
        return "untrusted_text:title"
    for where, leaf in items:
        if _field_of(where, trusted) is None and isinstance(leaf, str) and _in_text(value, leaf):
            return f"untrusted_text:payload.{where}"
    for out in outputs:
        if out.untrusted and any(
            isinstance(leaf, str) and _in_text(value, leaf) or same_value(value, leaf)
            for _, leaf in leaves(out.output)
        ):
            return f"untrusted_text:tool:{out.label}"
    return "none"


def is_grounded(source: str) -> bool:
    return source.startswith(GROUNDED_PREFIXES)


def item_subject(policy: dict[str, Any] | None, payload: Any, trusted_fields: Iterable[str]) -> Any:
    """The work item's subject (e.g. the customer's email): the value of the trusted
    payload field named by the workflow's ``policy["subject"]["field"]``."""
    spec = (policy or {}).get("subject") or {}
    name = spec.get("field") if isinstance(spec, dict) else None
    if not name or not isinstance(payload, dict):
        return None
    if _field_of(str(name), [str(t) for t in trusted_fields or ()]) is None:
        return None  # a subject the customer typed is no subject
    value: Any = payload
    for part in str(name).split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, str | int) and str(value).strip() else None


def owner_from_outputs(value: Any, *, owner_key: str, outputs: Iterable[ToolOutput]) -> str | None:
    """The owner of a record as a trusted read in this run returned it: an object
    that holds ``value`` and an ``owner_key`` field."""
    for out in outputs:
        if out.untrusted:
            continue
        for obj in _objects(out.output):
            if owner_key in obj and any(
                same_value(value, v) for v in obj.values() if not isinstance(v, dict | list)
            ):
                return str(obj[owner_key])
    return None


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)


def provenance_of(
    *,
    tool: str,
    roles: ArgRoles,
    arguments: dict[str, Any],
    payload: Any,
    title: str,
    trusted_fields: Iterable[str],
    outputs: Iterable[ToolOutput],
    policy: dict[str, Any] | None,
    subject_owner: Callable[[Any], str | None] | None = None,
) -> dict[str, dict[str, Any]]:
    """``{arg_path: {"role", "value", "source"[, "owner", "bound", "binding"]}}`` for
    every sensitive argument of one proposed call."""
    outputs = list(outputs)
    trusted = list(trusted_fields or ())
    subject = item_subject(policy, payload, trusted)
    spec = (policy or {}).get("subject") or {}
    owner_key = spec.get("owner_key") if isinstance(spec, dict) else None
    result: dict[str, dict[str, Any]] = {}
    for role, where, value in sensitive_values(roles, arguments):
        entry: dict[str, Any] = {
            "role": role,
            "value": value,
            "source": source_of(
                value,
                role=role,
                path=where,
                tool=tool,
                payload=payload,
                title=title,
                trusted_fields=trusted,
                outputs=outputs,
                policy=policy,
            ),
        }
        if role == "subject":
            entry.update(
                _binding(
                    where,
                    value,
                    subject=subject,
                    outputs=outputs,
                    owner_key=owner_key,
                    lookup=subject_owner,
                )
            )
        result[where] = entry
    return result


def _binding(
    path: str,
    value: Any,
    *,
    subject: Any,
    outputs: list[ToolOutput],
    owner_key: str | None,
    lookup: Callable[[Any], str | None] | None,
) -> dict[str, Any]:
    if subject is None:
        return {"bound": False, "binding": BIND_NO_ITEM_SUBJECT.format(path=path, value=value)}
    owner = None
    if lookup is not None:
        owner = lookup(value)
    if owner is None and owner_key:
        owner = owner_from_outputs(value, owner_key=owner_key, outputs=outputs)
    if owner is None:
        return {"bound": False, "binding": BIND_UNKNOWN_OWNER.format(path=path, value=value)}
    if not same_value(owner, subject):
        return {
            "bound": False,
            "owner": owner,
            "binding": BIND_OTHER_OWNER.format(path=path, value=value),
        }
    return {"bound": True, "owner": owner}


def auto_execute_decision(
    *,
    verdict: str,
    level: str,
    flagged: bool,
    provenance: dict[str, dict[str, Any]],
    risk_class: str = "",
    roles: ArgRoles | None = None,
    tool: str = "",
) -> AutoDecision:
    """May this proposal execute without a human? The one place that says so."""
    from agents.models import Proposal, RiskClass
    from governance.models import AutonomyLevel

    if verdict != Proposal.Verdict.ALLOW:
        return AutoDecision(False)
    if AutonomyLevel.rank(level) < AutonomyLevel.rank(AutonomyLevel.LIMITED):
        return AutoDecision(False)
    if flagged:
        return AutoDecision(False, RULE_INJECTION_WAITS)
    if risk_class == RiskClass.MONEY and roles is not None and not roles.money:
        return AutoDecision(False, RULE_MONEY_UNDECLARED.format(tool=tool or "The tool"))
    ungrounded = [
        f"{path} = {entry.get('value')} ({entry.get('source')})"
        for path, entry in provenance.items()
        if not is_grounded(str(entry.get("source", "none")))
    ]
    if ungrounded:
        return AutoDecision(False, RULE_UNGROUNDED.format(args="; ".join(ungrounded)))
    unbound = [entry["binding"] for entry in provenance.values() if entry.get("bound") is False]
    if unbound:
        return AutoDecision(False, RULE_UNBOUND.format(reason=" ".join(unbound)))
    return AutoDecision(True)
