"""An escalation packet as a decision page: the blocking fact first, then one
timeline of what the agent did, each tool output as data, nothing twice and no
run internals (leases, daily spend, the agent's raw state).

Everything here reads what the run stored (its steps, redacted before they were
written) and the work item as it arrived. Which value came from where is worked
out by looking for the value in the item's own text (untrusted) and in the
outputs of the tools the run called (the system of record).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from agents.models import Escalation, Step
from agents.redaction import redact
from governance import privacy

# Step kinds whose output is data a reviewer reads (a read from a system, a search).
_READ_KINDS = {Step.Kind.TOOL_CALL, Step.Kind.RETRIEVAL}
_BLOCKING_KINDS = {Step.Kind.VALIDATION, Step.Kind.POLICY, Step.Kind.BUDGET}
SOURCE_ITEM_TEXT = "the work item's text (untrusted)"
SOURCE_REDACTED = "redacted in the trace"
SOURCE_MODEL = "no input: the model's own value"


@dataclass
class ArgumentFact:
    name: str
    value: Any
    source: str
    untrusted: bool = False


@dataclass
class BlockedCall:
    index: int
    tool: str
    kind: str
    rule: str
    arguments: list[ArgumentFact]
    field: str = ""
    value: Any = None
    value_source: str = ""


@dataclass
class TimelineEntry:
    index: int
    kind: str
    kind_label: str
    name: str
    summary: str
    error: str = ""
    data: Any = None
    data_label: str = ""
    is_retry: bool = False


@dataclass
class DecisionPacket:
    headline: str
    blocked: list[BlockedCall]
    flags: list[dict[str, Any]]
    timeline: list[TimelineEntry]
    budget: list[tuple[str, str]]
    proposed_before_stop: list[Any]
    payload_fields: dict[str, Any]
    unredacted: bool
    raw_packet: Any = field(default=None)


def _number_forms(value: Any) -> list[str]:
    try:
        number = Decimal(str(value).replace(",", "").lstrip("$€£"))
    except (InvalidOperation, ValueError):
        return []
    if not number.is_finite():
        return []
    forms = {f"{number:.2f}", f"{number:,.2f}"}
    if number == number.to_integral_value():
        forms |= {f"{int(number)}", f"{int(number):,}"}
    return sorted(forms)


def _leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list | tuple):
        return [leaf for v in value for leaf in _leaves(v)]
    return [] if value is None else [str(value)]


def value_source(value: Any, *, item_text: str, reads: list[tuple[str, Any]]) -> str:
    """Where an argument's value is found: a read tool's output, the item's text, or nowhere."""
    text = str(value)
    if not text:
        return ""
    if text.startswith("[") and text.endswith("]") and text[1:-1].isalpha():
        return SOURCE_REDACTED
    numbers = _number_forms(value)
    for tool, output in reads:
        leaves = _leaves(output)
        if text in leaves or any(form in leaves for form in numbers):
            return f"{tool}'s output (system of record)"
    if (len(text) >= 3 and text.lower() in item_text.lower()) or any(
        form in item_text for form in numbers if form not in {"0", "0.00"}
    ):
        return SOURCE_ITEM_TEXT
    return SOURCE_MODEL


def _validation_problems(error: str) -> list[dict[str, Any]]:
    try:
        problems = json.loads(error)
    except (TypeError, ValueError):
        return []
    return [p for p in problems if isinstance(p, dict)] if isinstance(problems, list) else []


def _summary(step: Step) -> tuple[str, Any, str]:
    """One line for a step, and the data worth showing as a table (with its label)."""
    output = step.output if isinstance(step.output, dict) else {"value": step.output}
    if step.kind == Step.Kind.MODEL_CALL:
        calls = output.get("tool_calls") or []
        if calls:
            names = ", ".join(str(c.get("name", "?")) for c in calls if isinstance(c, dict))
            rows = []
            for call in calls:
                if not isinstance(call, dict):
                    continue
                arguments = call.get("arguments")
                if isinstance(arguments, str):
                    try:
                        arguments = json.loads(arguments)
                    except ValueError:
                        arguments = {"raw": arguments}
                rows.append({"tool": call.get("name", ""), "arguments": arguments})
            return f"The model asked for {names}.", rows, "Calls asked for"
        content = output.get("content") or output.get("refusal") or ""
        try:
            final = json.loads(content) if isinstance(content, str) and content else None
        except ValueError:
            final = None
        if isinstance(final, dict) and final.get("rationale"):
            return f"The model concluded: {final['rationale']}", None, ""
        return (
            (f"The model answered: {str(content)[:200]}" if content else "The model answered."),
            None,
            "",
        )
    if step.kind in _READ_KINDS:
        return f"Read {step.name}.", output, "Output"
    if step.kind == Step.Kind.POLICY:
        verdict = output.get("verdict", "")
        rule = output.get("rule", "")
        return f"Policy on {step.name}: {verdict}. {rule}".strip(), None, ""
    if step.kind == Step.Kind.VALIDATION:
        return f"Checked the arguments of {step.name}.", None, ""
    if step.kind == Step.Kind.BUDGET:
        return f"Budget: {step.name}.", output or None, "Budget"
    if step.kind == Step.Kind.NOTE:
        return f"Note: {step.name.replace('_', ' ')}.", None, ""
    return step.name, None, ""


