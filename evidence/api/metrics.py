"""A workflow's evidence metrics, from ``evidence.metrics`` (one definition of each)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from ninja import Query, Router, Schema
from pydantic import Field

from evidence import metrics
from evidence.api.schemas import MetricsOut
from governance.api.auth import access_workflow_api
from governance.api.schemas import ERROR_RESPONSES
from governance.models import ApiToken

router = Router(tags=["metrics"])


class MetricsQuery(Schema):
    days: int = Field(
        30,
        ge=1,
        le=366,
        description="The window: the last N days (today and the N - 1 before it, from "
        "local midnight), as the dashboard and the evidence pack count them.",
    )


@router.get(
    "/workflows/{slug}/metrics",
    response={200: MetricsOut, **ERROR_RESPONSES},
    summary="Workflow metrics",
    description="Agreement, the item-level comparison (precision, recall, item agreement, "
    "coverage), cost per outcome, escalations, tool errors. Scope: `metrics:read`.",
)
def workflow_metrics_get(
    request: HttpRequest, slug: str, query: Query[MetricsQuery]
) -> dict[str, Any]:
    workflow = access_workflow_api(request, slug=slug, verb=ApiToken.Verb.METRICS_READ)
    since = metrics.window_start(query.days, timezone.now())
    scope = metrics.Scope.for_workflow(workflow, since=since)
    m = metrics.workflow_metrics(scope, workflow)
    backlog = metrics.backlog_for((workflow.pk,))[workflow.pk]
    ttsf = m.time_to_safe_fail
    return {
        "workflow": workflow.slug,
        "since": since,
        "autonomy_level": workflow.autonomy_level,
        "paused": workflow.paused,
        "received": m.received,
        "resolved": m.resolved,
        "succeeded": m.succeeded,
        "success_rate": m.success_rate,
        "agreement": {
            "accepted": m.agreement.accepted,
            "edited": m.agreement.edited,
            "rejected": m.agreement.rejected,
            "n": m.agreement.n,
            "rate": m.agreement.rate,
            "wilson_low": m.agreement.low,
            "wilson_high": m.agreement.high,
        },
        "critical_rejections": m.critical_rejections,
        "cost": {
            "model_usd": m.cost.model_usd,
            "tool_usd": m.cost.tool_usd,
            "reviewer_usd": m.cost.reviewer_usd,
            "total_usd": m.cost.total_usd,
            "successful_outcomes": m.cost.outcomes,
            "per_outcome_usd": m.cost.per_outcome,
            "target_usd": m.cost.target_usd,
            "within_target": m.cost.within_target,
        },
        "escalations": m.escalations,
        "escalation_rate": m.escalation_rate,
        "runs": m.runs,
        "mean_tool_calls": m.mean_tool_calls,
        "retry_rate": m.retry_rate,
        "time_to_safe_fail_seconds": ttsf.total_seconds() if ttsf is not None else None,
        "tool_errors": [
            {"tool": t.tool, "calls": t.calls, "errors": t.errors, "rate": t.rate}
            for t in m.tool_errors
        ],
        "budget_trips": m.budget_trips,
        "decisions": m.decisions,
        "reviewer_seconds_per_decision": m.reviewer_seconds_per_decision,
        "pending_proposals": backlog.pending,
        "open_escalations": backlog.open_escalations,
        "comparison": metrics.item_comparison_for(scope).as_json(),
    }
