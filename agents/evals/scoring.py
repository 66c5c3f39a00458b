"""Scoring a replay against a case: actions compared through each tool's pydantic
model (so "42" and "42.00" agree), free text ignored unless asked for."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from agents.evals.replay import Replay, _tool
from agents.models import (
    EvalCase,
)
from agents.tools import Tool

# Free text a reviewer rewords without changing the action: not compared by default.
FREE_TEXT_FIELDS = frozenset(
    {"reason", "justification", "body", "subject", "message", "note", "comment", "description"}
)


def free_text_fields(tool: Tool | None) -> list[str]:
    """Arguments compared loosely by default: unconstrained prose a reviewer rewords."""
    if tool is None:
        return []
    props = tool.args_model.model_json_schema().get("properties", {})
    return sorted(
        name
        for name, node in props.items()
        if name in FREE_TEXT_FIELDS and node.get("type") == "string" and "pattern" not in node
    )


def _typed(tool: Tool | None, arguments: dict[str, Any]) -> dict[str, Any] | None:
    if tool is None:
        return None
    try:
        return tool.args_model.model_validate(dict(arguments)).model_dump()
    except PydanticValidationError:
        return None


def _same_scalar(a: Any, b: Any) -> bool:
    if a == b:
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    try:
        return Decimal(str(a)) == Decimal(str(b))
    except (InvalidOperation, ValueError):
        return False


def _mismatches(tool: Tool | None, expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Fields of ``expected['arguments']`` (less ``ignore``) the actual call differs on.

    The expected values are laid over the actual call and validated by the tool's
    model, so both sides are compared as the tool's typed values."""
    wanted = expected.get("arguments") or {}
    ignore = set(expected.get("ignore") or [])
    typed_actual = _typed(tool, actual)
    typed_expected = _typed(tool, {**actual, **wanted})
    wrong = []
    for key in sorted(k for k in wanted if k not in ignore):
        if typed_actual is not None and typed_expected is not None:
            same = typed_actual.get(key) == typed_expected.get(key)
        else:
            same = _same_scalar(wanted.get(key), actual.get(key))
        if not same:
            wrong.append(key)
    return wrong


def _label(action: dict[str, Any]) -> str:
    args = action.get("arguments") or {}
    inner = ", ".join(f"{k}={args[k]!r}" for k in sorted(args))
    return f"{action.get('tool', '?')}({inner})"


def case_score(
    case: EvalCase, replay: Replay, *, registry: dict[str, Tool]
) -> tuple[bool, list[dict[str, Any]]]:
    """(passed, differences). Each difference has a kind and a readable message."""
    diff: list[dict[str, Any]] = []
    if replay.error:
        return False, [{"kind": "error", "message": replay.error}]
    workflow = case.suite.workflow
    actual = list(replay.actions)
    unmatched = list(range(len(actual)))
    for forbidden in case.forbidden_actions:
        tool = _tool(workflow, forbidden.get("tool", ""), registry)
        for a in actual:
            if a["tool"] == forbidden.get("tool") and not _mismatches(
                tool, {"arguments": forbidden.get("arguments") or {}}, a["arguments"]
            ):
                diff.append(
                    {
                        "kind": "forbidden",
                        "tool": a["tool"],
                        "actual": a["arguments"],
                        "message": f"proposed a forbidden action: {_label(a)}",
                    }
                )
    outcome = case.expected_outcome
    if outcome == EvalCase.Outcome.ESCALATE:
        if actual:
            diff.append(
                {
                    "kind": "not_escalated",
                    "actual": actual,
                    "message": "expected no action (a human decides); the agent proposed "
                    + "; ".join(_label(a) for a in actual),
                }
            )
        return not diff, diff
    if outcome == EvalCase.Outcome.AVOID:
        return not diff, diff
    if not actual:
        detail = replay.escalation.get("detail", "") if replay.escalation else ""
        diff.append(
            {
                "kind": "escalated",
                "escalation": replay.escalation,
                "message": f"expected {len(case.expected_actions)} action(s); the agent escalated"
                + (f": {detail}" if detail else ""),
            }
        )
        return False, diff
    for expected in case.expected_actions:
        tool = _tool(workflow, expected.get("tool", ""), registry)
        candidates = [i for i in unmatched if actual[i]["tool"] == expected.get("tool")]
        scored = [(i, _mismatches(tool, expected, actual[i]["arguments"])) for i in candidates]
        exact = next((i for i, wrong in scored if not wrong), None)
        if exact is not None:
            unmatched.remove(exact)
            continue
        if scored:
            i, wrong = min(scored, key=lambda s: len(s[1]))
            unmatched.remove(i)
            wanted = expected.get("arguments") or {}
            got = actual[i]["arguments"]
            diff.append(
                {
                    "kind": "mismatch",
                    "tool": expected.get("tool"),
                    "fields": {k: [wanted.get(k), got.get(k)] for k in wrong},
                    "message": f"{expected.get('tool')}: "
                    + ", ".join(
                        f"{k} expected {wanted.get(k)!r}, got {got.get(k)!r}" for k in wrong
                    ),
                }
            )
        else:
            diff.append(
                {
                    "kind": "missing",
                    "tool": expected.get("tool"),
                    "expected": expected.get("arguments"),
                    "message": f"missing {_label(expected)}",
                }
            )
    # A tool whose call a human rejected has no known right call: other calls of it
    # are not judged (the rejected call itself is forbidden above).
    open_tools = {f.get("tool") for f in case.forbidden_actions if f.get("rejected")}
    for i in unmatched:
        if actual[i]["tool"] not in open_tools:
            diff.append(
                {
                    "kind": "extra",
                    "tool": actual[i]["tool"],
                    "actual": actual[i]["arguments"],
                    "message": f"unexpected action {_label(actual[i])}",
                }
            )
    return not diff, diff


def call_text(action: dict[str, Any]) -> str:
    args = action.get("arguments") or {}
    shown = {k: v for k, v in args.items() if k not in (action.get("ignore") or [])}
    return f"{action.get('tool')}({', '.join(f'{k}={v!r}' for k, v in sorted(shown.items()))})"


def expected_text(expected: dict[str, Any]) -> str:
    outcome = expected.get("outcome")
    forbidden = expected.get("forbidden") or []
    never = f"; never {', '.join(call_text(f) for f in forbidden)}" if forbidden else ""
    if outcome == "escalate":
        return "no action (escalate to a human)" + never
    if outcome == "avoid":
        return "anything but the forbidden actions" + never
    return "; ".join(call_text(a) for a in expected.get("actions", [])) + never


def actual_text(actual: dict[str, Any]) -> str:
    if actual.get("error"):
        return actual["error"]
    if actual.get("actions"):
        return "; ".join(call_text(a) for a in actual["actions"])
    escalation = actual.get("escalation") or {}
    return f"escalated ({escalation.get('reason', '?')}): {escalation.get('detail', '')}"[:300]
