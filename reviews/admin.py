from __future__ import annotations

from django.contrib import admin

from reviews.models import Claim, Decision, EscalationResolution


@admin.register(Claim)
class ClaimAdmin(admin.ModelAdmin):
    list_display = ["proposal", "reviewer", "claimed_at", "expires_at"]


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
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


@admin.register(EscalationResolution)
class EscalationResolutionAdmin(admin.ModelAdmin):
    list_display = ["escalation", "reviewer", "outcome", "packet_rating", "created_at"]
    list_filter = ["outcome", "packet_rating"]
