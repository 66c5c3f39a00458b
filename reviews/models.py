"""What humans did: claims, decisions and escalation resolutions."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

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
        IMPORTED = "imported", "Imported history"

    # The kinds that judge an agent's action before (or instead of) it ran: the
    # evidence behind agreement. A sample reviews what already ran (sampled agreement).
    JUDGING = (Kind.REVIEW, Kind.REPORTED, Kind.IMPORTED)

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
    # Set when the decision is written (an import writes the original time); the
    # database keeps it from changing afterwards (append-only).
    created_at = models.DateTimeField(default=timezone.now)

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


class ItemOutcome(models.Model):
    """What the human really did about one work item, once their account of it is
    complete: the item-level side of the comparison with the agent's plan.

    Written when the last proposal of an item's plan is judged in the console, when a
    report (or an import) gives the human's whole set of actions or says they did
    nothing, and when an escalation is resolved. The actions the agent proposed are
    judged by their decisions; what the human did that the agent never proposed is a
    ``HumanAction`` (missed). ``did_nothing`` with no proposal is "both did nothing":
    agreement."""

    class Source(models.TextChoices):
        CONSOLE = "console", "Decided in the console"
        REPORT = "report", "Reported by the system of record"
        ESCALATION = "escalation", "Escalation resolved"
        IMPORT = "import", "Imported history"

    work_item = models.OneToOneField(
        "agents.WorkItem", on_delete=models.CASCADE, related_name="outcome"
    )
    # Denormalised from the work item so the metrics read one table.
    workflow = models.ForeignKey(
        "governance.Workflow", on_delete=models.PROTECT, related_name="item_outcomes"
    )
    source = models.CharField(max_length=16, choices=Source.choices)
    did_nothing = models.BooleanField(
        default=False, help_text="The human took no action on the item."
    )
    imported = models.BooleanField(default=False)
    occurred_at = models.DateTimeField(
        help_text="When the human's account closed (the original time, for imports)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["workflow", "occurred_at"])]

    def __str__(self) -> str:
        return f"outcome of {self.work_item_id} ({self.source})"


class HumanAction(models.Model):
    """An action the human took that the agent never proposed: a *missed* action.

    It belongs to its work item from the moment it is reported; ``outcome`` is set
    when the human's account of the item is complete (a report of part of the set can
    carry a missed action before the item closes)."""

    work_item = models.ForeignKey(
        "agents.WorkItem", on_delete=models.CASCADE, related_name="missed_actions"
    )
    outcome = models.ForeignKey(
        ItemOutcome, on_delete=models.CASCADE, null=True, blank=True, related_name="missed"
    )
    workflow = models.ForeignKey(
        "governance.Workflow", on_delete=models.PROTECT, related_name="missed_actions"
    )
    tool = models.CharField(max_length=100)
    arguments = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    imported = models.BooleanField(default=False)
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["workflow", "occurred_at"])]

    def __str__(self) -> str:
        return f"missed {self.tool} on {self.outcome_id}"


class UndoneDecision(models.Model):
    """A decision its reviewer took back within the undo window, while nothing had
    executed: the decision row is removed (so every metric follows) and kept here,
    whole, with who undid it and when. The database refuses to remove a decision
    that has no row here, or that is older than the window."""

    decision_id = models.BigIntegerField(unique=True)
    proposal = models.ForeignKey(
        "agents.Proposal", on_delete=models.CASCADE, related_name="undone_decisions"
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    verdict = models.CharField(max_length=8)
    kind = models.CharField(max_length=16)
    decision = models.JSONField(encoder=DjangoJSONEncoder, help_text="The decision as it was.")
    decided_at = models.DateTimeField()
    undone_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"undone {self.verdict} on {self.proposal_id}"


class ActionReport(models.Model):
    """One report of what the human did, by its Idempotency-Key: a retry gets the
    original answer back and counts nothing twice; the same key with another body is
    a conflict."""

    workflow = models.ForeignKey(
        "governance.Workflow", on_delete=models.PROTECT, related_name="action_reports"
    )
    idempotency_key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    response = models.JSONField(encoder=DjangoJSONEncoder)
    principal = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "idempotency_key"], name="actionreport_one_per_key"
            ),
        ]

    def __str__(self) -> str:
        return f"report {self.idempotency_key} ({self.workflow_id})"
