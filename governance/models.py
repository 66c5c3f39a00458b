"""Governance: workflows, tool grants, autonomy changes and the audit log."""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone


class AutonomyLevel(models.TextChoices):
    """The autonomy ladder, lowest first. Pausing is a separate flag (the kill switch)."""

    OFF = "off", "Off"
    SHADOW = "shadow", "Shadow"
    SUPERVISED = "supervised", "Supervised"
    LIMITED = "limited", "Limited"
    AUTONOMOUS = "autonomous", "Autonomous"

    @classmethod
    def ladder(cls) -> list[str]:
        return [cls.OFF, cls.SHADOW, cls.SUPERVISED, cls.LIMITED, cls.AUTONOMOUS]

    @classmethod
    def rank(cls, level: str) -> int:
        return cls.ladder().index(level)


class Workflow(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="owned_workflows",
        help_text="The accountable owner: shown on the workflow's pages, told of its incidents.",
    )
    autonomy_level = models.CharField(
        max_length=16, choices=AutonomyLevel.choices, default=AutonomyLevel.SHADOW
    )
    paused = models.BooleanField(default=False)
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_reason = models.CharField(max_length=500, blank=True)

    # Per-run budgets: tripping one stops the run and escalates.
    max_tool_calls = models.PositiveIntegerField(default=8)
    max_tokens = models.PositiveIntegerField(default=20_000)
    max_seconds = models.PositiveIntegerField(default=60)
    max_cost_usd = models.DecimalField(max_digits=10, decimal_places=4, default=Decimal("0.25"))
    loop_threshold = models.PositiveSmallIntegerField(
        default=3, help_text="The same tool call repeated this many times is a loop."
    )
    daily_budget_usd = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("50"))

    # Outcome economics.
    cost_target_usd = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        default=Decimal("1.00"),
        help_text="Target cost per successful outcome (model + tools + reviewer time).",
    )

    # Promotion gate thresholds.
    gate_min_decisions = models.PositiveIntegerField(default=50)
    gate_min_agreement = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.900"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="Wilson 95% lower bound of agreement must be at or above this.",
    )
    gate_window_days = models.PositiveIntegerField(default=30)
    gate_critical_lookback = models.PositiveIntegerField(
        default=20, help_text="No critical disagreement in the last K decisions."
    )
    gate_min_item_agreement = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.800"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="Wilson 95% lower bound of item-level agreement (the whole plan right).",
    )
    gate_min_coverage = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.900"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="Share of proposals with a verdict (judged / proposed) in the window.",
    )
    gate_counts_imported = models.BooleanField(
        default=False,
        help_text="Whether imported history (backfilled pairs) counts toward the gate.",
    )
    gate_min_supervised_decisions = models.PositiveIntegerField(
        default=20,
        help_text="Decisions a tool needs at supervised before it may be promoted to limited.",
    )
    # Circuit breaker and sampling.
    agreement_floor = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.800"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
    )
    tool_error_budget = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.050"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
    )
    sample_rate = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.100"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
    )
    review_sla_minutes = models.PositiveIntegerField(default=240)

    # Model routing; empty means the settings' defaults (or the demo model without a key).
    model_small = models.CharField(max_length=100, blank=True)
    model_large = models.CharField(max_length=100, blank=True)
    # Policy rules evaluated on validated arguments (caps, allowlists, always-approve classes).
    policy = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    # Payload fields the integration declares trusted (set by its system of record, not
    # typed by a customer): never scanned for injections, and they ground an action's
    # sensitive arguments. Every other field is untrusted text.
    trusted_fields = models.JSONField(default=list, blank=True)
    trace_retention_days = models.PositiveIntegerField(default=90)
    # What is personal data, whom it names, and how long each kind of record keeps it
    # (governance.privacy: subject_fields, personal_fields, personal_arguments,
    # retention_days). Changed under change control like every setting.
    data_policy = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "console_workflow"  # its name from before the move
        ordering = ["name"]
        permissions = [
            ("review_workflow", "Can review the workflow's proposals and escalations"),
            ("manage_workflow", "Can change the workflow's grants, thresholds and autonomy"),
            ("operate_workflow", "Can pause and resume the workflow"),
            ("export_workflow", "Can download every reviewer's decisions on the workflow"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(gate_min_agreement__gte=0) & Q(gate_min_agreement__lte=1),
                name="workflow_gate_agreement_is_a_fraction",
            ),
            models.CheckConstraint(
                condition=Q(agreement_floor__gte=0) & Q(agreement_floor__lte=1),
                name="workflow_agreement_floor_is_a_fraction",
            ),
            models.CheckConstraint(
                condition=Q(gate_min_item_agreement__gte=0)
                & Q(gate_min_item_agreement__lte=1)
                & Q(gate_min_coverage__gte=0)
                & Q(gate_min_coverage__lte=1),
                name="workflow_gate_fractions",
            ),
            models.CheckConstraint(
                condition=Q(sample_rate__gte=0) & Q(sample_rate__lte=1),
                name="workflow_sample_rate_is_a_fraction",
            ),
            models.CheckConstraint(
                condition=Q(max_cost_usd__gte=0) & Q(cost_target_usd__gte=0),
                name="workflow_money_is_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_running(self) -> bool:
        return not self.paused and self.autonomy_level != AutonomyLevel.OFF


class ToolGrant(models.Model):
    """A tool a workflow's agent may call, with its own autonomy level and caps."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="grants")
    tool = models.CharField(max_length=100)
    autonomy_level = models.CharField(
        max_length=16, choices=AutonomyLevel.choices, default=AutonomyLevel.SHADOW
    )
    enabled = models.BooleanField(default=True)
    # Per action (e.g. {"amount": 100}) and per day ({"count": 20, "total": 500}).
    caps = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "console_toolgrant"  # its name from before the move
        ordering = ["workflow", "tool"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "tool"], name="toolgrant_one_per_tool"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow.slug}:{self.tool} ({self.autonomy_level})"

    @property
    def effective_level(self) -> str:
        """A tool never exceeds its workflow."""
        own, workflow_level = self.autonomy_level, self.workflow.autonomy_level
        return min(own, workflow_level, key=AutonomyLevel.rank)


class AutonomyChange(models.Model):
    class Kind(models.TextChoices):
        PROMOTION = "promotion", "Promotion"
        DEMOTION = "demotion", "Demotion"

    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested"
        APPLIED = "applied", "Applied"
        DECLINED = "declined", "Declined"

    workflow = models.ForeignKey(
        Workflow, on_delete=models.PROTECT, related_name="autonomy_changes"
    )
    grant = models.ForeignKey(
        ToolGrant,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="autonomy_changes",
        help_text="Empty for a change of the whole workflow.",
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.REQUESTED)
    from_level = models.CharField(max_length=16, choices=AutonomyLevel.choices)
    to_level = models.CharField(max_length=16, choices=AutonomyLevel.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty when the circuit breaker demoted automatically.",
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    evidence = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "console_autonomychange"  # its name from before the move
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["workflow", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=~Q(from_level=models.F("to_level")),
                name="autonomychange_changes_something",
            ),
            models.CheckConstraint(
                condition=Q(approved_by__isnull=True)
                | Q(requested_by__isnull=True)
                | ~Q(approved_by=models.F("requested_by")),
                name="autonomychange_four_eyes",
            ),
        ]

    def __str__(self) -> str:
        target = self.grant.tool if self.grant_id else self.workflow.slug
        return f"{target}: {self.from_level} -> {self.to_level} ({self.status})"


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)


class AuditChain(models.Model):
    """The head of one hash chain. One chain per workflow (plus ``global``), so
    appending locks one row per workflow, never one row for the whole system."""

    key = models.CharField(max_length=80, unique=True)
    seq = models.PositiveBigIntegerField(default=0)
    head_hash = models.CharField(max_length=64, default="0" * 64)
    keyed_from_seq = models.PositiveBigIntegerField(
        default=1,
        help_text="From this event on the chain is keyed (HMAC): an unkeyed event there is "
        "a forgery. Set once; the database refuses to change it.",
    )

    class Meta:
        db_table = "console_auditchain"  # its name from before the move

    def __str__(self) -> str:
        return f"{self.key}#{self.seq}"


class AuditEvent(models.Model):
    """Append-only. Each row carries the hash of the previous row in its chain.

    An event is written unsealed (no ``seq``, no hashes) inside the transaction
    that makes the change, then sealed into its chain right after that commits
    (``governance.audit.audit_seal``): only sealing takes the chain's lock.
    """

    chain = models.CharField(max_length=80)
    seq = models.PositiveBigIntegerField(null=True, blank=True)
    workflow = models.ForeignKey(
        Workflow, on_delete=models.PROTECT, null=True, blank=True, related_name="audit_events"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_label = models.CharField(
        max_length=150, help_text="user:<name>, integration:<name>, agent:<workflow>, system"
    )
    action = models.CharField(max_length=80)
    object_type = models.CharField(max_length=80, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField()
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64, blank=True)
    key_id = models.CharField(
        max_length=40,
        blank=True,
        help_text="Which audit key sealed it (HMAC); empty for events sealed before keys.",
    )

    class Meta:
        db_table = "console_auditevent"  # its name from before the move
        ordering = ["chain", "seq", "id"]  # unsealed events (no seq yet) in written order
        constraints = [
            models.UniqueConstraint(fields=["chain", "seq"], name="auditevent_chain_seq_unique"),
        ]
        indexes = [
            models.Index(
                fields=["chain", "id"], condition=Q(seq__isnull=True), name="auditevent_unsealed"
            ),
            models.Index(fields=["workflow", "-created_at"]),
            models.Index(fields=["object_type", "object_id"]),
            models.Index(fields=["action", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.chain}#{self.seq} {self.action}"

    def hash_body(self) -> str:
        """What the hash covers: every column but the hash itself, canonically."""
        fields = {
            "chain": self.chain,
            "seq": self.seq,
            "workflow": self.workflow_id,
            "actor": self.actor_id,
            "actor_label": self.actor_label,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "data": self.data,
            "created_at": self.created_at.isoformat(),
            "prev_hash": self.prev_hash,
        }
        if self.key_id:
            fields["key_id"] = self.key_id
        return _canonical_json(fields)

    def compute_hash(self, key: bytes | None = None) -> str:
        """HMAC-SHA256 under the audit key named by ``key_id`` (held outside the
        database, ``governance.audit_keys``); plain SHA-256 for events sealed before
        the chain was keyed."""
        body = self.hash_body().encode()
        if not self.key_id:
            return hashlib.sha256(body).hexdigest()
        if key is None:
            raise ValueError("A keyed audit event needs its key to be hashed.")
        return hmac.new(key, body, hashlib.sha256).hexdigest()


class ApiToken(models.Model):
    """An integration's credential for the REST API: scoped to workflows and verbs.

    Only the sha256 of the token is kept; the plain token is shown once, when it
    is created. ``prefix`` is the public part used to find the row. Each
    integration is its own principal in the audit log (``integration:<name>``).
    """

    class Verb(models.TextChoices):
        WORK_ITEMS_WRITE = "work_items:write", "Create work items"
        PROPOSALS_READ = "proposals:read", "Read proposals"
        DECISIONS_READ = "decisions:read", "Read decisions"
        EXECUTIONS_READ = "executions:read", "Read executions"
        ACTIONS_REPORT = "actions:report", "Report the human's actual actions"
        HISTORY_IMPORT = "history:import", "Import past proposals and what humans did"
        METRICS_READ = "metrics:read", "Read workflow metrics"
        EXPORT_READ = "export:read", "Export decisions and eval cases"
        ACTIONS_GATE = "actions:gate", "Send an outside agent's tool calls through the gate"
        SUBJECTS_ERASE = "subjects:erase", "Erase a data subject's personal values"

    name = models.SlugField(max_length=100, help_text="The integration's name.")
    prefix = models.CharField(max_length=16, unique=True)
    token_hash = models.CharField(max_length=64, help_text="sha256 of the whole token.")
    workflows = models.ManyToManyField(Workflow, related_name="api_tokens", blank=True)
    verbs = models.JSONField(default=list, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(default=600)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "console_apitoken"  # its name from before the move
        ordering = ["name", "-created_at"]
        indexes = [models.Index(fields=["name", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def principal(self) -> str:
        return f"integration:{self.name}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ConfigChange(models.Model):
    """A change to what a workflow's agent may do: a tool added or removed, a cap or an
    allowlist widened or narrowed. Widening is gated (a green regression suite for
    the new configuration and a second manager); narrowing applies at once. Both
    are audited. A model's price (``SET_PRICE``) is the console's, not a workflow's:
    an admin sets it, it applies at once, and its change has no workflow."""

    class Kind(models.TextChoices):
        ADD_TOOL = "add_tool", "Add a tool"
        WIDEN_CAP = "widen_cap", "Widen a cap"
        WIDEN_ALLOWLIST = "widen_allowlist", "Widen an allowlist"
        REMOVE_TOOL = "remove_tool", "Remove a tool"
        NARROW_CAP = "narrow_cap", "Narrow a cap"
        NARROW_ALLOWLIST = "narrow_allowlist", "Narrow an allowlist"
        SET_PRICE = "set_price", "Set a model's price"
        WIDEN_SETTINGS = "widen_settings", "Loosen settings"
        NARROW_SETTINGS = "narrow_settings", "Tighten settings"

    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested"
        APPLIED = "applied", "Applied"
        DECLINED = "declined", "Declined"

    GATED = (Kind.ADD_TOOL, Kind.WIDEN_CAP, Kind.WIDEN_ALLOWLIST, Kind.WIDEN_SETTINGS)

    # Empty for a change that is not one workflow's: a model's price.
    workflow = models.ForeignKey(
        Workflow,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="config_changes",
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.REQUESTED)
    tool = models.CharField(max_length=100, blank=True, help_text="Empty for an allowlist.")
    before = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    after = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    suite = models.JSONField(
        default=dict,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text="The regression suites' results for the new configuration.",
    )
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "console_configchange"  # its name from before the move
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["workflow", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(approved_by__isnull=True)
                | Q(requested_by__isnull=True)
                | ~Q(approved_by=models.F("requested_by")),
                name="configchange_four_eyes",
            ),
        ]

    def __str__(self) -> str:
        scope = self.workflow.slug if self.workflow_id else "console"
        return f"{scope}: {self.kind} {self.tool} ({self.status})"

    @property
    def gated(self) -> bool:
        return self.kind in self.GATED


class ModelPrice(models.Model):
    """What a model costs, in USD per million tokens: input, cached input and output.

    Kept in the database and changed by admins under change control (an audited
    ``ConfigChange``); seeded from ``TENURE_MODEL_PRICES``. A model with no row here is
    *unpriced*: its runs say so, and cost budgets use ``TENURE_FALLBACK_PRICE`` or stop
    the run, never a silent zero."""

    model = models.CharField(max_length=100, unique=True)
    input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    cached_input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    output_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]
        constraints = [
            models.CheckConstraint(
                condition=Q(input_per_mtok__gte=0)
                & Q(cached_input_per_mtok__gte=0)
                & Q(output_per_mtok__gte=0),
                name="modelprice_not_negative",
            ),
        ]

    def __str__(self) -> str:
        prices = (self.input_per_mtok, self.cached_input_per_mtok, self.output_per_mtok)
        return f"{self.model}: " + "/".join(str(p) for p in prices)


class ChatIdentity(models.Model):
    """Which Tenure user a chat account is (admin-managed): a decision made from a chat
    message counts as this user's, under their permissions, or not at all."""

    class Platform(models.TextChoices):
        SLACK = "slack", "Slack"

    platform = models.CharField(max_length=20, choices=Platform.choices, default=Platform.SLACK)
    external_user_id = models.CharField(
        max_length=64, help_text="The chat platform's user id (Slack: U0123ABCD)."
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_identities"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "chat identities"
        constraints = [
            models.UniqueConstraint(
                fields=["platform", "external_user_id"], name="chatidentity_unique_account"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.platform}:{self.external_user_id} → {self.user_id}"


class ChatChannel(models.Model):
    """A workflow's own chat channel (an incoming-webhook URL), instead of the global
    ``TENURE_WEBHOOK_URL``. Admin-managed and audited (the audit keeps the URL's
    host, not the URL: an incoming-webhook URL is a secret)."""

    workflow = models.OneToOneField(Workflow, on_delete=models.CASCADE, related_name="chat_channel")
    webhook_url = models.URLField(max_length=500)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"chat channel of workflow {self.workflow_id}"


class DataSubject(models.Model):
    """A person whose personal values a workflow stores, encrypted under this subject's
    own data key (``governance.privacy``). The key is stored wrapped by the privacy
    master key, which lives outside the database. Erasing the subject destroys the
    wrapped key: every ciphertext of theirs, wherever it was copied, becomes unreadable
    ("crypto-shredding"), and rows that the database keeps append-only stay as they are."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="data_subjects")
    wrapped_key = models.BinaryField(null=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # The last work item that named them: once every kind of record is past its
    # retention since then, retention destroys the key as an erasure would.
    last_seen_at = models.DateTimeField(default=timezone.now)
    erased_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(wrapped_key__isnull=True) | Q(erased_at__isnull=True),
                name="datasubject_erased_has_no_key",
            ),
        ]

    def __str__(self) -> str:
        return f"subject {self.pk}" + (" (erased)" if self.erased_at else "")


class SubjectIdentifier(models.Model):
    """How a subject is found from an identifier (customer id, e-mail, phone): a keyed
    hash of the normalised value, never the value. Deleted when the subject is erased."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="+")
    subject = models.ForeignKey(DataSubject, on_delete=models.CASCADE, related_name="identifiers")
    lookup = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workflow", "lookup"], name="subjectidentifier_unique"),
        ]

    def __str__(self) -> str:
        return f"identifier of subject {self.subject_id}"
