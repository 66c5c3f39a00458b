"""What humans did: claims, decisions and escalation resolutions."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from agents.models import Escalation, Proposal


class Claim(models.Model):
    """A reviewer's lease on a proposal. One per proposal: the row is the lock."""

    proposal = models.OneToOneField(Proposal, on_delete=models.CASCADE, related_name="claim")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="claims"
    )
    token = models.UUIDField(default=uuid.uuid4)
    claimed_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["reviewer", "expires_at"])]

    def __str__(self) -> str:
        return f"claim on {self.proposal_id} by {self.reviewer_id}"


class RejectReason(models.TextChoices):
    WRONG_RECORD = "wrong_record", "Wrong record"
    WRONG_AMOUNT = "wrong_amount", "Wrong amount"
    WRONG_ACTION = "wrong_action", "Wrong action"
    MISSING_CONTEXT = "missing_context", "Missing context"
    POLICY = "policy", "Policy"
    UNSAFE = "unsafe", "Unsafe"
    OTHER = "other", "Other"


# A rejection for one of these reasons is a critical disagreement (it blocks promotion).
CRITICAL_REJECT_REASONS = frozenset({RejectReason.UNSAFE, RejectReason.POLICY})


class Decision(models.Model):
    class Verdict(models.TextChoices):
        ACCEPT = "accept", "Accept"
        EDIT = "edit", "Edit"
        REJECT = "reject", "Reject"

    class Kind(models.TextChoices):
        REVIEW = "review", "Review before action"
        SAMPLE = "sample", "Post-hoc sample of an auto-executed action"
        REPORTED = "reported", "Reported by the system of record"

    # One decision per proposal: the database refuses a second one.
    proposal = models.OneToOneField(Proposal, on_delete=models.PROTECT, related_name="decision")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="decisions",
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.REVIEW)
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    final_arguments = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    final_arguments_hash = models.CharField(max_length=64, blank=True)
    diff = models.JSONField(
        default=dict, blank=True, encoder=DjangoJSONEncoder, help_text="field -> [proposed, final]"
    )
    reason = models.CharField(max_length=20, choices=RejectReason.choices, blank=True)
    reason_text = models.TextField(blank=True)
    autonomy_level = models.CharField(max_length=16, help_text="The level at decision time.")
    seconds_spent = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["verdict", "created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=~Q(verdict="reject") | ~Q(reason=""),
                name="decision_reject_has_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.verdict} on {self.proposal_id}"

    @property
    def is_critical(self) -> bool:
        return self.verdict == self.Verdict.REJECT and self.reason in CRITICAL_REJECT_REASONS


class Approval(models.Model):
    """One reviewer's approval of a proposal that needs two distinct approvers.

    The first approval waits here; the Decision is written (and the plan may
    execute) only when a second, different reviewer approves the same arguments.
    The database refuses a second approval by the same reviewer.
    """

    proposal = models.ForeignKey(Proposal, on_delete=models.CASCADE, related_name="approvals")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="approvals"
    )
    verdict = models.CharField(max_length=8, choices=Decision.Verdict.choices)
    final_arguments = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    final_arguments_hash = models.CharField(max_length=64)
    diff = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    reason_text = models.TextField(blank=True)
    seconds_spent = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["proposal", "reviewer"], name="approval_one_per_reviewer"
            ),
            models.CheckConstraint(
                condition=Q(verdict__in=["accept", "edit"]), name="approval_approves"
            ),
        ]

    def __str__(self) -> str:
        return f"approval of {self.proposal_id} by {self.reviewer_id}"


class EscalationResolution(models.Model):
    class Outcome(models.TextChoices):
        TOOK_ACTION = "took_action", "Took the action myself"
        CLOSED = "closed", "Closed, nothing to do"
        SENT_BACK = "sent_back", "Sent back to the agent"

    escalation = models.OneToOneField(
        Escalation, on_delete=models.PROTECT, related_name="resolution"
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="escalation_resolutions"
    )
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    note = models.TextField(blank=True)
    action_taken = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    packet_rating = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text="How useful the escalation packet was, 1 (useless) to 5 (everything needed).",
    )
    minutes_saved = models.PositiveIntegerField(
        default=0, help_text="Reviewer's estimate of investigation time the packet saved."
    )
    seconds_spent = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(packet_rating__gte=1) & Q(packet_rating__lte=5),
                name="resolution_rating_1_to_5",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.outcome} on escalation {self.escalation_id}"
