"""Reads for the reviewer queues. Every function runs a fixed number of queries,
whatever the size of the queue (per workflow in scope, never per row)."""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet, Subquery
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from agents.models import Escalation, Proposal, RiskClass, Step
from agents.policy import grant_level
from console.models import AutonomyLevel, ToolGrant, Workflow
from reviews import tools as review_tools
from reviews.models import Approval, Claim

# Counting a million pending rows on every poll costs more than the number is
# worth: above this, the queue says "1000+".
COUNT_CAP = 1000
QUEUE_PAGE_SIZE = 25


def awaiting_review_q(prefix: str = "") -> Q:
    """Waiting for a human before it may run. An auto-allowed action on its way to
    execution is pending too, but it is not the reviewer's to decide."""
    return Q(**{f"{prefix}status": Proposal.Status.PENDING, f"{prefix}auto_executed": False})


def awaiting_sample_q(prefix: str = "") -> Q:
    """Executed automatically, picked for post-hoc review, not reviewed yet."""
    return Q(
        **{
            f"{prefix}status": Proposal.Status.EXECUTED,
            f"{prefix}sampled_for_review": True,
            f"{prefix}decision__isnull": True,
        }
    )


def claimable_q(prefix: str = "") -> Q:
    return awaiting_review_q(prefix) | awaiting_sample_q(prefix)


def is_sample(proposal: Proposal) -> bool:
    return proposal.status == Proposal.Status.EXECUTED and proposal.sampled_for_review


@dataclass(frozen=True)
class QueueFilters:
    tool: str = ""
    risk_class: str = ""
    verdict: str = ""
    flagged: bool | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> QueueFilters:
        flagged = query.get("flagged", "")
        return cls(
            tool=query.get("tool", "").strip()[:100],
            risk_class=query.get("risk", "") if query.get("risk") in RiskClass.values else "",
            verdict=query.get("verdict", "")
            if query.get("verdict") in Proposal.Verdict.values
            else "",
            flagged=True if flagged == "1" else False if flagged == "0" else None,
        )

    def as_q(self, prefix: str = "") -> Q:
        q = Q()
        if self.tool:
            q &= Q(**{f"{prefix}tool": self.tool})
        if self.risk_class:
            q &= Q(**{f"{prefix}risk_class": self.risk_class})
        if self.verdict:
            q &= Q(**{f"{prefix}verdict": self.verdict})
        if self.flagged is not None:
            q &= Q(**{f"{prefix}flagged_injection": self.flagged})
        return q

    def apply(self, queryset: QuerySet[Proposal]) -> QuerySet[Proposal]:
        return queryset.filter(self.as_q())

    def as_query(self) -> dict[str, str]:
        query = {"tool": self.tool, "risk": self.risk_class, "verdict": self.verdict}
        if self.flagged is not None:
            query["flagged"] = "1" if self.flagged else "0"
        return {k: v for k, v in query.items() if v}

    @property
    def active(self) -> bool:
        return bool(self.as_query())


@dataclass(frozen=True)
class QueueSize:
    workflow: Workflow
    pending: int
    escalations: int
    oldest_pending_at: datetime | None
    oldest_escalation_at: datetime | None

    @property
    def pending_label(self) -> str:
        return f"{COUNT_CAP}+" if self.pending >= COUNT_CAP else str(self.pending)

    @property
    def escalations_label(self) -> str:
        return f"{COUNT_CAP}+" if self.escalations >= COUNT_CAP else str(self.escalations)


_OLDEST_PENDING_SQL = """
WITH RECURSIVE prio(p) AS (
    SELECT MAX(priority) FROM {table} WHERE workflow_id = %s AND status = 'pending'
    UNION ALL
    SELECT (SELECT MAX(priority) FROM {table}
            WHERE workflow_id = %s AND status = 'pending' AND priority < prio.p)
    FROM prio WHERE prio.p IS NOT NULL
)
SELECT MIN((SELECT MIN(created_at) FROM {table}
            WHERE workflow_id = %s AND status = 'pending' AND priority = prio.p))
FROM prio WHERE prio.p IS NOT NULL
"""


