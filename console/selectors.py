"""Reads across the apps for the console's pages. Aggregates run in SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from agents.models import Proposal, WorkItem
from console.models import Workflow


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


def decided_counts(workflow: Workflow) -> dict[str, int]:
    row = Proposal.objects.filter(workflow=workflow).aggregate(
        accepted=Count("pk", filter=Q(status=Proposal.Status.ACCEPTED)),
        edited=Count("pk", filter=Q(status=Proposal.Status.EDITED)),
        rejected=Count("pk", filter=Q(status=Proposal.Status.REJECTED)),
    )
    return row
