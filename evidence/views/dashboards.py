"""The evidence pages: dashboards, ops overview, drill-downs, audit, explain, evidence pack.

The read side: these views look across console, agents and reviews, but
compute nothing themselves. Every number comes from ``evidence.metrics``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from agents.levels import attach_level_summaries
from agents.models import Escalation, Execution, Proposal
from evidence import charts, metrics, privacy, selectors
from evidence.metrics import Scope
from governance import privacy as governance_privacy
from governance.audit import GLOBAL_CHAIN, audit_chain_keys, audit_verify, chain_key
from governance.htmx import page_or_partial, vary_on_htmx
from governance.models import AuditEvent, AutonomyChange, ToolGrant, Workflow
from governance.permissions import MANAGE, OPERATE, VIEW, access_workflow, workflows_for
from reviews.models import CRITICAL_REJECT_REASONS, Decision

DEFAULT_DAYS = 30
MAX_DAYS = 365
ROWS_PER_PAGE = 50
AUDIT_PER_PAGE = 50

ERR_BAD_WINDOW = "The window must be a whole number of days between 1 and {max}, not “{value}”."
ERR_BAD_DAY = "“{value}” is not a date (use YYYY-MM-DD)."
ERR_AUDIT_NOT_ALLOWED = "The audit log is open to admins, ops and the managers of a workflow."
ERR_AUDIT_NO_WORKFLOW = "There is no workflow called “{slug}” in your audit log."
ERR_BAD_FORMAT = "“{value}” is not an export format (use html or json)."


class BadInput(Exception):
    """Input a user can fix: answered with 400 and the message."""


def _bad_request(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "400.html", {"exception": message}, status=400)


def _window_days(request: HttpRequest, default: int = DEFAULT_DAYS) -> int:
    raw = request.GET.get("days", "")
    if raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
        raise BadInput(ERR_BAD_WINDOW.format(max=MAX_DAYS, value=raw[:40]))
    return int(raw)


def _since(days: int, now: datetime) -> datetime:
    return metrics.window_start(days, now)


def _rows_url(slug: str, metric: str, days: int, *, base: str = "", **filters: Any) -> str:
    query = {"metric": metric, "days": days}
    query.update({k: v for k, v in filters.items() if v not in (None, "")})
    return f"{base or reverse('evidence-rows', args=[slug])}?{urlencode(query)}"


# --- Per-workflow dashboard ------------------------------------------------------


@require_GET
def dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    workflow = access_workflow(user=request.user, slug=slug)
    try:
        days = _window_days(request)
    except BadInput as exc:
        return _bad_request(request, str(exc))
    now = timezone.now()
    # Closed days come from the rollups, today is computed live: the same numbers as
    # metrics.workflow_metrics / daily_rollup / agreement_by_tool over the window.
    board = metrics.dashboard_metrics(workflow, since=_since(days, now), now=now)
    m, daily, agreement_by_tool = board.metrics, board.daily, board.agreement_by_tool
    scope = m.scope
    errors_by_tool = {t.tool: t for t in m.tool_errors}
    link = _linker(slug, days)
    tools = [
        {
            "tool": tool,
            "agreement": agreement_by_tool.get(tool),
            "errors": errors_by_tool.get(tool),
            "decisions_url": link("decisions", tool=tool),
            "errors_url": link("tool_steps", tool=tool, errors=1),
            "calls_url": link("tool_steps", tool=tool),
        }
        for tool in sorted(set(agreement_by_tool) | set(errors_by_tool))
    ]
    day_dates = [d.day for d in daily]
    agreements = [d.agreement for d in daily]
    day_rows = [
        {
            "day": d,
            "agreement": agreement,
            "decisions_url": link("decisions", day=d.day),
            "accepted_url": link("decisions", verdict="accept", day=d.day),
            "outcomes_url": link("outcomes", succeeded=1, day=d.day),
            "received_url": link("received", day=d.day),
            "escalations_url": link("escalations", day=d.day),
            "errors_url": link("tool_steps", errors=1, day=d.day),
        }
        for d, agreement in zip(reversed(daily), reversed(agreements), strict=True)
    ]
    context = {
        "workflow": workflow,
        "days": days,
        "since": scope.since,
        "windows": (7, 30, 90),
        "m": m,
        "comparison": metrics.item_comparison_for_screen(scope),
        "tools": tools,
        "day_rows": day_rows,
        "links": _dashboard_links(link, m),
        "agreement_chart": charts.band_chart(
            chart_id="agreement",
            title="Agreement per day",
            days=day_dates,
            values=[a.rate for a in agreements],
            lows=[a.low if a.n else None for a in agreements],
            highs=[a.high if a.n else None for a in agreements],
            threshold=float(workflow.gate_min_agreement),
            threshold_label=f"gate {float(workflow.gate_min_agreement):.0%}",
        ),
        "cost_chart": charts.line_chart(
            chart_id="cost",
            title="Cost per successful outcome",
            days=day_dates,
            values=[d.cost_per_outcome for d in daily],
            target=workflow.cost_target_usd,
            target_label=f"target ${workflow.cost_target_usd:.2f}",
        ),
        "volume_chart": charts.bar_chart(
            chart_id="volume",
            title="Work items and escalations per day",
            days=day_dates,
            series=[
                charts.Series("work items", [d.received for d in daily], "series-a"),
                charts.Series("escalations", [d.escalations for d in daily], "series-warn"),
            ],
        ),
        "errors_chart": charts.bar_chart(
            chart_id="errors",
            title="Tool calls with an error per day",
            days=day_dates,
            series=[charts.Series("tool errors", [d.tool_errors for d in daily], "series-bad")],
        ),
        "hourly_rate": metrics.reviewer_hourly_rate(),
        "unpriced": selectors.unpriced_runs(workflow, since=scope.since),
        "refreshed_at": now,
    }
    template = page_or_partial(request, "console/evidence/dashboard.html", "dashboard-body")
    return vary_on_htmx(render(request, template, context))


def _linker(slug: str, days: int):
    """``_rows_url`` for one dashboard, faster: a dashboard has ~200 links, so the
    reverse and the ``?metric=..&days=..`` part are built once per metric."""
    base = reverse("evidence-rows", args=[slug])
    prefixes: dict[str, str] = {}

    def link(metric: str, **filters: Any) -> str:
        prefix = prefixes.get(metric)
        if prefix is None:
            prefix = prefixes[metric] = _rows_url(slug, metric, days, base=base)
        day = filters.pop("day", None)
        if isinstance(day, date):
            filters["day"] = day.isoformat()
        rest = urlencode({k: v for k, v in filters.items() if v not in (None, "")})
        return f"{prefix}&{rest}" if rest else prefix

    return link


def _dashboard_links(link, m: metrics.WorkflowMetrics) -> dict[str, Any]:
    return {
        "decisions": link("decisions"),
        "accepted": link("decisions", verdict="accept"),
        "edited": link("decisions", verdict="edit"),
        "rejected": link("decisions", verdict="reject"),
        "critical": link("decisions", critical=1),
        "sampled": link("decisions", kind="sample"),
        "outcomes": link("outcomes"),
        "succeeded": link("outcomes", succeeded=1),
        "received": link("received"),
        "escalated": link("received", escalated=1),
        "escalations": link("escalations"),
        "safe_fail": link("escalations", with_run=1),
        "runs": link("runs"),
        "retried": link("runs", retried=1),
        "budget": link("runs", budget=1),
        "tool_steps": link("tool_steps"),
        "tool_errors": link("tool_steps", errors=1),
        "resolutions": link("resolutions"),
        "reasons": [
            (reason, n, link("decisions", reason=reason)) for reason, n in m.reject_reasons.items()
        ],
        "trips": [
            (reason, n, link("runs", stop_reason=reason)) for reason, n in m.budget_trips.items()
        ],
        "fields": [
            (f, link("decisions", field=f.field), link("decisions", field=f.field, changed=1))
            for f in m.field_agreement
        ],
    }


# --- Drill-down: the rows behind a number -------------------------------------------

# metric -> select_related, so a page of rows is a fixed number of queries
ROW_RELATIONS: dict[str, tuple[str, ...]] = {
    "decisions": ("proposal", "proposal__work_item", "reviewer"),
    "outcomes": (),
    "received": (),
    "runs": ("work_item",),
    "tool_steps": ("run", "run__work_item"),
    "escalations": ("work_item", "run"),
    "resolutions": ("escalation", "escalation__work_item", "reviewer"),
}


@require_GET
def evidence_rows(request: HttpRequest, slug: str) -> HttpResponse:
    workflow = access_workflow(user=request.user, slug=slug)
    metric = request.GET.get("metric", "")
    try:
        days = _window_days(request)
        day = _parse_day(request.GET.get("day", ""))
        filters = {
            key: request.GET.get(key, "")
            for key in (
                "verdict",
                "reason",
                "critical",
                "kind",
                "field",
                "changed",
                "succeeded",
                "escalated",
                "retried",
                "budget",
                "stop_reason",
                "errors",
                "with_run",
            )
        }
        scope = Scope.for_workflow(
            workflow, since=_since(days, timezone.now()), tool=request.GET.get("tool", "")
        )
        rows = metrics.drilldown_rows(scope, metric, filters, day=day)
    except (BadInput, ValueError) as exc:
        return _bad_request(request, str(exc))
    related = ROW_RELATIONS[metric]
    if related:
        rows = rows.select_related(*related)
    page = Paginator(rows, ROWS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "workflow": workflow,
        "metric": metric,
        "days": days,
        "day": day,
        "tool": scope.tool,
        "filters": {k: v for k, v in filters.items() if v},
        "page": page,
        "query": query.urlencode(),
        "dashboard_url": f"{reverse('evidence-dashboard', args=[slug])}?days={days}",
    }
    return render(request, "console/evidence/rows.html", context)


def _parse_day(raw: str) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise BadInput(ERR_BAD_DAY.format(value=raw[:40])) from None


# --- Ops overview ---------------------------------------------------------------------


@require_GET
def ops_overview(request: HttpRequest) -> HttpResponse:
    try:
        days = _window_days(request, default=7)
    except BadInput as exc:
        return _bad_request(request, str(exc))
    now = timezone.now()
    since = _since(days, now)
    workflows = workflows_for(request.user).order_by("name")
    rows, daily = metrics.ops_overview_rolled(workflows, since=since, now=now)
    attach_level_summaries([row.workflow for row in rows])
    operable = set(workflows_for(request.user, OPERATE).values_list("pk", flat=True))
    total_today = sum((r.today_usd for r in rows), metrics.ZERO)
    total_week = sum((r.week_usd for r in rows), metrics.ZERO)
    context = {
        "days": days,
        "windows": (1, 7, 30),
        "rows": [
            {
                "spend": row,
                "dashboard_url": f"{reverse('evidence-dashboard', args=[row.workflow.slug])}"
                f"?days={days}",
                "trips_url": _rows_url(row.workflow.slug, "runs", days, budget=1),
                "outcomes_url": _rows_url(row.workflow.slug, "outcomes", days, succeeded=1),
                "today_meter": charts.meter(
                    chart_id=f"today-{row.workflow.pk}",
                    title=f"{row.workflow.name}: spend today against its daily budget",
                    share=row.today_share,
                ),
            }
            for row in rows
        ],
        "operable": operable,
        "can_pause_all": request.user.has_perm(OPERATE),
        "paused": [row.workflow for row in rows if row.workflow.paused],
        "total_today": total_today,
        "total_week": total_week,
        "total_budget": sum((r.daily_budget_usd for r in rows), metrics.ZERO),
        "total_trips": sum(r.budget_trips for r in rows),
        "total_pending": sum(r.pending for r in rows),
        "oldest_pending_at": min(
            (r.oldest_pending_at for r in rows if r.oldest_pending_at), default=None
        ),
        "spend_chart": charts.bar_chart(
            chart_id="spend",
            title="Spend per day across your workflows (model + tools)",
            days=[d.day for d in daily],
            series=[charts.Series("spend", [d.spend_usd for d in daily], "series-a")],
            fmt=charts.dollars,
            width=1200,
        ),
        "daily": list(reversed(daily)),
        "refreshed_at": now,
    }
    template = page_or_partial(request, "console/evidence/ops.html", "ops-body")
    return vary_on_htmx(render(request, template, context))


# --- Audit ------------------------------------------------------------------------


def _audit_scope(user) -> tuple[bool, QuerySet[Workflow]]:
    """(sees every chain, workflows whose chains the user may read)."""
    if user.has_perm(VIEW):
        return True, Workflow.objects.order_by("name")
    managed = workflows_for(user, MANAGE).order_by("name")
    if not managed.exists():
        raise PermissionDenied(ERR_AUDIT_NOT_ALLOWED)
    return False, managed


def _audit_filter(request: HttpRequest, workflows: QuerySet[Workflow]) -> Workflow | None:
    slug = request.GET.get("workflow", "")
    if not slug:
        return None
    workflow = workflows.filter(slug=slug).first()
    if workflow is None:
        raise Http404(ERR_AUDIT_NO_WORKFLOW.format(slug=slug[:64]))
    return workflow


def _audit_events(
    *, sees_all: bool, workflows: QuerySet[Workflow], selected: Workflow | None
) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.select_related("workflow").order_by("-created_at", "-pk")
    if selected is not None:
        return events.filter(workflow=selected)
    if not sees_all:
        return events.filter(workflow__in=workflows)
    return events


@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    sees_all, workflows = _audit_scope(request.user)
    selected = _audit_filter(request, workflows)
    events = _audit_events(sees_all=sees_all, workflows=workflows, selected=selected)
    page = Paginator(events, AUDIT_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "workflows": workflows,
        "selected": selected,
        "page": page,
        "sees_all": sees_all,
    }
    return render(request, "console/evidence/audit.html", context)


@require_GET
def audit_check(request: HttpRequest) -> HttpResponse:
    """Walk the chains the user may read and report the first broken link of each."""
    sees_all, workflows = _audit_scope(request.user)
    selected = _audit_filter(request, workflows)
    if selected is not None:
        keys = [chain_key(selected)]
    elif sees_all:
        keys = audit_chain_keys()
    else:
        keys = audit_chain_keys(workflows.values_list("pk", flat=True))
    broken = audit_verify(chains=keys)
    checked = len(keys)
    names = {chain_key(w): w.name for w in Workflow.objects.all()}
    names[GLOBAL_CHAIN] = "Global"
    context = {
        "broken": [{"link": b, "name": names.get(b.chain, b.chain)} for b in broken],
        "checked": checked,
        "selected": selected,
        "checked_at": timezone.now(),
    }
    template = "console/evidence/audit.html#verify-result"
    if not request.htmx:
        # Without JavaScript: the whole page with the result in place.
        template = "console/evidence/audit.html"
        events = _audit_events(sees_all=sees_all, workflows=workflows, selected=selected)
        context.update(
            workflows=workflows,
            sees_all=sees_all,
            page=Paginator(events, AUDIT_PER_PAGE).get_page(1),
            verified=True,
        )
    return vary_on_htmx(render(request, template, context))


# --- Explain this action ---------------------------------------------------------------


@require_GET
def explain_proposal(request: HttpRequest, proposal_id: int) -> HttpResponse:
    proposal = get_object_or_404(
        Proposal.objects.select_related("workflow", "work_item", "run"), pk=proposal_id
    )
    workflow = access_workflow(user=request.user, slug=proposal.workflow.slug)
    decision = Decision.objects.select_related("reviewer").filter(proposal=proposal).first()
    executions = list(proposal.executions.order_by("created_at"))
    steps = list(proposal.run.steps.order_by("index"))
    grant = ToolGrant.objects.filter(workflow=workflow, tool=proposal.tool).first()
    escalations = list(
        Escalation.objects.filter(work_item=proposal.work_item).order_by("created_at")
    )
    object_ids = [str(proposal.pk)] + [str(e.pk) for e in executions]
    events = list(
        AuditEvent.objects.filter(
            Q(object_type="Proposal", object_id=str(proposal.pk))
            | Q(object_type="Execution", object_id__in=object_ids[1:])
            | (Q(object_type="Decision", object_id=str(decision.pk)) if decision else Q(pk=None))
        ).order_by("created_at", "pk")
    )
    siblings = list(
        proposal.run.proposals.exclude(pk=proposal.pk)
        .order_by("sequence")
        .only("pk", "sequence", "tool", "status")
    )
    context = {
        "proposal": proposal,
        "arguments_json": _json(proposal.arguments),
        "workflow": workflow,
        "run": proposal.run,
        "item": proposal.work_item,
        "decision": decision,
        "is_critical": bool(decision and decision.is_critical),
        "executions": [(e, _json(e.result)) for e in executions],
        "auto_execution": next((e for e in executions if e.auto), None),
        "steps": [(step, _json(step.input), _json(step.output)) for step in steps],
        "grant": grant,
        "caps_changed_since": bool(grant and grant.updated_at > proposal.created_at),
        "escalations": escalations,
        "events": events,
        "siblings": siblings,
        "critical_reasons": sorted(CRITICAL_REJECT_REASONS),
    }
    return render(request, "console/evidence/explain.html", context)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, cls=DjangoJSONEncoder)


@require_GET
def explain_execution(request: HttpRequest, execution_id: int) -> HttpResponse:
    execution = get_object_or_404(
        Execution.objects.select_related("proposal__workflow"), pk=execution_id
    )
    access_workflow(user=request.user, slug=execution.proposal.workflow.slug)
    url = reverse("explain-proposal", args=[execution.proposal_id])
    return redirect(f"{url}#execution-{execution.pk}")


# --- Evidence pack ----------------------------------------------------------------------

PACK_SAMPLE_LIMIT = 200
PACK_EVENT_LIMIT = 500


@require_GET
def evidence_pack(request: HttpRequest, slug: str) -> HttpResponse:
    workflow = access_workflow(user=request.user, slug=slug)
    fmt = request.GET.get("format", "html")
    if fmt not in ("html", "json"):
        return _bad_request(request, ERR_BAD_FORMAT.format(value=fmt[:20]))
    try:
        days = _window_days(request, default=workflow.gate_window_days or DEFAULT_DAYS)
    except BadInput as exc:
        return _bad_request(request, str(exc))
    scope = Scope.for_workflow(workflow, since=_since(days, timezone.now()))
    m = metrics.workflow_metrics(scope, workflow)
    comparison = metrics.item_comparison_for(scope)
    pack = evidence_pack_data(workflow, scope=scope, m=m, comparison=comparison)
    if fmt == "json":
        return JsonResponse(pack, encoder=DjangoJSONEncoder, json_dumps_params={"indent": 2})
    context = {"workflow": workflow, "pack": pack, "days": days, "m": m, "c": comparison}
    return render(request, "console/evidence/pack.html", context)


def evidence_pack_data(
    workflow: Workflow,
    *,
    scope: Scope,
    m: metrics.WorkflowMetrics,
    comparison: metrics.ItemComparison | None = None,
) -> dict[str, Any]:
    now = timezone.now()
    changes = list(
        AutonomyChange.objects.filter(workflow=workflow)
        .select_related("grant", "requested_by", "approved_by")
        .order_by("created_at")
    )
    decisions = Decision.objects.filter(proposal__workflow=workflow)
    sampled = metrics.sampled_agreement_of(decisions)
    sample_rows = list(
        decisions.filter(kind=Decision.Kind.SAMPLE)
        .select_related("proposal", "reviewer")
        .order_by("-created_at")[:PACK_SAMPLE_LIMIT]
    )
    pause_events = list(
        AuditEvent.objects.filter(
            workflow=workflow, action__in=("workflow.paused", "workflow.resumed")
        ).order_by("created_at", "pk")[:PACK_EVENT_LIMIT]
    )
    critical = list(
        decisions.filter(metrics.CRITICAL)
        .select_related("proposal", "reviewer")
        .prefetch_related(Prefetch("proposal__executions", queryset=Execution.objects.all()))
        .order_by("created_at")[:PACK_EVENT_LIMIT]
    )
    incidents = (
        _demotion_incidents(changes)
        + _pause_incidents(pause_events)
        + _critical_incidents(critical)
    )
    incidents.sort(key=lambda i: i["at"])
    return {
        "workflow": {
            "slug": workflow.slug,
            "name": workflow.name,
            "autonomy_level": workflow.autonomy_level,
            "paused": workflow.paused,
            "paused_reason": workflow.paused_reason,
            "gate": {
                "min_decisions": workflow.gate_min_decisions,
                "min_agreement_lower_bound": workflow.gate_min_agreement,
                "window_days": workflow.gate_window_days,
                "critical_lookback": workflow.gate_critical_lookback,
                "cost_target_usd": workflow.cost_target_usd,
                "min_item_agreement_lower_bound": workflow.gate_min_item_agreement,
                "min_coverage": workflow.gate_min_coverage,
                "min_supervised_decisions_before_limited": workflow.gate_min_supervised_decisions,
                "counts_imported_history": workflow.gate_counts_imported,
            },
            "agreement_floor": workflow.agreement_floor,
            "tool_error_budget": workflow.tool_error_budget,
            "sample_rate": workflow.sample_rate,
        },
        "generated_at": now,
        "window": {"since": scope.since, "until": now},
        "metrics": {
            "decisions": m.agreement.n,
            "accepted": m.agreement.accepted,
            "edited": m.agreement.edited,
            "rejected": m.agreement.rejected,
            "agreement": m.agreement.rate,
            "agreement_interval": [m.agreement.low, m.agreement.high],
            "critical_rejections": m.critical_rejections,
            "cost_per_outcome_usd": m.cost.per_outcome,
            "successful_outcomes": m.cost.outcomes,
            "escalation_rate": m.escalation_rate,
            "tool_errors": [asdict(t) | {"rate": t.rate} for t in m.tool_errors],
        },
        "comparison": (comparison or metrics.item_comparison_for(scope)).as_json(),
        "autonomy_history": [
            {
                "id": c.pk,
                "at": c.created_at,
                "decided_at": c.decided_at,
                "target": c.grant.tool if c.grant_id else "workflow",
                "kind": c.kind,
                "status": c.status,
                "from": c.from_level,
                "to": c.to_level,
                "requested_by": c.requested_by.get_username()
                if c.requested_by
                else "circuit breaker",
                "approved_by": c.approved_by.get_username() if c.approved_by else None,
                "reason": c.reason,
                "evidence": c.evidence,
            }
            for c in changes
        ],
        "grants": [
            {
                "tool": g.tool,
                "level": g.autonomy_level,
                "effective_level": g.effective_level,
                "enabled": g.enabled,
                "caps": g.caps,
                "updated_at": g.updated_at,
            }
            for g in workflow.grants.select_related("workflow").order_by("tool")
        ],
        "sampled_reviews": {
            "total": sampled.n,
            "accepted": sampled.accepted,
            "edited": sampled.edited,
            "rejected": sampled.rejected,
            "agreement": sampled.rate,
            "agreement_interval": [sampled.low, sampled.high],
            "latest": [
                {
                    "decision": d.pk,
                    "proposal": d.proposal_id,
                    "tool": d.proposal.tool,
                    "verdict": d.verdict,
                    "reason": d.reason,
                    "reviewer": d.reviewer.get_username() if d.reviewer else None,
                    "at": d.created_at,
                }
                for d in sample_rows
            ],
        },
        "incidents": incidents,
        # What ran without a human, and where each of its sensitive values came from.
        "auto_executed": [
            {
                "proposal": p.pk,
                "tool": p.tool,
                "at": p.created_at,
                "status": p.status,
                "provenance": p.provenance or {},
            }
            for p in Proposal.objects.filter(workflow=workflow, auto_executed=True)
            .only("pk", "tool", "created_at", "status", "provenance")
            .order_by("-created_at")[:PACK_SAMPLE_LIMIT]
        ],
        "data": _data_rules(workflow),
    }


def _data_rules(workflow: Workflow) -> dict[str, Any]:
    """What the workflow declares personal and how long each kind of record keeps it."""
    declared = governance_privacy.policy_of(workflow)
    return {
        "subject_fields": list(declared.subject_fields),
        "personal_fields": list(declared.personal_fields),
        "personal_arguments": {k: list(v) for k, v in declared.personal_arguments.items()},
        "retention": privacy.retention_rules(workflow),
    }


def _demotion_incidents(changes: list[AutonomyChange]) -> list[dict[str, Any]]:
    incidents = []
    for index, change in enumerate(changes):
        if change.kind != AutonomyChange.Kind.DEMOTION:
            continue
        target = change.grant.tool if change.grant_id else "workflow"
        later = next(
            (
                c
                for c in changes[index + 1 :]
                if c.kind == AutonomyChange.Kind.PROMOTION
                and c.status == AutonomyChange.Status.APPLIED
                and c.grant_id == change.grant_id
            ),
            None,
        )
        who = change.requested_by.get_username() if change.requested_by else "the circuit breaker"
        resolution = (
            f"Promoted again to {later.to_level} on {later.decided_at or later.created_at:%Y-%m-%d}"
            f" (change #{later.pk}) with frozen evidence."
            if later
            else f"Still at {change.to_level} or lower; no promotion since."
        )
        incidents.append(
            {
                "kind": "demotion",
                "at": change.created_at,
                "summary": f"{target} demoted {change.from_level} → {change.to_level} by {who}"
                + (f": {change.reason}" if change.reason else ""),
                "resolution": resolution,
                "ref": {"autonomy_change": change.pk},
            }
        )
    return incidents


def _pause_incidents(events: list[AuditEvent]) -> list[dict[str, Any]]:
    incidents = []
    for index, event in enumerate(events):
        if event.action != "workflow.paused":
            continue
        resumed = next((e for e in events[index + 1 :] if e.action == "workflow.resumed"), None)
        reason = (event.data or {}).get("reason", "")
        resumed_reason = (resumed.data or {}).get("reason", "") if resumed else ""
        incidents.append(
            {
                "kind": "pause",
                "at": event.created_at,
                "summary": f"Paused by {event.actor_label}" + (f": {reason}" if reason else ""),
                "resolution": (
                    f"Resumed by {resumed.actor_label} on {resumed.created_at:%Y-%m-%d %H:%M}"
                    + (f": {resumed_reason}" if resumed_reason else "")
                    if resumed
                    else "Still paused."
                ),
                "ref": {"audit_event": f"{event.chain}#{event.seq}"},
            }
        )
    return incidents


def _critical_incidents(decisions: list[Decision]) -> list[dict[str, Any]]:
    incidents = []
    for decision in decisions:
        executed = list(decision.proposal.executions.all())
        if decision.kind == Decision.Kind.SAMPLE or executed:
            resolution = (
                "The action had already executed (auto-executed, found by sampling); "
                "see its explanation for the execution and follow-up."
            )
        else:
            resolution = "Rejected before execution: the action never ran."
        incidents.append(
            {
                "kind": "critical_rejection",
                "at": decision.created_at,
                "summary": f"{decision.proposal.tool} rejected as {decision.reason} by "
                f"{decision.reviewer.get_username() if decision.reviewer else 'the system'}"
                + (f": {decision.reason_text}" if decision.reason_text else ""),
                "resolution": resolution,
                "ref": {"proposal": decision.proposal_id, "decision": decision.pk},
            }
        )
    return incidents
