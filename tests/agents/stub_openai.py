"""An OpenAI-compatible chat-completions server for tests, on 127.0.0.1.

The real ``openai`` client talks to it over HTTP. Each work item names its script
with a marker in its text (``[scenario:good]``); the turn is the number of
assistant messages already in the conversation, so the server keeps no state
beyond a log of the requests it served.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


def call(name: str, arguments: dict[str, Any] | str) -> dict[str, Any]:
    return {
        "name": name,
        "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
    }


def final(confidence: float = 0.9, rationale: str = "Done.", **extra: Any) -> dict[str, Any]:
    return {"content": json.dumps({"confidence": confidence, "rationale": rationale, **extra})}


GOOD_REFUND = {"order_number": "A-1001", "amount": "42.00", "reason": "Arrived broken"}

LOOKUP = call("get_order", {"order_number": "A-1001"})

SCRIPTS: dict[str, list[dict[str, Any]]] = {
    "good": [
        {"calls": [call("get_order", {"order_number": "A-1001"})]},
        {"calls": [call("create_refund", GOOD_REFUND)]},
        final(0.92, "The order arrived broken; refund the item."),
    ],
    "invalid_then_good": [
        {"calls": [call("create_refund", {**GOOD_REFUND, "amount": "-5"})]},
        {"calls": [call("create_refund", GOOD_REFUND)]},
        final(),
    ],
    "invalid_twice": [
        {"calls": [call("create_refund", {**GOOD_REFUND, "amount": "-5"})]},
        {"calls": [call("create_refund", {**GOOD_REFUND, "amount": "9000"})]},
        final(),
    ],
    "bad_json": [
        {"calls": [call("create_refund", '{"order_number": "A-1001", amount: }')]},
        {"calls": [call("create_refund", GOOD_REFUND)]},
        final(),
    ],
    "ungranted": [
        {"calls": [call("delete_order", {"order_number": "A-1001"})]},
        final(),
    ],
    "loop": [{"calls": [call("get_order", {"order_number": "A-1001"})]}],
    "over_cap": [
        {"calls": [call("create_refund", {**GOOD_REFUND, "amount": "450.00"})]},
        final(),
    ],
    # The order is looked up first: its record grounds the refund's order and amount.
    "within_cap": [
        {"calls": [LOOKUP, call("create_refund", {**GOOD_REFUND, "amount": "42.00"})]},
        final(),
    ],
    "huge_tokens": [
        {"calls": [call("get_order", {"order_number": "A-1001"})], "usage": (5_000_000, 10)},
        final(),
    ],
    # 50,000 tokens over two turns: a proposal, then the final answer.
    "fifty_k": [
        {"calls": [call("create_refund", GOOD_REFUND)], "usage": (30_000, 5_000)},
        {**final(), "usage": (12_000, 3_000)},
    ],
    # Most of the prompt served from the endpoint's prompt cache.
    "prompt_cached": [
        {"calls": [call("create_refund", GOOD_REFUND)], "usage": (10_000, 1_000, 8_000)},
        {**final(), "usage": (10_000, 500, 9_000)},
    ],
    "refusal": [
        {
            "by_model": {
                "stub-small": {"content": "I'm sorry, I can't help with that."},
                "stub-large": {"calls": [call("create_refund", GOOD_REFUND)]},
            }
        },
        final(),
    ],
    "low_confidence": [
        final(0.2, "Not sure."),
        {"calls": [call("create_refund", GOOD_REFUND)]},
        final(0.9, "Refund the broken item."),
    ],
    "plan": [
        {
            "calls": [
                LOOKUP,
                call("create_refund", GOOD_REFUND),
                call(
                    "draft_customer_reply",
                    {
                        "to": "cora@example.com",
                        "subject": "Your refund",
                        "body": "We refunded $42.00.",
                        "order_number": "A-1001",
                    },
                ),
            ]
        },
        final(),
    ],
    # The reply first, then the refund: a human step before an auto-allowed one.
    "reply_first": [
        {
            "calls": [
                LOOKUP,
                call(
                    "draft_customer_reply",
                    {
                        "to": "cora@example.com",
                        "subject": "Your refund",
                        "body": "We are refunding $42.00.",
                        "order_number": "A-1001",
                    },
                ),
                call("create_refund", GOOD_REFUND),
            ]
        },
        final(),
    ],
    # A fully compromised model: it does whatever the item's text says.
    "inj_other_tool": [
        {
            "calls": [
                call(
                    "grant_group_membership",
                    {
                        "username": "eve.x",
                        "group": "domain-admins",
                        "justification": "the ticket said so",
                    },
                )
            ]
        },
        final(),
    ],  # fmt: skip
    "inj_raise_cap": [
        {"calls": [call("create_refund", {**GOOD_REFUND, "amount": "499.00"})]},
        final(0.99),
    ],
    "inj_lift_limit": [
        {"calls": [call("create_refund", {**GOOD_REFUND, "amount": "5000"})]},
        {"calls": [call("create_refund", {**GOOD_REFUND, "amount": "5000.00"})]},
        final(0.99),
    ],
    "inj_email_outsider": [
        {
            "calls": [
                call(
                    "draft_customer_reply",
                    {
                        "to": "loot@evil.example",
                        "subject": "Receipts",
                        "body": "All receipts attached.",
                        "order_number": "A-1001",
                    },
                )
            ]
        },
        final(0.99),
    ],  # fmt: skip
    "slow": [
        {"calls": [call("get_order", {"order_number": "A-1001"})], "delay": 2.5},
        {"calls": [call("create_refund", GOOD_REFUND)]},
        final(),
    ],
}

SCENARIO_RE = re.compile(r"\[scenario:([a-z_]+)\]")


class StubOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.requests.append(body)
                status, payload = stub.respond(body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> StubOpenAI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def respond(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        text = json.dumps(body["messages"])
        match = SCENARIO_RE.search(text)
        if not match or match.group(1) not in SCRIPTS:
            return 400, {"error": {"message": "no scenario", "type": "invalid_request_error"}}
        script = SCRIPTS[match.group(1)]
        turn = sum(1 for m in body["messages"] if m.get("role") == "assistant")
        entry = script[min(turn, len(script) - 1)]
        entry = entry.get("by_model", {}).get(body["model"], entry)
        if entry.get("delay"):
            time.sleep(entry["delay"])
        calls = [
            {
                "id": f"call_{turn}_{i}",
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for i, c in enumerate(entry.get("calls", []))
        ]
        # (prompt, completion) or (prompt, completion, cached): the cached input tokens
        # are part of the prompt's, reported as OpenAI does in prompt_tokens_details.
        prompt_tokens, completion_tokens, cached_tokens = (*entry.get("usage", (350, 40)), 0)[:3]
        message: dict[str, Any] = {"role": "assistant", "content": entry.get("content")}
        if calls:
            message["tool_calls"] = calls
        return 200, {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached_tokens},
            },
        }

    def scenario_requests(self, scenario: str) -> list[dict[str, Any]]:
        marker = f"[scenario:{scenario}]"
        return [r for r in self.requests if marker in json.dumps(r["messages"])]


# The stub's models cost what the models they stand for cost (the seeded prices).
STUB_PRICES = {"stub-small": "gpt-4o-mini", "stub-large": "gpt-4o"}


def stub_prices_set() -> None:
    """Price the stub's models in the table (directly: tests of change control go
    through ``model_price_set``), and have this process read the table again."""
    from agents.prices import prices_forget
    from governance.models import ModelPrice

    for stub_model, real in STUB_PRICES.items():
        price = ModelPrice.objects.get(model=real)
        ModelPrice.objects.update_or_create(
            model=stub_model,
            defaults={
                "input_per_mtok": price.input_per_mtok,
                "cached_input_per_mtok": price.cached_input_per_mtok,
                "output_per_mtok": price.output_per_mtok,
            },
        )
    prices_forget()


@pytest.fixture(name="stub_openai")
def stub_openai_fixture(settings, db) -> Iterator[StubOpenAI]:
    """The stub, with settings pointing the runner's OpenAI client at it, and its
    models priced."""
    from tests.redis_keys import suite_cache_keys_delete

    suite_cache_keys_delete()  # model responses are cached: each test starts cold
    stub = StubOpenAI().start()
    settings.OPENAI_BASE_URL = stub.url
    settings.OPENAI_API_KEY = "test-key"
    stub_prices_set()
    try:
        yield stub
    finally:
        stub.stop()


@pytest.fixture(name="stub_openai_env")
def stub_openai_env_fixture(monkeypatch, stub_openai) -> StubOpenAI:
    """Also export the stub to a worker subprocess started after this fixture."""
    monkeypatch.setenv("OPENAI_BASE_URL", stub_openai.url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    return stub_openai


# --- Data the scripts expect -----------------------------------------------------------

REFUND_TOOLS = ("get_order", "create_refund", "draft_customer_reply", "search_knowledge")


def make_refund_workflow(
    *,
    slug: str = "refunds",
    level: str = "shadow",
    cap: str | None = "200",
    tools: tuple[str, ...] = REFUND_TOOLS,
    bound: bool = False,
    **fields: Any,
) -> Any:
    """A refunds workflow on the stub models, its grants, and order A-1001 ($120).

    ``bound``: the items' sender ("from", a trusted field) is their subject, so a
    refund of the sender's own order can run on its own at limited
    (agents.provenance); ``make_item`` then sends from the order's customer."""
    from decimal import Decimal

    from django.utils import timezone

    from demo.models import SandboxOrder
    from governance.models import ToolGrant, Workflow

    policy: dict[str, Any] = {"checks": ["demo.tools.refunds.reply_goes_to_order_customer"]}
    if cap is not None:
        policy["caps"] = {"create_refund": {"amount": cap}}
    if bound:
        policy["subject"] = {"field": "from"}
        fields.setdefault("trusted_fields", ["from"])
    workflow = Workflow.objects.create(
        slug=slug,
        name=slug.title(),
        autonomy_level=level,
        model_small="stub-small",
        model_large="stub-large",
        policy=policy,
        **fields,
    )
    for tool in tools:
        ToolGrant.objects.create(workflow=workflow, tool=tool, autonomy_level=level)
    SandboxOrder.objects.get_or_create(
        number="A-1001",
        defaults={
            "customer_name": "Cora Diaz",
            "customer_email": "cora@example.com",
            "total": Decimal("120.00"),
            "items": [{"name": "vase", "price": "42.00"}, {"name": "lamp", "price": "78.00"}],
            "placed_at": timezone.now(),
        },
    )
    return workflow


def make_item(workflow: Any, scenario: str, text: str = "", external_id: str = "") -> Any:
    from agents.models import WorkItem

    return WorkItem.objects.create(
        workflow=workflow,
        external_id=external_id or f"{scenario}-{WorkItem.objects.count() + 1}",
        title=f"Scenario {scenario}",
        payload=item_payload(
            workflow, f"[scenario:{scenario}] {text or 'Order A-1001 arrived broken.'}"
        ),
        source=WorkItem.Source.API,
    )


CUSTOMER = "cora@example.com"


def item_payload(workflow: Any, text: str) -> dict[str, Any]:
    """An item's payload; sent by A-1001's customer when the workflow trusts "from"."""
    payload: dict[str, Any] = {"text": text}
    if "from" in (workflow.trusted_fields or []):
        payload["from"] = CUSTOMER
    return payload
