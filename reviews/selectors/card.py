"""The review card: everything a reviewer sees of one proposal, read in two
statements (``reviews.sql``) whatever the queue's size."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any

from django.template.defaultfilters import floatformat
from django.utils import timezone

from agents.models import Proposal, Run, Step, WorkItem
from agents.policy import grant_level
from governance import privacy, sqlkit
from governance.models import AutonomyLevel, ToolGrant, Workflow
from reviews import sql as reviews_sql
from reviews import tools as review_tools
from reviews.models import Approval, Claim
from reviews.selectors.escalations import mask_steps
from reviews.selectors.facts import Fact, review_facts
from reviews.selectors.queue import cut_text, is_sample
from reviews.templatetags.review_tags import pretty, scalar
from reviews.tools import number


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

    # Display text, made here rather than by template filters: the card renders after
    # every decision, and each variable a template resolves costs more than this.
    @property
    def amount_text(self) -> str:
        text = f"{number(self.used)} / {number(self.limit)}"
        return f"{text} {self.unit}" if self.unit else text

    @property
    def meter_value(self) -> str:
        return f"{self.fraction:.3f}"

    @property
    def percent_text(self) -> str:
        return str(round(self.fraction * 100))


@dataclass
class ArgRow:
    name: str
    value: Any
    type: str


@dataclass(frozen=True)
class TraceRow:
    """One step of the trace as the card shows it (plain text; the template escapes)."""

    index: int
    kind: str
    name: str
    meta: str  # latency, tokens, cost, cached, retry
    error: str
    input: str
    output: str

    @classmethod
    def of(cls, step: Step) -> TraceRow:
        meta = [f"{number(step.latency_ms)} ms"]
        if step.tokens_in or step.tokens_out:
            meta.append(f"{number(step.tokens_in)}+{number(step.tokens_out)} tok")
        if step.cost_usd:
            meta.append(f"${floatformat(step.cost_usd, 6)}")
        if step.cached:
            meta.append("cached")
        if step.is_retry:
            meta.append("retry")
        return cls(
            index=step.index,
            kind=step.get_kind_display(),
            name=step.name,
            meta=" · ".join(meta),
            error=step.error,
            input=pretty(step.input),
            output=pretty(step.output),
        )


# An action cancelled because an earlier one failed to execute was never judged:
# said so, so it is never read as a rejection (coverage counts it as a reason).
LABEL_CANCELLED = "Not judged: cancelled"


def status_label(status: str) -> str:
    if status == Proposal.Status.CANCELLED:
        return LABEL_CANCELLED
    return Proposal.Status(status).label


@dataclass(frozen=True)
class PlanRow:
    """One action of the plan as the card lists it."""

    pk: int
    tool: str
    summary: str  # key=value, ... (each value cut at 40 characters)
    status: str
    status_label: str
    auto_executed: bool
    executed: bool
    autonomy_level: str
    current: bool

    @classmethod
    def of(cls, proposal: Proposal, *, current: Proposal) -> PlanRow:
        arguments = proposal.arguments if isinstance(proposal.arguments, dict) else {}
        arguments = privacy.mask(arguments)
        return cls(
            pk=proposal.pk,
            tool=proposal.tool,
            summary=", ".join(f"{k}={cut_text(scalar(v), 40)}" for k, v in arguments.items()),
            status=proposal.status,
            status_label=status_label(proposal.status),
            auto_executed=proposal.auto_executed,
            executed=proposal.status == Proposal.Status.EXECUTED,
            autonomy_level=proposal.autonomy_level,
            current=proposal.pk == current.pk,
        )


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
    # Opened from a link without working the queue: shown, not claimed, no decision.
    read_only: bool = False
    holder: str = ""  # who holds a live claim on it, for a read-only card
    # The data subjects whose values the card shows decrypted (audited when rendered).
    revealed_subjects: tuple[int, ...] = ()

    @property
    def decidable(self) -> bool:
        """The reviewer holds it and it waits for their decision."""
        return not self.read_only and self.claim is not None

    @property
    def status_label(self) -> str:
        return status_label(self.proposal.status)

    @cached_property
    def facts(self) -> list[Fact]:
        """What the tool says a reviewer needs to see, read from this run's tool outputs."""
        arguments = self.proposal.arguments if isinstance(self.proposal.arguments, dict) else {}
        return review_facts(
            tool=self.tool,
            steps=self.steps,
            payload=self.proposal.work_item.payload,
            arguments=arguments,
        )

    @property
    def awaiting(self) -> bool:
        """It waits for a human (pending, or executed and sampled with no review yet)."""
        p = self.proposal
        return (p.status == Proposal.Status.PENDING and not p.auto_executed) or self.sample

    @cached_property
    def rejected_in_plan(self) -> list[Proposal]:
        """Other actions of the plan a human rejected."""
        return [
            p
            for p in self.plan
            if p.status == Proposal.Status.REJECTED and p.pk != self.proposal.pk
        ]

    @property
    def rejected_label(self) -> str:
        before = all(p.sequence < self.proposal.sequence for p in self.rejected_in_plan)
        return "An earlier action" if before else "Another action"

    @cached_property
    def rest_of_plan(self) -> list[Proposal]:
        """The actions of the plan still waiting for a human, this one among them."""
        return [p for p in self.plan if p.status == Proposal.Status.PENDING and not p.auto_executed]

    @property
    def offers_reject_rest(self) -> bool:
        """At supervised and above, once an action of the plan was rejected, the rest
        may be rejected in one go (in shadow mode each action is judged on its own)."""
        return (
            self.decidable
            and not self.shadow
            and not self.sample
            and bool(self.rejected_in_plan)
            and self.proposal.status == Proposal.Status.PENDING
        )

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

    @cached_property
    def trace(self) -> list[TraceRow]:
        return [TraceRow.of(step) for step in self.steps]

    @cached_property
    def plan_rows(self) -> list[PlanRow]:
        return [PlanRow.of(p, current=self.proposal) for p in self.plan]


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
    types = review_tools.arg_types(tool.args_model) if tool is not None else {}
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


