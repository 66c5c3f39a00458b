"""Reads for the reviewer queues. Every function runs a fixed number of queries,
whatever the size of the queue (per workflow in scope, never per row)."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache, cached_property
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Q, QuerySet
from django.template.defaultfilters import floatformat, truncatechars
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.timesince import timesince

from agents.models import Escalation, Proposal, RiskClass, Run, Step, ToolDefinition, WorkItem
from agents.policy import grant_level
from governance import sqlkit as sql
from governance.models import AutonomyLevel, ToolGrant, Workflow
from reviews import tools as review_tools
from reviews.models import Approval, Claim, Decision
from reviews.templatetags.review_tags import pretty, scalar
from reviews.tools import number

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

    def as_sql(self, alias: str) -> tuple[str, list[Any]]:
        """The filters as ``AND ...`` conditions on the proposal ``alias`` (for the
        hand-written claim statements), and their parameters."""
        conditions, params = [], []
        for column, value in (
            ("tool", self.tool),
            ("risk_class", self.risk_class),
            ("verdict", self.verdict),
            ("flagged_injection", self.flagged),
        ):
            if value not in ("", None):
                conditions.append(f" AND {alias}.{sql.qn(column)} = %s")
                params.append(value)
        return "".join(conditions), params

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
    """A timestamp from a raw row, aware. SQLite hands back text, or (for a plain
    column of a declared datetime type) a naive datetime in UTC."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else parse_datetime(str(value))
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


# The two index ranges a reviewer's queue reads, as SQL on the proposal ``p`` (the
# hand-written statements' twin of awaiting_review_q / awaiting_sample_q): the
# pending queue (proposal_queue_idx), then executed actions sampled for post-hoc
# review. Status values are literals, so the planner can match the partial index.
AWAITING_REVIEW_SQL = "p.status = 'pending' AND NOT p.auto_executed"


@cache
def awaiting_sample_sql() -> str:
    return (
        "p.status = 'executed' AND p.sampled_for_review AND NOT EXISTS "
        f"(SELECT 1 FROM {sql.table(Decision)} d WHERE d.proposal_id = p.id)"
    )


def queue_ranges() -> tuple[str, str]:
    return AWAITING_REVIEW_SQL, awaiting_sample_sql()


@dataclass(frozen=True)
class QueueRow:
    """One line of the queue list: plain values, read without building models (the
    list renders on every page view and every poll), and the text it shows made
    here, once, rather than by template filters per row."""

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
    card_url: str  # with the list's query string (scope, filters)
    title_short: str = ""  # the title cut at 60 characters
    age: str = ""  # "3 minutes", as timesince says it

    @property
    def risk_label(self) -> str:
        return str(RiskClass(self.risk_class).label) if self.risk_class in RiskClass.values else ""


@cache
def _queue_rows_sql(*, workflows: int, filters: str) -> str:
    """The head of each queue range of each workflow (``limit`` rows each), with the
    work item's title and who holds a claim: one statement, each part an index
    range scan that stops at the limit."""
    user = get_user_model()
    ctes, selects = [], []
    for n in range(workflows * 2):
        scope = queue_ranges()[n % 2]
        ctes.append(
            f"r{n} AS (SELECT p.id, p.workflow_id, w.name, w.slug, p.tool, p.risk_class, "  # noqa: S608 - names from the models
            "p.flagged_injection, p.status, p.priority, p.created_at, wi.title, wi.external_id, "
            f"u.{sql.qn(user.USERNAME_FIELD)} FROM {sql.table(Proposal)} p "
            f"JOIN {sql.table(Workflow)} w ON w.id = p.workflow_id "
            f"JOIN {sql.table(WorkItem)} wi ON wi.id = p.work_item_id "
            f"LEFT JOIN {sql.table(Claim)} c ON c.proposal_id = p.id "
            f"LEFT JOIN {sql.table(user)} u ON u.id = c.reviewer_id "
            f"WHERE p.workflow_id = %s AND {scope}{filters} "
            "ORDER BY p.priority DESC, p.created_at, p.id LIMIT %s)"
        )
        selects.append(f"SELECT * FROM r{n}")  # noqa: S608
    return f"WITH {', '.join(ctes)} {' UNION ALL '.join(selects)}"