def _budget_lines(budget: Any) -> list[tuple[str, str]]:
    from reviews.templatetags.structured import money

    if not isinstance(budget, dict):
        return [("Budget", str(budget))] if budget else []
    lines: list[tuple[str, str]] = []
    try:
        return _budget_numbers(budget, lines, money)
    except (TypeError, ValueError):  # a hand-made packet: show it as it is
        return [("Budget", json.dumps(budget, default=str))]


def _budget_numbers(budget: dict[str, Any], lines: list[tuple[str, str]], money: Any) -> Any:
    if "tool_calls" in budget:
        lines.append(
            ("Tool calls", f"{budget['tool_calls']} of {budget.get('max_tool_calls', '?')}")
        )
    if "tokens" in budget:
        lines.append(
            ("Tokens", f"{int(budget['tokens']):,} of {int(budget.get('max_tokens') or 0):,}")
        )
    if "cost_usd" in budget:
        lines.append(
            ("Cost", f"{money(budget['cost_usd'])} of {money(budget.get('max_cost_usd', ''))}")
        )
    if "seconds" in budget:
        lines.append(
            (
                "Time",
                f"{float(budget['seconds']):.1f} s of "
                f"{float(budget.get('max_seconds') or 0):.0f} s",
            )
        )
    return lines


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def decision_packet(
    *, escalation: Escalation, steps: list[Step], unredacted: bool = False
) -> DecisionPacket:
    # A person's tokens read "[personal]" in the packet, as in the trace (the work item,
    # which the reviewer handles, shows its values: the view audits that).
    packet = privacy.mask(escalation.packet) if isinstance(escalation.packet, dict) else {}
    item = escalation.work_item
    payload = item.payload if isinstance(item.payload, dict) else {"payload": item.payload}
    item_text = " ".join([item.title or "", *_leaves(payload)])
    reads = [(s.name, s.output) for s in steps if s.kind in _READ_KINDS and not s.error]

    blocked: list[BlockedCall] = []
    for step in steps:
        if not step.error or step.kind not in _BLOCKING_KINDS:
            continue
        arguments = step.input if isinstance(step.input, dict) else {}
        facts = [
            ArgumentFact(
                name=name,
                value=value,
                source=(source := value_source(value, item_text=item_text, reads=reads)),
                untrusted=source in (SOURCE_ITEM_TEXT, SOURCE_MODEL),
            )
            for name, value in arguments.items()
        ]
        call = BlockedCall(
            index=step.index,
            tool=step.name,
            kind=step.get_kind_display(),
            rule=step.error,
            arguments=facts,
        )
        problems = _validation_problems(step.error) if step.kind == Step.Kind.VALIDATION else []
        if problems:
            first = problems[0]
            loc = first.get("loc")
            loc = ".".join(str(p) for p in loc) if isinstance(loc, list) else str(loc or "")
            call.rule = "; ".join(f"{p.get('loc')}: {p.get('msg')}" for p in problems)
            call.field = loc
            call.value = arguments.get(loc)
            call.value_source = next((f.source for f in facts if f.name == loc), "")
        blocked.append(call)

    timeline = []
    for step in steps:
        if step.kind == Step.Kind.NOTE and step.name == "injection_flags":
            continue  # shown once, as the flags above the timeline
        summary, data, data_label = _summary(step)
        timeline.append(
            TimelineEntry(
                index=step.index,
                kind=step.kind,
                kind_label=step.get_kind_display(),
                name=step.name,
                summary=summary,
                error=step.error,
                data=data,
                data_label=data_label,
                is_retry=step.is_retry,
            )
        )

    fields = dict(payload)
    if not unredacted:
        # The item's text is shown as typed on the page already; everything else
        # the reviewer's role sees redacted.
        fields = {k: (v if k == "text" else redact(v)) for k, v in payload.items()}
    fields.pop("text", None)

    return DecisionPacket(
        headline=escalation.detail or escalation.get_reason_display(),
        blocked=blocked,
        flags=[f for f in _as_list(packet.get("injection_flags")) if isinstance(f, dict)],
        timeline=timeline,
        budget=_budget_lines(packet.get("budget") or {}),
        proposed_before_stop=_as_list(packet.get("proposed_before_stop")),
        payload_fields=fields,
        unredacted=unredacted,
        raw_packet=packet,
    )