@dataclass(frozen=True)
class GrantRead:
    """A proposal's tool grant, read in the same statement as the proposal."""

    enabled: bool | None  # None: the workflow holds no grant for the tool
    autonomy_level: str | None
    defined: bool  # the workflow registered a tool of this name from a JSON schema


def grant_read(row: tuple[Any, ...], start: int) -> GrantRead:
    enabled, level, defined = row[start : start + reviews_sql.GRANT_WIDTH]
    return GrantRead(
        enabled=None if enabled is None else bool(enabled),  # SQLite hands back 0/1
        autonomy_level=level,
        defined=bool(defined),
    )


def tool_and_level_read(
    *, workflow: Workflow, name: str, grant: GrantRead
) -> tuple[Any | None, str]:
    """The registered tool and its effective level, from a grant already read."""
    model_grant = None
    if grant.enabled is not None:
        model_grant = ToolGrant(
            workflow_id=workflow.pk,
            tool=name,
            enabled=grant.enabled,
            autonomy_level=grant.autonomy_level,
        )
    tool = review_tools.tool_for(
        workflow=workflow, name=name, enabled=bool(grant.enabled), defined=grant.defined
    )
    return tool, grant_level(workflow, model_grant)


def tool_and_level(*, workflow: Workflow, name: str) -> tuple[Any | None, str]:
    """The registered tool and its effective level, from one read of its grant."""
    row = reviews_sql.grant_row(workflow_id=workflow.pk, tool=name)
    return tool_and_level_read(workflow=workflow, name=name, grant=grant_read(row, 0))


_PROPOSAL_RUN = Proposal._meta.get_field("run")


_PROPOSAL_WORK_ITEM = Proposal._meta.get_field("work_item")


_PROPOSAL_WORKFLOW = Proposal._meta.get_field("workflow")


def card_for(
    *, proposal_id: int, claim: Claim | None = None, workflow: Workflow | None = None
) -> Card:
    """Everything the review card shows, in two statements whatever the queue's size:
    the plan (the proposal among it) with its work item, run, grants and workflow;
    and the trace. Only for a two-approver action, a third: the approvals so far.

    ``workflow`` is the proposal's workflow when the caller has it (access-checked
    already), so it is not read again."""
    rows = reviews_sql.card_rows(proposal_id=proposal_id, with_workflow=workflow is None)
    shown = reviews_sql.run_shown()
    widths = (
        sqlkit.width(Proposal),
        sqlkit.width(WorkItem),
        sqlkit.width(Run, shown),
        reviews_sql.GRANT_WIDTH,
    )
    plan: list[Proposal] = []
    grants: dict[int, GrantRead] = {}
    related: dict[tuple[type, int], Any] = {}  # one instance per work item, run, workflow
    for row in rows:
        start = 0
        proposal = sqlkit.build(Proposal, row, start)
        start += widths[0]
        item = related.get((WorkItem, proposal.work_item_id)) or related.setdefault(
            (WorkItem, proposal.work_item_id), sqlkit.build(WorkItem, row, start)
        )
        start += widths[1]
        run = related.get((Run, proposal.run_id)) or related.setdefault(
            (Run, proposal.run_id), sqlkit.build(Run, row, start, shown)
        )
        start += widths[2]
        grants[proposal.pk] = grant_read(row, start)
        start += widths[3]
        if workflow is not None and workflow.pk == proposal.workflow_id:
            flow = workflow
        elif workflow is None:
            flow = related.get((Workflow, proposal.workflow_id)) or related.setdefault(
                (Workflow, proposal.workflow_id), sqlkit.build(Workflow, row, start)
            )
        else:  # not the caller's workflow after all: read it (never on the queue's path)
            flow = Workflow.objects.get(pk=proposal.workflow_id)
        _PROPOSAL_WORK_ITEM.set_cached_value(proposal, item)
        _PROPOSAL_RUN.set_cached_value(proposal, run)
        _PROPOSAL_WORKFLOW.set_cached_value(proposal, flow)
        plan.append(proposal)
    proposal = next((p for p in plan if p.pk == proposal_id), None)
    if proposal is None:
        raise Proposal.DoesNotExist(f"Proposal {proposal_id} does not exist.")
    steps = reviews_sql.steps_of(proposal.run_id)
    mask_steps(steps)
    tool, level = tool_and_level_read(
        workflow=proposal.workflow, name=proposal.tool, grant=grants[proposal.pk]
    )
    needed = 1 if is_sample(proposal) else approvers_required(proposal, level=level)
    shown_arguments = privacy.reveal(proposal.arguments)
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
        # A reviewer judges the values: the subject's tokens are decrypted for the card
        # (an erased subject's read "[erased]"); the API and exports keep the tokens.
        arg_rows=_arg_rows(tool, shown_arguments),
        fields=review_tools.edit_fields(tool, shown_arguments),
        budget=_budget(proposal),
        level=level,
        revealed_subjects=tuple(sorted(privacy.subject_ids_in(proposal.arguments))),
    )


def live_claim(proposal_id: int) -> Claim | None:
    """The live claim on a proposal, with its reviewer, if anyone holds it."""
    return (
        Claim.objects.filter(proposal_id=proposal_id, expires_at__gt=timezone.now())
        .select_related("reviewer")
        .first()
    )