def queue_rows(
    *,
    workflow_ids: list[int],
    filters: QueueFilters,
    limit: int = QUEUE_PAGE_SIZE,
    query: str = "",
) -> list[QueueRow]:
    """The head of the queue in claim order, with who holds each item. ``query`` (the
    list's scope and filters, ``?...``) is appended to each row's card link."""
    if not workflow_ids:
        return []
    filters_sql, filter_params = filters.as_sql("p")
    params: list[Any] = []
    for workflow_id in workflow_ids:
        for _range in ("pending", "sample"):
            params += [workflow_id, *filter_params, limit]
    rows = sql.fetch(_queue_rows_sql(workflows=len(workflow_ids), filters=filters_sql), params)
    # The ranges together (at most ``limit`` rows each), in claim order.
    merged = sorted(
        ((*row[:9], _as_datetime(row[9]), *row[10:]) for row in rows),
        key=lambda r: (-r[8], r[9], r[0]),
    )[:limit]
    # One reverse() per workflow rather than per row: the list renders on every decision.
    bases: dict[int, str] = {}
    now = timezone.now()
    out = []
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
        shown = title or ext
        out.append(
            QueueRow(
                pk=pk,
                workflow_id=wf_id,
                workflow_name=wf_name,
                tool=tool,
                risk_class=risk,
                flagged_injection=bool(flagged),
                status=status,
                priority=prio,
                created_at=created,
                title=shown,
                holder=holder or "",
                card_url=f"{bases[wf_id]}{pk}/{query}",
                title_short=_cut(shown, 60),
                age=timesince(created, now) if created else "",
            )
        )
    return out


@cache
def _tool_names_sql(workflows: int) -> str:
    return (
        f"SELECT DISTINCT g.tool FROM {sql.table(ToolGrant)} g "  # noqa: S608 - names from the model
        f"WHERE g.workflow_id IN ({', '.join(['%s'] * workflows)})"
    )


def tool_names(workflow_ids: list[int]) -> list[str]:
    """Tools the filter offers: the workflows' grants (cheap), not a scan of the queue."""
    if not workflow_ids:
        return []
    return sorted(row[0] for row in sql.fetch(_tool_names_sql(len(workflow_ids)), workflow_ids))


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


