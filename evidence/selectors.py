"""Reads across the apps for the console's pages. Aggregates run in SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from agents.models import Proposal, Run, WorkItem
from governance.models import Workflow


@dataclass(frozen=True)
class QueueCounts:
    pending: int
    escalations: int
    oldest_pending_at: datetime | None

    @property
    def pending_display(self) -> str:
        from reviews.selectors import COUNT_CAP

        return f"{COUNT_CAP}+" if self.pending >= COUNT_CAP else str(self.pending)

    @property
    def oldest_age_seconds(self) -> int | None:
        if self.oldest_pending_at is None:
            return None
        return int((timezone.now() - self.oldest_pending_at).total_seconds())


def queue_counts_for(workflows: QuerySet[Workflow]) -> dict[int, QueueCounts]:
    """Pending proposals (counted up to a cap), open escalations and the oldest
    pending item, per workflow. Polled by every reviewer's navigation, so each
    number is an index read whose cost does not grow with the queue."""
    from reviews.selectors import queue_sizes

    return {
        size.workflow.pk: QueueCounts(
            pending=size.pending,
            escalations=size.escalations,
            oldest_pending_at=size.oldest_pending_at,
        )
        for size in queue_sizes(list(workflows))
    }


def queue_totals(workflows: QuerySet[Workflow]) -> QueueCounts:
    counts = queue_counts_for(workflows).values()
    oldest = [c.oldest_pending_at for c in counts if c.oldest_pending_at]
    return QueueCounts(
        pending=sum(c.pending for c in counts),
        escalations=sum(c.escalations for c in counts),
        oldest_pending_at=min(oldest) if oldest else None,
    )


def work_item_status_counts(workflow: Workflow) -> dict[str, int]:
    return dict(
        WorkItem.objects.filter(workflow=workflow)
        .values("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )


def recent_work_items(workflow: Workflow, limit: int = 25) -> QuerySet[WorkItem]:
    return WorkItem.objects.filter(workflow=workflow).order_by("-created_at")[:limit]


def proposal_status_counts(workflow: Workflow) -> dict[str, int]:
    return dict(
        Proposal.objects.filter(workflow=workflow)
        .values("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )


@dataclass(frozen=True)
class GrantRow:
    """One tool of a workflow as its page shows it: level, the caps that apply to
    each action (workflow's and grant's, the lower wins), the per-day caps on what
    runs without a human, and today's use of them."""

    grant: Any
    action_caps: dict[str, Decimal]
    daily_count: Decimal | None
    daily_total: Decimal | None
    used_count: int
    used_total: Decimal


def grant_rows(workflow: Workflow) -> list[GrantRow]:
    from agents.policy import caps_for
    from agents.services import auto_daily_usage

    rows = []
    for grant in workflow.grants.order_by("tool"):
        caps = grant.caps if isinstance(grant.caps, dict) else {}
        count, total = caps.get("count"), caps.get("total")
        used_count, used_total = (
            auto_daily_usage(workflow=workflow, tool=grant.tool)
            if count is not None or total is not None
            else (0, Decimal(0))
        )
        rows.append(
            GrantRow(
                grant=grant,
                action_caps=caps_for(policy=workflow.policy, tool=grant.tool, grant_caps=caps),
                daily_count=Decimal(str(count)) if count is not None else None,
                daily_total=Decimal(str(total)) if total is not None else None,
                used_count=used_count,
                used_total=used_total,
            )
        )
    return rows


ALLOWLIST_LABELS = {
    "groups": "groups that may be granted",
    "email_domains": "domains that may be emailed",
}


def policy_allowlists(workflow: Workflow) -> dict[str, list[str]]:
    """The workflow's allowlists, labelled for display."""
    allowlists = (workflow.policy or {}).get("allowlists") or {}
    return {
        ALLOWLIST_LABELS.get(k, k.replace("_", " ")): [str(x) for x in v]
        for k, v in allowlists.items()
        if isinstance(v, list | tuple)
    }


def unpriced_runs(workflow: Workflow, *, since: datetime) -> dict[str, int]:
    """Runs since ``since`` that met a model with no price: charged at the fallback
    price (``fallback``), or stopped before calling it (``stopped``). One query."""
    # The filter on the two conditions lets PostgreSQL read only the partial index
    # run_unpriced_created_at (a handful of rows) instead of every run since ``since``.
    counts = Run.objects.filter(
        Q(unpriced=True) | Q(stop_reason=Run.StopReason.UNPRICED_MODEL),
        work_item__workflow=workflow,
        created_at__gte=since,
    ).aggregate(
        fallback=Count("pk", filter=Q(unpriced=True)),
        stopped=Count("pk", filter=Q(stop_reason=Run.StopReason.UNPRICED_MODEL)),
    )
    return {"fallback": counts["fallback"] or 0, "stopped": counts["stopped"] or 0}
