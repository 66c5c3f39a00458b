"""Derived evidence: rollups the dashboards read instead of raw rows."""

from __future__ import annotations

from decimal import Decimal

from django.db import models

from governance.models import Workflow


class MetricDay(models.Model):
    """The additive sums behind the evidence metrics, for one workflow, one tool and
    one closed day: rolled up once, read by the dashboards instead of raw rows.

    Derived data only: ``evidence.metrics`` defines what each column counts and
    which timestamp buckets it (``metric_days_compute``); it writes and
    invalidates these rows. ``tool`` is the proposal's tool for the decision
    columns and the step's name for the tool-call columns; the row with
    ``tool=""`` holds the workflow-level columns and marks the day as rolled.
    """

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    tool = models.CharField(max_length=120, blank=True)
    # Decisions, by Decision.created_at, per proposal tool.
    decisions = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    edited = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    critical = models.PositiveIntegerField(default=0)
    reviewer_seconds = models.BigIntegerField(default=0)
    reject_reasons = models.JSONField(default=dict, blank=True)  # {reason: n}
    fields = models.JSONField(default=dict, blank=True)  # {field: [edited, changed]}
    # Tool-call steps, by Step.created_at, per step name.
    tool_calls = models.PositiveIntegerField(default=0)
    tool_errors = models.PositiveIntegerField(default=0)
    # Workflow-level (tool=""): runs by Run.created_at.
    runs = models.PositiveIntegerField(default=0)
    run_tool_calls = models.BigIntegerField(default=0)
    retried_runs = models.PositiveIntegerField(default=0)
    model_usd = models.DecimalField(max_digits=18, decimal_places=6, default=Decimal("0"))
    tool_usd = models.DecimalField(max_digits=18, decimal_places=6, default=Decimal("0"))
    budget_trips = models.JSONField(default=dict, blank=True)  # {stop_reason: n}
    # Work items by WorkItem.created_at; those whose first escalation came on the
    # same day. Later first escalations are counted on the escalation's day,
    # keyed by the day the item was received.
    received = models.PositiveIntegerField(default=0)
    escalated_same_day = models.PositiveIntegerField(default=0)
    escalated_later = models.JSONField(default=dict, blank=True)  # {received day: n}
    # Outcomes by WorkItem.resolved_at.
    resolved = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    # Escalations by Escalation.created_at; time-to-safe-fail as a sum.
    escalations = models.PositiveIntegerField(default=0)
    safe_fail_n = models.PositiveIntegerField(default=0)
    safe_fail_us = models.BigIntegerField(default=0)
    # Escalation resolutions by EscalationResolution.created_at.
    resolutions = models.PositiveIntegerField(default=0)
    minutes_saved = models.BigIntegerField(default=0)
    rating_sum = models.BigIntegerField(default=0)
    rating_n = models.PositiveIntegerField(default=0)
    rolled_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "console_metricday"  # its name from before the move
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "day", "tool"], name="metricday_unique_workflow_day_tool"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} {self.day} {self.tool or '*'}"