def _cut(text: str, length: int) -> str:
    """``truncatechars``, without its per-character walk for text that fits."""
    if len(text) <= length:
        return unicodedata.normalize("NFC", text)  # what Truncator returns uncut
    return truncatechars(text, length)


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
        return cls(
            pk=proposal.pk,
            tool=proposal.tool,
            summary=", ".join(f"{k}={_cut(scalar(v), 40)}" for k, v in arguments.items()),
            status=proposal.status,
            status_label=proposal.get_status_display(),
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


# Select-list part and join that read, with each proposal row ``p``, its tool's grant
# (and whether a schema-registered tool has that name, so the registry is asked only
# when it can answer something: a built-in tool needs no query at all).
GRANT_WIDTH = 3


@cache
def grant_sql() -> tuple[str, str]:
    definition = sql.table(ToolDefinition)
    columns = (
        "g.enabled, g.autonomy_level, EXISTS (SELECT 1 FROM "  # noqa: S608 - names from the models
        f"{definition} d WHERE d.workflow_id = p.workflow_id AND d.name = p.tool)"
    )
    join = (
        f"LEFT JOIN {sql.table(ToolGrant)} g ON g.workflow_id = p.workflow_id AND g.tool = p.tool"
    )
    return columns, join


def grant_read(row: tuple[Any, ...], start: int) -> GrantRead:
    enabled, level, defined = row[start : start + GRANT_WIDTH]
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


@cache
def _grant_sql_one() -> str:
    columns, join = grant_sql()
    # The grant of one (workflow, tool) pair, shaped like a proposal row: one row
    # always, with NULLs when the workflow holds no grant.
    return (
        f"SELECT {columns} FROM (SELECT CAST(%s AS bigint) AS workflow_id, "  # noqa: S608
        f"CAST(%s AS varchar(100)) AS tool) p {join}"
    )


def tool_and_level(*, workflow: Workflow, name: str) -> tuple[Any | None, str]:
    """The registered tool and its effective level, from one read of its grant."""
    [row] = sql.fetch(_grant_sql_one(), [workflow.pk, name])
    return tool_and_level_read(workflow=workflow, name=name, grant=grant_read(row, 0))


@cache
def _run_shown() -> tuple[str, ...]:
    """What the card reads of a run: everything but the agent's state (large JSON)."""
    return tuple(f.attname for f in Run._meta.concrete_fields if f.attname != "state")


@cache
def _card_sql(*, with_workflow: bool) -> str:
    """The plan (in order) of the card's proposal, each row with its work item, run,
    grant and, unless the caller has it already, workflow."""
    proposal = sql.table(Proposal)
    grant_columns, grant_join = grant_sql()
    select = [
        sql.columns(Proposal, "p"),
        sql.columns(WorkItem, "wi"),
        sql.columns(Run, "r", _run_shown()),
        grant_columns,
    ]
    joins = [
        f"JOIN {sql.table(WorkItem)} wi ON wi.id = p.work_item_id",
        f"JOIN {sql.table(Run)} r ON r.id = p.run_id",
        grant_join,
    ]
    if with_workflow:
        select.append(sql.columns(Workflow, "w"))
        joins.append(f"JOIN {sql.table(Workflow)} w ON w.id = p.workflow_id")
    return (
        f"SELECT {', '.join(select)} FROM {proposal} p {' '.join(joins)} "  # noqa: S608 - names from the models
        f"WHERE p.run_id = (SELECT q.run_id FROM {proposal} q WHERE q.id = %s) "
        "ORDER BY p.sequence"
    )


@cache
def _steps_sql() -> str:
    return (
        f"SELECT {sql.columns(Step, 's')} FROM {sql.table(Step)} s "  # noqa: S608 - names from the model
        f"WHERE s.run_id = %s ORDER BY s.{sql.qn('index')}"
    )


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
    rows = sql.fetch(_card_sql(with_workflow=workflow is None), [proposal_id])
    widths = (
        sql.width(Proposal),
        sql.width(WorkItem),
        sql.width(Run, _run_shown()),
        GRANT_WIDTH,
    )
    plan: list[Proposal] = []
    grants: dict[int, GrantRead] = {}
    related: dict[tuple[type, int], Any] = {}  # one instance per work item, run, workflow
    for row in rows:
        start = 0
        proposal = sql.build(Proposal, row, start)
        start += widths[0]
        item = related.get((WorkItem, proposal.work_item_id)) or related.setdefault(
            (WorkItem, proposal.work_item_id), sql.build(WorkItem, row, start)
        )
        start += widths[1]
        run = related.get((Run, proposal.run_id)) or related.setdefault(
            (Run, proposal.run_id), sql.build(Run, row, start, _run_shown())
        )
        start += widths[2]
        grants[proposal.pk] = grant_read(row, start)
        start += widths[3]
        if workflow is not None and workflow.pk == proposal.workflow_id:
            flow = workflow
        elif workflow is None:
            flow = related.get((Workflow, proposal.workflow_id)) or related.setdefault(
                (Workflow, proposal.workflow_id), sql.build(Workflow, row, start)
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
    steps = [sql.build(Step, row) for row in sql.fetch(_steps_sql(), [proposal.run_id])]
    tool, level = tool_and_level_read(
        workflow=proposal.workflow, name=proposal.tool, grant=grants[proposal.pk]
    )
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