def _as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    parsed = parse_datetime(str(value))  # SQLite hands back text
    if parsed is not None and timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def oldest_pending_at(workflow_id: int) -> datetime | None:
    """The oldest pending proposal of a workflow, read from the queue index.

    A loose index scan: one probe per distinct priority, each a single step on
    ``proposal_queue_idx`` (workflow, -priority, created_at), so it costs the
    same for ten pending rows and for a million.
    """
    table = connection.ops.quote_name(Proposal._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(_OLDEST_PENDING_SQL.format(table=table), [workflow_id] * 3)
        row = cursor.fetchone()
    return _as_datetime(row[0]) if row else None


_QUEUE_SIZE_SQL = """
WITH RECURSIVE prio(p) AS (
    SELECT MAX(priority) FROM {proposal} WHERE workflow_id = %s AND status = 'pending'
    UNION ALL
    SELECT (SELECT MAX(priority) FROM {proposal}
            WHERE workflow_id = %s AND status = 'pending' AND priority < prio.p)
    FROM prio WHERE prio.p IS NOT NULL
)
SELECT
    (SELECT COUNT(*) FROM (SELECT 1 FROM {proposal}
        WHERE workflow_id = %s AND status = 'pending' AND NOT auto_executed LIMIT %s) pending),
    (SELECT COUNT(*) FROM (SELECT 1 FROM {escalation}
        WHERE workflow_id = %s AND status = %s LIMIT %s) escalations),
    (SELECT MIN((SELECT MIN(created_at) FROM {proposal}
        WHERE workflow_id = %s AND status = 'pending' AND priority = prio.p))
     FROM prio WHERE prio.p IS NOT NULL),
    (SELECT MIN(created_at) FROM {escalation} WHERE workflow_id = %s AND status = %s)
"""


def queue_sizes(workflows: list[Workflow]) -> list[QueueSize]:
    """Live counts for each workflow: one statement per workflow, every part of it
    an index range that stops at ``COUNT_CAP`` (or a loose index scan for the oldest)."""
    sql = _QUEUE_SIZE_SQL.format(
        proposal=connection.ops.quote_name(Proposal._meta.db_table),
        escalation=connection.ops.quote_name(Escalation._meta.db_table),
    )
    sizes = []
    with connection.cursor() as cursor:
        for workflow in workflows:
            pk, is_open = workflow.pk, Escalation.Status.OPEN
            cursor.execute(sql, [pk, pk, pk, COUNT_CAP, pk, is_open, COUNT_CAP, pk, pk, is_open])
            pending, escalations, oldest_pending, oldest_escalation = cursor.fetchone()
            sizes.append(
                QueueSize(
                    workflow=workflow,
                    pending=pending,
                    escalations=escalations,
                    oldest_pending_at=_as_datetime(oldest_pending),
                    oldest_escalation_at=_as_datetime(oldest_escalation),
                )
            )
    return sizes


@dataclass(frozen=True)
class QueueRow:
    """One line of the queue list: plain values, read without building models (the
    list renders on every page view and every poll)."""

    pk: int
    workflow_id: int
    workflow_name: str
    tool: str
    risk_class: str
    flagged_injection: bool
    status: str
    priority: int
    created_at: datetime
    title: str
    holder: str  # who holds a claim on it, or ""
    card_url: str

    @property
    def risk_label(self) -> str:
        return str(RiskClass(self.risk_class).label) if self.risk_class in RiskClass.values else ""


_ROW_FIELDS = (
    "pk",
    "workflow_id",
    "workflow__name",
    "workflow__slug",
    "tool",
    "risk_class",
    "flagged_injection",
    "status",
    "priority",
    "created_at",
    "work_item__title",
    "work_item__external_id",
    "claim__reviewer__username",
)


def queue_rows(
    *, workflow_ids: list[int], filters: QueueFilters, limit: int = QUEUE_PAGE_SIZE
) -> list[QueueRow]:
    """The head of the queue in claim order, with who holds each item."""
    per_workflow = [
        list(
            filters.apply(Proposal.objects.filter(scope, workflow_id=workflow_id))
            .order_by("-priority", "created_at", "pk")
            .values_list(*_ROW_FIELDS)[:limit]
        )
        for workflow_id in workflow_ids
        # Each scope is its own index range: the pending queue, then post-hoc samples.
        for scope in (awaiting_review_q(), awaiting_sample_q())
    ]
    merged = list(heapq.merge(*per_workflow, key=lambda r: (-r[8], r[9])))[:limit]
    # One reverse() per workflow rather than per row: the list renders on every decision.
    bases: dict[int, str] = {}
    rows = []
    for (
        pk,
        wf_id,
        wf_name,
        slug,
        tool,
        risk,
        flagged,
        status,
        prio,
        created,
        title,
        ext,
        holder,
    ) in merged:
        if wf_id not in bases:
            bases[wf_id] = reverse("review-card", args=[slug, 0]).removesuffix("0/")
        rows.append(
            QueueRow(
                pk=pk,
                workflow_id=wf_id,
                workflow_name=wf_name,
                tool=tool,
                risk_class=risk,
                flagged_injection=flagged,
                status=status,
                priority=prio,
                created_at=created,
                title=title or ext,
                holder=holder or "",
                card_url=f"{bases[wf_id]}{pk}/",
            )
        )
    return rows


def tool_names(workflow_ids: list[int]) -> list[str]:
    """Tools the filter offers: the workflows' grants (cheap), not a scan of the queue."""
    return sorted(
        set(
            ToolGrant.objects.filter(workflow_id__in=workflow_ids)
            .order_by()  # the model's ordering joins the workflow: sorted here instead
            .values_list("tool", flat=True)
        )
    )


@dataclass(frozen=True)
class BudgetUse:
    label: str
    used: Any
    limit: Any
    unit: str = ""

    @property
    def fraction(self) -> float:
        try:
            return min(float(self.used) / float(self.limit), 1.0) if self.limit else 0.0
        except (TypeError, ValueError, ZeroDivisionError):
            return 0.0

    @property
    def over(self) -> bool:
        return bool(self.limit) and Decimal(str(self.used)) > Decimal(str(self.limit))


@dataclass
class ArgRow:
    name: str
    value: Any
    type: str


@dataclass
class Card:
    proposal: Proposal
    claim: Claim | None
    plan: list[Proposal]
    steps: list[Step]
    tool: Any | None
    arg_rows: list[ArgRow]
    fields: list[review_tools.ArgField]
    budget: list[BudgetUse]
    level: str = AutonomyLevel.SHADOW
    field_errors: dict[str, list[str]] = field(default_factory=dict)
    form_errors: list[str] = field(default_factory=list)
    open_panel: str = ""  # "edit" or "reject" when the card comes back with errors
    reject_values: dict[str, str] = field(default_factory=dict)
    approvals: list[Approval] = field(default_factory=list)
    approvals_needed: int = 1

    @property
    def sample(self) -> bool:
        """Already executed automatically: the reviewer judges it after the fact."""
        return is_sample(self.proposal)

    @property
    def waiting_second(self) -> bool:
        return self.approvals_needed > 1 and len(self.approvals) >= 1

    @property
    def shadow(self) -> bool:
        """Below supervised nothing executes: the reviewer records what they did."""
        return AutonomyLevel.rank(self.level) < AutonomyLevel.rank(AutonomyLevel.SUPERVISED)

    @property
    def level_label(self) -> str:
        return AutonomyLevel(self.level).label

    @property
    def workflow(self) -> Workflow:
        return self.proposal.workflow

    @property
    def work_item(self):
        return self.proposal.work_item

    @property
    def run(self):
        return self.proposal.run


def _budget(proposal: Proposal) -> list[BudgetUse]:
    run, workflow = proposal.run, proposal.workflow
    return [
        BudgetUse("Tool calls", run.tool_calls, workflow.max_tool_calls),
        BudgetUse("Tokens", run.tokens, workflow.max_tokens),
        BudgetUse("Cost", run.cost_usd + run.tool_cost_usd, workflow.max_cost_usd, "USD"),
        BudgetUse("Seconds", round(run.wall_ms / 1000, 1), workflow.max_seconds, "s"),
    ]


def _arg_rows(tool: Any | None, arguments: Mapping[str, Any]) -> list[ArgRow]:
    """Arguments in the tool's own field order (JSON storage may reorder keys)."""
    types: dict[str, str] = {}
    if tool is not None:
        for item in review_tools.fields_from_schema(tool.args_model.model_json_schema(), {}):
            types[item.name] = "enum" if item.kind == "select" else item.kind
    names = [n for n in types if n in arguments] + [n for n in arguments if n not in types]
    return [
        ArgRow(name=n, value=arguments[n], type=types.get(n, type(arguments[n]).__name__))
        for n in names
    ]


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except (ArithmeticError, ValueError):
        return None


def approvers_required(
    proposal: Proposal, *, level: str, arguments: Mapping[str, Any] | None = None
) -> int:
    """How many distinct reviewers must approve before this action may execute.

    Two for the workflow's high-impact threshold (``policy["two_approvers"] =
    {"money_above": 300, "classes": ["access", "delete"]}``), one otherwise. Below
    supervised nothing executes, so one record is enough.
    """
    if AutonomyLevel.rank(level) < AutonomyLevel.rank(AutonomyLevel.SUPERVISED):
        return 1
    policy = proposal.workflow.policy if isinstance(proposal.workflow.policy, dict) else {}
    rule = policy.get("two_approvers")
    if not isinstance(rule, dict):
        return 1
    if proposal.risk_class in set(rule.get("classes") or []):
        return 2
    threshold = _decimal(rule.get("money_above"))
    values = arguments if arguments is not None else proposal.arguments
    amount = _decimal(values.get("amount")) if isinstance(values, Mapping) else None
    if threshold is not None and amount is not None and amount > threshold:
        return 2
    return 1


def effective_level(proposal: Proposal) -> str:
    """The tool's level now (a tool never exceeds its workflow): what deciding will do."""
    return tool_and_level(workflow=proposal.workflow, name=proposal.tool)[1]


def tool_and_level(*, workflow: Workflow, name: str) -> tuple[Any | None, str]:
    """The registered tool and its effective level, from one read of its grant."""
    grant = ToolGrant.objects.filter(workflow_id=workflow.pk, tool=name).order_by().first()
    tool = review_tools.tool_for(
        workflow=workflow, name=name, enabled=grant is not None and grant.enabled
    )
    return tool, grant_level(workflow, grant)


def card_for(*, proposal_id: int, claim: Claim | None = None) -> Card:
    """Everything the review card shows, in a fixed number of queries: the plan
    (the proposal among it) with its work item, workflow and run; the trace; the
    grant; and, only for a two-approver action, the approvals so far."""
    run_of = Proposal.objects.filter(pk=proposal_id).values("run_id")[:1]
    plan = list(
        Proposal.objects.filter(run_id=Subquery(run_of))
        .select_related("work_item", "workflow", "run", "decision")
        .order_by("sequence")
    )
    proposal = next((p for p in plan if p.pk == proposal_id), None)
    if proposal is None:
        raise Proposal.DoesNotExist(f"Proposal {proposal_id} does not exist.")
    steps = list(Step.objects.filter(run_id=proposal.run_id).order_by("index"))
    tool, level = tool_and_level(workflow=proposal.workflow, name=proposal.tool)
    needed = 1 if is_sample(proposal) else approvers_required(proposal, level=level)
    approvals = (
        list(Approval.objects.filter(proposal=proposal).select_related("reviewer").order_by("pk"))
        if needed > 1
        else []
    )
    return Card(
        approvals=approvals,
        approvals_needed=needed,
        proposal=proposal,
        claim=claim,
        plan=plan,
        steps=steps,
        tool=tool,
        arg_rows=_arg_rows(tool, proposal.arguments),
        fields=review_tools.edit_fields(tool, proposal.arguments),
        budget=_budget(proposal),
        level=level,
    )


def escalation_rows(*, workflow_ids: list[int], limit: int = QUEUE_PAGE_SIZE) -> list[Escalation]:
    return list(
        Escalation.objects.filter(workflow_id__in=workflow_ids, status=Escalation.Status.OPEN)
        .select_related("work_item", "workflow", "run")
        .order_by("created_at")[:limit]
    )


@dataclass
class EscalationView:
    escalation: Escalation
    steps: list[Step]
    packet_items: list[tuple[str, Any]]


def escalation_for(*, escalation_id: int, workflow: Workflow) -> EscalationView:
    escalation = Escalation.objects.select_related("work_item", "workflow", "run").get(
        pk=escalation_id, workflow=workflow
    )
    steps = (
        list(Step.objects.filter(run_id=escalation.run_id).order_by("index"))
        if escalation.run_id
        else []
    )
    packet = (
        escalation.packet if isinstance(escalation.packet, dict) else {"packet": escalation.packet}
    )
    return EscalationView(escalation=escalation, steps=steps, packet_items=list(packet.items()))
