"""Refund tools, acting on the sandbox order system."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from django.db import IntegrityError, transaction
from pydantic import BaseModel, ConfigDict, Field

from agents.models import RiskClass
from agents.roles import ArgRoles
from agents.tools.base import Tool, ToolContext, ToolError
from demo import sql as demo_sql
from demo.models import SandboxMessage, SandboxOrder, SandboxRefund
from governance import sqlkit as sql

ERR_NO_SUCH_ORDER = "There is no order {number}."
ERR_REFUND_EXCEEDS = "A refund of {amount} exceeds what is left to refund on {number} ({left})."
ERR_ORDER_NOT_REFUNDABLE = "Order {number} is {status} and cannot be refunded."

OrderNumber = Annotated[str, Field(pattern=r"^[A-Z]-\d{3,8}$", description="e.g. A-1001")]
EMAIL_PATTERN = r"^[^@\s<>]+@[^@\s<>]+\.[A-Za-z]{2,}$"


class GetOrderArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_number: OrderNumber


class CreateRefundArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_number: OrderNumber
    amount: Annotated[
        Decimal,
        Field(gt=0, le=500, max_digits=8, decimal_places=2, description="USD, at most 500"),
    ]
    reason: Annotated[str, Field(min_length=3, max_length=300)]


class DraftReplyArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: Annotated[str, Field(pattern=EMAIL_PATTERN, max_length=254)]
    subject: Annotated[str, Field(min_length=1, max_length=200)]
    body: Annotated[str, Field(min_length=1, max_length=4000)]
    order_number: OrderNumber | None = None


def order_as_dict(order: SandboxOrder) -> dict[str, Any]:
    return {
        "order_number": order.number,
        "customer_name": order.customer_name,
        "customer_email": order.customer_email,
        "total": str(order.total),
        "refunded": str(order.refunded),
        "refundable": str(order.total - order.refunded),
        "status": order.status,
        "items": order.items,
        "placed_at": order.placed_at.isoformat(),
    }


def get_order(ctx: ToolContext, args: GetOrderArgs) -> dict[str, Any]:
    order = SandboxOrder.objects.filter(number=args.order_number).first()
    if order is None:
        return {"found": False, "error": ERR_NO_SUCH_ORDER.format(number=args.order_number)}
    return {"found": True, **order_as_dict(order)}


def create_refund(ctx: ToolContext, args: CreateRefundArgs) -> dict[str, Any]:
    """Refund part of an order, once per idempotency key.

    One statement locks the order and finds a refund already made under this key;
    every check happens before anything is written, so a refusal leaves the
    enclosing transaction (the execution's, which this runs inside) usable and
    needs no savepoint. Hand-written statements (demo.sql, governance.sqlkit): this runs on
    every approved refund."""
    key = ctx.require_key("create_refund")
    nested = transaction.get_connection().in_atomic_block
    error = ""
    try:
        with transaction.atomic(savepoint=False):
            order, done_id, done_amount = demo_sql.order_locked_with_refund(
                number=args.order_number, key=key
            )
            if done_id is not None:
                return {"refund_id": done_id, "amount": str(done_amount), "replayed": True}
            if order is None:
                error = ERR_NO_SUCH_ORDER.format(number=args.order_number)
            elif order.status in ("cancelled", "chargeback"):
                error = ERR_ORDER_NOT_REFUNDABLE.format(number=order.number, status=order.status)
            elif args.amount > order.total - order.refunded:
                left = order.total - order.refunded
                error = ERR_REFUND_EXCEEDS.format(
                    amount=args.amount, number=order.number, left=left
                )
            else:
                refund = SandboxRefund(
                    order=order, amount=args.amount, reason=args.reason, idempotency_key=key
                )
                sql.insert([refund])
                order.refunded = order.refunded + args.amount
                order.status = "refunded" if order.refunded == order.total else "partially_refunded"
                sql.update(
                    SandboxOrder, order.pk, {"refunded": order.refunded, "status": order.status}
                )
    except IntegrityError:
        if nested:
            raise  # the enclosing transaction is spent; its retry replays by the key
        # A concurrent delivery with the same key won the race: report its refund.
        existing = SandboxRefund.objects.get(idempotency_key=key)
        return {"refund_id": existing.pk, "amount": str(existing.amount), "replayed": True}
    if error:
        raise ToolError(error)
    return {"refund_id": refund.pk, "amount": str(refund.amount), "replayed": False}


def draft_customer_reply(ctx: ToolContext, args: DraftReplyArgs) -> dict[str, Any]:
    key = ctx.require_key("draft_customer_reply")
    message, created = SandboxMessage.objects.get_or_create(
        idempotency_key=key, defaults={"to": args.to, "subject": args.subject, "body": args.body}
    )
    return {"message_id": message.pk, "replayed": not created}


RULE_REPLY_NOT_TO_CUSTOMER = (
    "Customer replies may only go to the address on the order they are about; "
    "{to_domain} is not the customer of {number}."
)
RULE_REPLY_WITHOUT_ORDER = "A customer reply must name the order it is about."


def reply_goes_to_order_customer(ctx: Any) -> Any:
    """A policy check (listed in the refunds workflow's ``policy["checks"]``): a reply
    goes to the order's own customer, never to an address found in the ticket text."""
    from agents.policy import CheckResult, Verdict

    if ctx.tool.name != "draft_customer_reply":
        return None
    number, to = ctx.arguments.get("order_number"), str(ctx.arguments.get("to", "")).lower()
    if not number:
        return CheckResult(Verdict.DENY, RULE_REPLY_WITHOUT_ORDER)
    email = SandboxOrder.objects.filter(number=number).values_list("customer_email", flat=True)
    if not email or email[0].lower() != to:
        return CheckResult(
            Verdict.DENY,
            RULE_REPLY_NOT_TO_CUSTOMER.format(to_domain="@" + to.rsplit("@", 1)[-1], number=number),
        )
    return None


def order_customer(number: object) -> str | None:
    """The subject binding's system of record: whose order this is (its email)."""
    email = SandboxOrder.objects.filter(number=str(number)).values_list("customer_email", flat=True)
    return email[0] if email else None


TOOLS = [
    Tool(
        name="get_order",
        description="Look up an order by its number: customer, total, what was already refunded.",
        args_model=GetOrderArgs,
        risk_class=RiskClass.READ,
        handler=get_order,
    ),
    Tool(
        name="create_refund",
        description="Refund part or all of an order to the original payment method.",
        args_model=CreateRefundArgs,
        risk_class=RiskClass.MONEY,
        handler=create_refund,
        in_database=True,
        roles=ArgRoles(
            money=("$.amount",),
            subject=("$.order_number",),
            free_text=("$.reason",),
            subject_owner=order_customer,
        ),
        review_facts=(
            ("Order total", "get_order.total"),
            ("Refundable", "get_order.refundable"),
            ("Already refunded", "get_order.refunded"),
            ("Order status", "get_order.status"),
            ("Customer", "get_order.customer_name"),
        ),
    ),
    Tool(
        name="draft_customer_reply",
        description="Send the customer an email reply about their request.",
        args_model=DraftReplyArgs,
        risk_class=RiskClass.EXTERNAL_MESSAGE,
        handler=draft_customer_reply,
        in_database=True,
        roles=ArgRoles(
            recipient=("$.to",),
            subject=("$.order_number",),
            free_text=("$.subject", "$.body"),
            subject_owner=order_customer,
        ),
        review_facts=(
            ("Customer on the order", "get_order.customer_name"),
            ("Customer's address", "get_order.customer_email"),
            ("Refundable", "get_order.refundable"),
            ("Already refunded", "get_order.refunded"),
        ),
    ),
]
