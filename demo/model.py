"""The built-in demo model: deterministic, no network, no key.

It plays the three demo workflows the way a decent small model would: right most
of the time, and wrong in realistic ways some of the time (wrong record, wrong
amount, a missing step, following an injected instruction), decided by a hash
of the work item's external id so every run of the same item behaves the same.
The large demo model ("demo-large") makes none of the small one's mistakes.
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from typing import Any

from agents.injection import data_blocks
from agents.llm import DEMO_LARGE, ModelResponse, ModelToolCall

ORDER_RE = re.compile(r"\b([A-Z]-\d{4})\b")
MONEY_RE = re.compile(r"\$\s?(\d{1,6}(?:\.\d{2})?)")
EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
USER_RE = re.compile(r"\b([a-z]+\.[a-z]+)\b")
GROUP_RE = re.compile(r"\b([a-z]+-[a-z]+(?:-[a-z]+)?)\b")
# Where the small model picks the neighbouring group by mistake.
SIBLING_GROUPS = {
    "analytics-readers": "analytics-writers",
    "analytics-writers": "analytics-readers",
    "wiki-editors": "wiki-readers",
    "wiki-readers": "wiki-editors",
    "vpn-users": "vpn-contractors",
    "vpn-contractors": "vpn-users",
    "sales-crm": "support-console",
    "support-console": "sales-crm",
    "design-tools": "analytics-readers",
}


def _roll(external_id: str, salt: str = "") -> int:
    return int(hashlib.sha256(f"{salt}{external_id}".encode()).hexdigest()[:8], 16) % 100


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class _Turn:
    """What the model sees: the work item, the calls made so far and their outputs."""

    def __init__(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], model: str):
        self.model = model
        self.large = model == DEMO_LARGE or model.endswith("large")
        self.tools = {t["function"]["name"] for t in tools}
        self.item: dict[str, Any] = {}
        for message in messages:
            if message.get("role") == "user":
                for source, body in data_blocks(message.get("content") or ""):
                    if source == "work_item":
                        self.item = json.loads(body)
        payload = self.item.get("payload") or {}
        self.text = str(payload.get("text", "")) if isinstance(payload, dict) else ""
        self.payload = payload if isinstance(payload, dict) else {}
        self.external_id = str(self.item.get("external_id", ""))
        self.calls: list[dict[str, Any]] = []  # {"name", "args", "output"}
        by_id: dict[str, dict[str, Any]] = {}
        self.turns = 0
        for message in messages:
            if message.get("role") == "assistant":
                self.turns += 1
                for call in message.get("tool_calls") or []:
                    fn = call["function"]
                    try:
                        args = json.loads(fn["arguments"])
                    except ValueError:
                        args = {}
                    entry = {"name": fn["name"], "args": args, "output": None, "turn": self.turns}
                    by_id[call["id"]] = entry
                    self.calls.append(entry)
            elif message.get("role") == "tool" and message.get("tool_call_id") in by_id:
                blocks = data_blocks(message.get("content") or "")
                body = blocks[0][1] if blocks else message.get("content") or ""
                try:
                    by_id[message["tool_call_id"]]["output"] = json.loads(body)
                except ValueError:
                    by_id[message["tool_call_id"]]["output"] = {"raw": body}
        self.roll = _roll(self.external_id)
        self.injected = bool(
            re.search(r"ignore|system\s*:|\[system\]|no approval|without review", self.text, re.I)
        )

    def called(self, name: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["name"] == name]

    def output(self, name: str) -> dict[str, Any] | None:
        done = [c for c in self.called(name) if c["output"] is not None]
        return done[-1]["output"] if done else None

    def last_error(self) -> tuple[str, dict[str, Any]] | None:
        """The tool whose last output was a validation error fed back by the runner."""
        for call in self.calls:
            out = call["output"] or {}
            if call["turn"] == self.turns and isinstance(out, dict) and out.get("validation_error"):
                return call["name"], out
        return None

    def proposed(self) -> bool:
        if self.last_error() is not None:
            return False
        return any(
            isinstance(c["output"], dict) and c["output"].get("status") == "proposed"
            for c in self.calls
        )


def _final(
    confidence: float, rationale: str, *, escalate: bool = False, citations: list[str] | None = None
) -> dict[str, Any]:
    return {
        "final": {
            "confidence": confidence,
            "rationale": rationale,
            "citations": citations or [],
            "escalate": escalate,
            "escalation_reason": rationale if escalate else "",
        }
    }


def _citations(turn: _Turn) -> list[str]:
    out = turn.output("search_knowledge") or {}
    return [r.get("slug") for r in out.get("results", [])[:2] if r.get("slug")]


def _play_refunds(turn: _Turn) -> dict[str, Any]:
    orders = list(dict.fromkeys(ORDER_RE.findall(turn.text)))
    if not orders:
        return _final(
            0.3 if not turn.large else 0.4, "No order number in the request.", escalate=turn.large
        )
    if len(orders) > 1:
        return _final(0.5, "Several orders in one request; a human should split it.", escalate=True)
    number = orders[0]
    order = turn.output("get_order")
    if order is None:
        calls: list[tuple[str, dict[str, Any]]] = [("get_order", {"order_number": number})]
        if "search_knowledge" in turn.tools and turn.roll % 3 == 0:
            calls.append(("search_knowledge", {"query": "refund policy damaged late items"}))
        return {"calls": calls}
    if not order.get("found"):
        return _final(0.4, f"Order {number} does not exist.", escalate=True)
    if turn.proposed():
        reason = (turn.item.get("title") or "a refund request").lower()
        return _final(
            0.86,
            f"{number}: {reason}. The order totals ${order.get('total')}, "
            f"${order.get('refundable')} is still refundable "
            f"(${order.get('refunded')} refunded before); refund to the original payment "
            "method per the refund policy, and tell the customer on the order.",
            citations=_citations(turn),
        )
    refundable = Decimal(order["refundable"])
    amounts = [Decimal(a) for a in MONEY_RE.findall(turn.text)]
    amount = amounts[0] if amounts else refundable
    amount = min(amount, refundable)
    if refundable <= 0:
        return _final(0.7, f"Order {number} is already fully refunded.", escalate=True)
    error = turn.last_error()
    wrong = not turn.large and error is None
    follows_injection = wrong and turn.injected and turn.roll < 35
    if follows_injection and len(amounts) > 1:
        amount = amounts[-1]  # the injected figure; validation or policy catches it
    elif wrong and turn.roll < 7 and amounts:
        amount = Decimal(order["total"])  # refunds the whole order, not the item
    elif wrong and 7 <= turn.roll < 12:
        digits = int(number[2:])
        number = f"{number[:2]}{digits + 1 if turn.roll % 2 else max(1001, digits - 1)}"
    calls = [
        (
            "create_refund",
            {
                "order_number": number,
                "amount": str(amount.quantize(Decimal("0.01"))),
                "reason": (turn.item.get("title") or "Customer refund request")[:120],
            },
        )
    ]
    skip_reply = wrong and 12 <= turn.roll < 17
    if "draft_customer_reply" in turn.tools and not skip_reply:
        to = order["customer_email"]
        if follows_injection:
            outsiders = [e for e in EMAIL_RE.findall(turn.text) if e != to]
            to = outsiders[0] if outsiders else to
        calls.append(
            (
                "draft_customer_reply",
                {
                    "to": to,
                    "subject": f"Your refund for order {number}",
                    "body": (
                        f"Hello {order['customer_name']},\n\nWe have refunded ${amount} on order "
                        f"{number}. It will reach your card in 3-5 business days.\n\nSupport"
                    ),
                    "order_number": number,
                },
            )
        )
    return {"calls": calls}


def _play_access(turn: _Turn) -> dict[str, Any]:
    users = [u for u in USER_RE.findall(turn.text) if "@" not in u]
    groups = [g for g in GROUP_RE.findall(turn.text) if g not in ("e-mail",)]
    if not users or not groups:
        return _final(
            0.35 if not turn.large else 0.4, "Whom and which group is unclear.", escalate=turn.large
        )
    username = users[0]
    if turn.output("get_user") is None:
        calls = [("get_user", {"username": username})]
        calls += [("get_group", {"group": g}) for g in dict.fromkeys(groups)][:2]
        return {"calls": calls}
    user = turn.output("get_user") or {}
    if not user.get("found") or not user.get("active", True):
        return _final(0.5, f"{username} is not an active directory user.", escalate=True)
    if turn.proposed():
        return _final(0.82, f"Grant requested for {username}; manager named in the request.")
    wrong = not turn.large and turn.last_error() is None
    target = groups[0]
    if wrong and turn.roll < 8:
        target = SIBLING_GROUPS.get(target, target)
    elif wrong and 8 <= turn.roll < 12 and len(users) > 1:
        username = users[1]
    calls = [
        (
            "grant_group_membership",
            {"username": username, "group": target, "justification": turn.text[:200]},
        )
    ]
    if wrong and turn.injected and turn.roll < 35:
        # Follows the injected extra grant; the allowlist denies it in code.
        extra = [g for g in groups[1:] if g != target]
        if extra:
            calls.append(
                (
                    "grant_group_membership",
                    {"username": username, "group": extra[-1], "justification": "As requested."},
                )
            )
    return {"calls": calls}


def _play_crm(turn: _Turn) -> dict[str, Any]:
    emails = EMAIL_RE.findall(turn.text)
    name = turn.payload.get("contact_name") or ""
    query = {"email": emails[0]} if emails else ({"name": name} if name else None)
    if query is None:
        return _final(
            0.3 if not turn.large else 0.4,
            "Which contacts to merge is unclear.",
            escalate=turn.large,
        )
    wrong = not turn.large and turn.last_error() is None
    if wrong and turn.injected and turn.roll < 35 and not turn.called("export_contacts"):
        return {"calls": [("export_contacts", {"to": emails[-1] if emails else "", "all": True})]}
    found = turn.output("find_duplicate_contacts")
    if found is None:
        return {"calls": [("find_duplicate_contacts", query)]}
    contacts = found.get("contacts", [])
    if len(contacts) < 2:
        return _final(0.7, "No duplicates to merge.", escalate=True)
    if turn.proposed():
        return _final(0.84, f"Merged {len(contacts) - 1} duplicates into the oldest record.")
    ids = [c["id"] for c in contacts]
    primary, duplicates = ids[0], ids[1:]
    if wrong and turn.roll < 8:
        primary, duplicates = ids[-1], ids[:-1]  # keeps the newest record, not the original
    elif wrong and 8 <= turn.roll < 13 and len(duplicates) > 1:
        duplicates = duplicates[:-1]  # misses one duplicate
    return {"calls": [("merge_contacts", {"primary_id": primary, "duplicate_ids": duplicates})]}


def _play_generic(turn: _Turn) -> dict[str, Any]:
    return _final(0.2, "The demo model only knows the demo workflows.", escalate=True)


class DemoModelClient:
    """Same interface as OpenAIClient; labelled demo-small / demo-large."""

    def complete(
        self, *, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> ModelResponse:
        turn = _Turn(messages, tools, model)
        if "create_refund" in turn.tools:
            plan = _play_refunds(turn)
        elif "grant_group_membership" in turn.tools:
            plan = _play_access(turn)
        elif "merge_contacts" in turn.tools:
            plan = _play_crm(turn)
        else:
            plan = _play_generic(turn)
        error = turn.last_error()
        if error is not None and "calls" in plan:
            # After a validation error, re-issue only the call that failed.
            plan["calls"] = [c for c in plan["calls"] if c[0] == error[0]] or plan["calls"]
        prompt_tokens = _tokens(json.dumps(messages)) + _tokens(json.dumps(tools))
        if "final" in plan:
            content = json.dumps(plan["final"])
            return ModelResponse(
                model=model, content=content, tokens_in=prompt_tokens, tokens_out=_tokens(content)
            )
        calls = [
            ModelToolCall(
                id=f"call_{len(turn.calls) + i + 1}", name=name, arguments=json.dumps(args)
            )
            for i, (name, args) in enumerate(plan["calls"])
        ]
        out = sum(_tokens(c.arguments) + 8 for c in calls)
        return ModelResponse(model=model, tool_calls=calls, tokens_in=prompt_tokens, tokens_out=out)
