"""A deliberately regressed agent version, to prove the regression suite catches one.

It wraps the built-in demo model and gets the actions subtly wrong the way a bad
prompt or model change would: refunds a dollar more than asked, grants the
neighbouring group, and leaves one duplicate contact unmerged (or keeps the newest
record). Escalations are left alone, so the suite's failures name exactly the
cases whose actions changed. Selected with ``--agent-version demo-regressed``.

It runs on the same demo models as the current version (and costs what they cost):
replays never read the model request cache, so the names need not differ.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from agents.evals import AgentVariant
from agents.llm import ModelResponse
from demo.model import SIBLING_GROUPS, DemoModelClient

VERSION = "demo-regressed"


def _regress(name: str, args: dict[str, Any]) -> dict[str, Any]:
    args = dict(args)
    if name == "create_refund" and args.get("amount") is not None:
        args["amount"] = str(Decimal(str(args["amount"])) + Decimal("1.00"))
    elif name == "grant_group_membership" and args.get("group") in SIBLING_GROUPS:
        args["group"] = SIBLING_GROUPS[args["group"]]
    elif name == "merge_contacts":
        duplicates = list(args.get("duplicate_ids") or [])
        if len(duplicates) > 1:
            args["duplicate_ids"] = duplicates[:-1]
        elif duplicates:
            args["primary_id"], args["duplicate_ids"] = duplicates[0], [args["primary_id"]]
    return args


class DemoRegressedClient:
    """The demo model with its write actions bent; reads and final answers unchanged."""

    def __init__(self) -> None:
        self.inner = DemoModelClient()

    def complete(
        self, *, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> ModelResponse:
        response = self.inner.complete(model=model, messages=messages, tools=tools)
        for call in response.tool_calls:
            try:
                args = json.loads(call.arguments)
            except ValueError:
                continue
            if isinstance(args, dict):
                call.arguments = json.dumps(_regress(call.name, args))
        return response


def variant() -> AgentVariant:
    return AgentVariant(version=VERSION, client=DemoRegressedClient())
