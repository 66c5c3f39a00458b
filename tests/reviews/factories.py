"""Review-queue test data: a typed refund tool and plans of proposals."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

from agents.models import RiskClass, Step
from tests.factories import ProposalFactory, RunFactory, WorkItemFactory


class RefundArgs(BaseModel):
    order_number: str = Field(pattern=r"^A-\d{4}$", description="The shop's order number.")
    amount: Decimal = Field(gt=0, le=500, decimal_places=2)
    reason: str = Field(min_length=3, max_length=200)
    channel: Literal["email", "sms"] = "email"
    notify: bool = False


@dataclass(frozen=True)
class FakeTool:
    """The shape of agents.tools.base.Tool that the review screens read."""

    name: str
    description: str
    args_model: type[BaseModel]
    risk_class: str
    handler: Any = None
    cacheable: bool = False
    review_facts: tuple[tuple[str, str], ...] = ()


REFUND_TOOL = FakeTool(
    name="create_refund",
    description="Refund part or all of an order to the original payment method.",
    args_model=RefundArgs,
    risk_class=RiskClass.MONEY,
)

REFUND_ARGS = {
    "order_number": "A-1001",
    "amount": "42.00",
    "reason": "Arrived broken",
    "channel": "email",
    "notify": False,
}


def fake_tool_for(*, workflow, name, enabled=None, defined=None):
    return REFUND_TOOL if name == REFUND_TOOL.name else None


def plan_factory(*, workflow, tools=("create_refund",), steps: int = 2, **proposal_kwargs):
    """One work item, one run, and a plan of proposals in order (with a small trace)."""
    item = WorkItemFactory(workflow=workflow)
    run = RunFactory(work_item=item)
    for index in range(1, steps + 1):
        Step.objects.create(
            run=run,
            index=index,
            kind=Step.Kind.MODEL_CALL if index == 1 else Step.Kind.TOOL_CALL,
            name="demo-small" if index == 1 else "lookup_order",
            input={"prompt": "<data>refund request</data>"},
            output={"order": "A-1001", "total": "99.00"},
            latency_ms=120 * index,
            tokens_in=400,
            tokens_out=60,
            cost_usd=Decimal("0.0001"),
        )
    return [
        ProposalFactory(
            run=run,
            sequence=sequence,
            tool=tool,
            arguments=dict(REFUND_ARGS),
            **proposal_kwargs,
        )
        for sequence, tool in enumerate(tools, start=1)
    ]
