"""Row sets: what each metric counts, and what its drill-down lists.

A number and the rows behind it come from the same function, so they cannot drift
apart.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet

from agents.models import Escalation, Proposal, Run, Step, WorkItem
from evidence.metrics.scope import Scope
from reviews.models import Decision, EscalationResolution


def decisions_rows(scope: Scope) -> QuerySet[Decision]:
    qs = Decision.objects.filter(
        scope.window("created_at"), proposal__workflow__in=scope.workflow_ids
    )
    if scope.tool:
        qs = qs.filter(proposal__tool=scope.tool)
    if not scope.with_imported:
        qs = qs.exclude(kind=Decision.Kind.IMPORTED)
    return qs


def outcomes_rows(scope: Scope) -> QuerySet[WorkItem]:
    """Work items resolved in the window with a known outcome."""
    qs = WorkItem.objects.filter(
        scope.window("resolved_at"), workflow__in=scope.workflow_ids, succeeded__isnull=False
    )
    if scope.tool:
        qs = qs.filter(Exists(Proposal.objects.filter(work_item=OuterRef("pk"), tool=scope.tool)))
    return qs


def received_rows(scope: Scope) -> QuerySet[WorkItem]:
    """Work items received in the window (the volume)."""
    qs = WorkItem.objects.filter(scope.window("created_at"), workflow__in=scope.workflow_ids)
    if scope.tool:
        qs = qs.filter(Exists(Proposal.objects.filter(work_item=OuterRef("pk"), tool=scope.tool)))
    return qs


def runs_rows(scope: Scope) -> QuerySet[Run]:
    qs = Run.objects.filter(scope.window("created_at"), work_item__workflow__in=scope.workflow_ids)
    if scope.tool:
        # A run that proposed several tools counts fully towards each of them.
        qs = qs.filter(Exists(Proposal.objects.filter(run=OuterRef("pk"), tool=scope.tool)))
    return qs


def tool_steps_rows(scope: Scope) -> QuerySet[Step]:
    qs = Step.objects.filter(
        scope.window("created_at"),
        run__work_item__workflow__in=scope.workflow_ids,
        kind=Step.Kind.TOOL_CALL,
    )
    if scope.tool:
        qs = qs.filter(name=scope.tool)
    return qs


def escalations_rows(scope: Scope) -> QuerySet[Escalation]:
    return Escalation.objects.filter(scope.window("created_at"), workflow__in=scope.workflow_ids)


def resolutions_rows(scope: Scope) -> QuerySet[EscalationResolution]:
    return EscalationResolution.objects.filter(
        scope.window("created_at"), escalation__workflow__in=scope.workflow_ids
    )


def escalated_filter() -> Exists:
    return Exists(Escalation.objects.filter(work_item=OuterRef("pk")))
