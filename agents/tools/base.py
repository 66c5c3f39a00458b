"""The shape of a tool: typed arguments, a risk class, a description and a handler.

A2's ``agents.schema_tools`` builds the same ``Tool`` from OpenAI function
definitions, so keep this dataclass stable: new fields get defaults.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from pydantic import BaseModel, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from agents.models import RiskClass
from agents.roles import ArgRoles, money_problems, money_total
from governance.hygiene import ERR_NOT_FINITE, first_problem

if TYPE_CHECKING:
    from agents.models import Run, WorkItem
    from governance.models import Workflow

ERR_NO_IDEMPOTENCY_KEY = "A side-effecting tool needs an idempotency key; refusing to run {tool}."


class ToolError(Exception):
    """A permanent failure of a tool (bad record, business rule): not retried."""


class TransientToolError(ToolError):
    """A failure worth retrying with the same idempotency key (timeouts, 5xx)."""


@dataclass(frozen=True)
class ToolContext:
    """What a handler may know about the call. ``idempotency_key`` is set for
    side-effecting executions and must be honoured by the handler."""

    workflow: Workflow
    principal: str
    work_item: WorkItem | None = None
    run: Run | None = None
    idempotency_key: str = ""
    executing: bool = False

    def require_key(self, tool: str) -> str:
        if not self.idempotency_key:
            raise ToolError(ERR_NO_IDEMPOTENCY_KEY.format(tool=tool))
        return self.idempotency_key


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)


def arguments_hash(arguments: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a tool call's arguments: what a reviewer approved."""
    return hashlib.sha256(canonical_json(arguments).encode()).hexdigest()


_EMAIL_KEYS = ("to", "email", "recipient", "customer_email")
_GROUP_KEYS = ("group", "group_name")
_AMOUNT_KEYS = ("amount", "amount_usd", "total")


def default_facts(arguments: dict[str, Any]) -> dict[str, Any]:
    """What policy checks look at, read from conventional argument names:
    amount (money), records (how many rows a call touches), group, email_domain."""
    facts: dict[str, Any] = {}
    for key in _AMOUNT_KEYS:
        if arguments.get(key) is not None:
            with contextlib.suppress(ArithmeticError):
                facts["amount"] = Decimal(str(arguments[key]))
            break
    for key in _GROUP_KEYS:
        if arguments.get(key):
            facts["group"] = str(arguments[key])
            break
    for key in _EMAIL_KEYS:
        value = arguments.get(key)
        if isinstance(value, str) and "@" in value:
            facts["email_domain"] = value.rsplit("@", 1)[1].strip().lower()
            break
    lists = [len(v) for v in arguments.values() if isinstance(v, list)]
    if lists:
        facts["records"] = max(lists)
    return facts


def _loc(where: str) -> list[str | int]:
    """``$.items[0].price`` -> ["items", 0, "price"]."""
    parts: list[str | int] = []
    for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", where):
        parts.append(name if name else int(index))
    return parts


Handler = Callable[[ToolContext, BaseModel], dict[str, Any]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    args_model: type[BaseModel]
    risk_class: str  # a RiskClass value
    handler: Handler
    cacheable: bool = False  # a read whose output is stable enough to cache briefly
    cache_seconds: int = 60
    # Extra policy facts from validated arguments; default_facts() covers the usual names.
    facts: Callable[[BaseModel], dict[str, Any]] | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    # Acts only on this database (the sandbox systems of record): the execution runs
    # it inside its own transaction, so the side effect and its record commit as one.
    in_database: bool = False
    # Its output carries text someone outside typed (a ticket body, an email thread):
    # the runner scans it for injections. A system of record's structured answer (an
    # order, a directory entry) is trusted and never scanned.
    untrusted_output: bool = False
    # Which arguments are money (caps apply to their sum), recipients, the subject
    # record and free text (agents.roles). A money tool without a declared amount
    # never runs without a human.
    roles: ArgRoles | None = None
    # The facts a reviewer needs beside the arguments, as ``(label, source)`` pairs:
    # ``"get_order.refundable"`` reads a read tool's output in the same run (dots
    # walk into it), ``"item.customer_id"`` one of the work item's trusted fields.
    review_facts: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def is_read(self) -> bool:
        return self.risk_class == RiskClass.READ

    def to_openai_tool(self) -> dict[str, Any]:
        schema = self.args_model.model_json_schema()
        schema.pop("title", None)
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": f"{self.description} (risk: {self.risk_class})",
                "parameters": schema,
            },
        }

    def validate(self, arguments: dict[str, Any]) -> BaseModel:
        """Raises pydantic.ValidationError; fail closed on anything unexpected.

        A value the model accepts but no record can hold is refused too, as a field
        error like any other: NaN or Infinity (pydantic reads "NaN" into a float), a
        NUL character or a lone surrogate (``governance.hygiene``)."""
        args = self.args_model.model_validate(arguments)
        problem = first_problem(args.model_dump(by_alias=True))
        if problem is not None:
            value: Any = arguments
            with contextlib.suppress(LookupError, TypeError):
                for part in problem.path:
                    value = value[part]
            kind: Any = (
                "finite_number"
                if problem.message == ERR_NOT_FINITE
                else PydanticCustomError("unstorable_text", problem.message)
            )
            detail = InitErrorDetails(type=kind, loc=problem.path, input=value)
            raise ValidationError.from_exception_data(self.args_model.__name__, [detail])
        if self.roles is not None and self.roles.money:
            self.money_validate(args.model_dump(mode="json"), self.roles)
        return args

    def money_validate(self, arguments: dict[str, Any], roles: ArgRoles) -> None:
        """Money must be a finite number above zero (unless the role is signed):
        refused as a field error, like any other invalid argument."""
        problems = money_problems(roles, arguments)
        if problems:
            details = [
                InitErrorDetails(
                    type=PydanticCustomError("money", message),
                    loc=tuple(_loc(where)),
                    input=None,
                )
                for where, message in problems
            ]
            raise ValidationError.from_exception_data(self.args_model.__name__, details)

    def policy_facts(self, args: BaseModel, roles: ArgRoles | None = None) -> dict[str, Any]:
        arguments = args.model_dump(mode="json")
        facts = default_facts(arguments)
        roles = roles if roles is not None else self.roles
        if roles is not None and roles.money:
            # The declared money paths replace the conventional names: the amount is
            # the sum of every value they reach (nested, in arrays).
            facts.pop("amount", None)
            total = money_total(roles, arguments)
            if total is not None:
                facts["amount"] = total
        if self.facts is not None:
            facts.update(self.facts(args))
        return facts

    def run(self, ctx: ToolContext, args: BaseModel) -> dict[str, Any]:
        if not self.is_read:
            ctx.require_key(self.name)
        return self.handler(ctx, args)
