"""What humans did, viewable in the admin and changeable nowhere."""

from __future__ import annotations

from django.contrib import admin

from governance.admin import ReadOnlyAdmin
from reviews.models import (
    ActionReport,
    Approval,
    Claim,
    Decision,
    EscalationResolution,
    HumanAction,
    ItemOutcome,
    UndoneDecision,
)


@admin.register(Claim)
class ClaimAdmin(ReadOnlyAdmin):
    list_display = ["proposal", "reviewer", "claimed_at", "expires_at"]


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = [
        "proposal",
        "reviewer",
        "kind",
        "verdict",
        "reason",
        "seconds_spent",
        "created_at",
    ]
    list_filter = ["verdict", "kind", "reason"]


@admin.register(Approval)
class ApprovalAdmin(ReadOnlyAdmin):
    list_display = ["proposal", "reviewer", "verdict", "created_at"]


@admin.register(UndoneDecision)
class UndoneDecisionAdmin(ReadOnlyAdmin):
    list_display = ["proposal", "reviewer", "verdict", "decided_at", "undone_at"]


@admin.register(EscalationResolution)
class EscalationResolutionAdmin(ReadOnlyAdmin):
    list_display = ["escalation", "reviewer", "outcome", "packet_rating", "created_at"]
    list_filter = ["outcome", "packet_rating"]


@admin.register(ItemOutcome)
class ItemOutcomeAdmin(ReadOnlyAdmin):
    list_display = ["work_item", "workflow", "source", "did_nothing", "imported", "occurred_at"]


@admin.register(HumanAction)
class HumanActionAdmin(ReadOnlyAdmin):
    list_display = ["outcome", "workflow", "tool", "imported", "occurred_at"]


@admin.register(ActionReport)
class ActionReportAdmin(ReadOnlyAdmin):
    list_display = ["workflow", "idempotency_key", "principal", "created_at"]
