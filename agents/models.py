"""What the agent did: work items, runs and their traces, proposals, escalations, executions."""

from __future__ import annotations

from decimal import Decimal

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q, Value

from governance.models import AutonomyLevel, Workflow


class RiskClass(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write"
    MONEY = "money", "Money"
    ACCESS = "access", "Access change"
    EXTERNAL_MESSAGE = "external_message", "External message"
    DELETE = "delete", "Delete"


# Classes that always need a human approval, whatever the autonomy level.
HIGH_IMPACT_RISKS = frozenset({RiskClass.ACCESS, RiskClass.EXTERNAL_MESSAGE, RiskClass.DELETE})


class WorkItemQuerySet(models.QuerySet):
    def open(self) -> WorkItemQuerySet:
        return self.exclude(status__in=WorkItem.TERMINAL)


class WorkItem(models.Model):
    class Source(models.TextChoices):
        API = "api", "API"
        CONSOLE = "console", "Console"
        COMMAND = "command", "Command"
        DEMO = "demo", "Demo seed"
        IMPORT = "import", "Imported history"

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        RUNNING = "running", "Agent running"
        AWAITING_REVIEW = "awaiting_review", "Awaiting review"
        ESCALATED = "escalated", "Escalated"
        EXECUTING = "executing", "Executing"
        RESOLVED = "resolved", "Resolved"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    TERMINAL = (Status.RESOLVED, Status.FAILED, Status.CANCELLED)

    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="work_items")
    external_id = models.CharField(max_length=200)
    title = models.CharField(max_length=300, blank=True)
    payload = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.API)
    source_principal = models.CharField(max_length=150, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RECEIVED)
    succeeded = models.BooleanField(
        null=True, blank=True, help_text="Set when resolved: did the item end in a good outcome?"
    )
    sla_due_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    objects = WorkItemQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "external_id"], name="workitem_unique_external_id"
            ),
        ]
        indexes = [
            models.Index(fields=["workflow", "status", "created_at"]),
            # The dashboard's live slice of today's outcomes.
            models.Index(fields=["workflow", "resolved_at"], name="workitem_resolved_at"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow.slug}/{self.external_id}"

    @property
    def text(self) -> str:
        """The untrusted free text the item carries (shown escaped, prompted as data)."""
        return str(self.payload.get("text", "")) if isinstance(self.payload, dict) else ""


class Run(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        PROPOSED = "proposed", "Proposed"
        ESCALATED = "escalated", "Escalated"
        FAILED = "failed", "Failed"

    class StopReason(models.TextChoices):
        COMPLETED = "completed", "Completed with proposals"
        NO_ACTION = "no_action", "Agent proposed no action"
        BUDGET_TOOL_CALLS = "budget_tool_calls", "Tool-call budget"
        BUDGET_TOKENS = "budget_tokens", "Token budget"
        BUDGET_SECONDS = "budget_seconds", "Wall-clock budget"
        BUDGET_COST = "budget_cost", "Cost budget"
        BUDGET_DAILY = "budget_daily", "Workflow daily budget"
        LOOP = "loop", "Loop detected"
        INVALID_ARGUMENTS = "invalid_arguments", "Invalid tool arguments"
        UNGRANTED_TOOL = "ungranted_tool", "Tool not granted"
        POLICY_DENIED = "policy_denied", "Denied by policy"
        PAUSED = "paused", "Workflow paused"
        MODEL_ERROR = "model_error", "Model error"
        REFUSAL = "refusal", "Model refused"
        UNPRICED_MODEL = "unpriced_model", "Model has no price"
        CRASHED = "crashed", "Crashed on every attempt (dead letter)"

    BUDGET_REASONS = (
        StopReason.BUDGET_TOOL_CALLS,
        StopReason.BUDGET_TOKENS,
        StopReason.BUDGET_SECONDS,
        StopReason.BUDGET_COST,
        StopReason.BUDGET_DAILY,
        StopReason.LOOP,
    )

    work_item = models.ForeignKey(WorkItem, on_delete=models.CASCADE, related_name="runs")
    attempt = models.PositiveSmallIntegerField(default=1)
    starts = models.PositiveSmallIntegerField(
        default=0,
        db_default=0,
        help_text="Times a worker took this run up (its first start and each restart after "
        "a crash or a lost worker); at TENURE_RUN_MAX_ATTEMPTS it ends as a dead letter.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    stop_reason = models.CharField(max_length=24, choices=StopReason.choices, blank=True)
    autonomy_level = models.CharField(
        max_length=16,
        choices=AutonomyLevel.choices,
        help_text="The workflow's level when the run started.",
    )
    model = models.CharField(max_length=100, blank=True)
    agent_version = models.CharField(max_length=40, blank=True)
    prompt_version = models.CharField(max_length=40, blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    # Database defaults too, so bulk loads that predate the column keep working.
    tokens_cached = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Input tokens the endpoint served from its prompt cache."
    )
    tokens_out = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    unpriced = models.BooleanField(
        default=False,
        db_default=False,
        help_text="A model call had no price: its cost is the fallback price's, or unknown.",
    )
    tool_cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    tool_calls = models.PositiveIntegerField(default=0)
    retries = models.PositiveIntegerField(default=0)
    cache_hits = models.PositiveIntegerField(default=0)
    cache_misses = models.PositiveIntegerField(default=0)
    wall_ms = models.PositiveIntegerField(default=0)
    state = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["work_item", "attempt"], name="run_one_per_attempt"),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"]),
            # The dashboard's unpriced-runs note: the few runs that met a model with no
            # price, without reading every run of the last weeks.
            models.Index(
                fields=["created_at"],
                condition=Q(unpriced=True) | Q(stop_reason="unpriced_model"),
                name="run_unpriced_created_at",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.work_item}"

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out


class Step(models.Model):
    """One entry of a run's trace. Inputs and outputs are stored redacted."""

    class Kind(models.TextChoices):
        MODEL_CALL = "model_call", "Model call"
        TOOL_CALL = "tool_call", "Tool call"
        VALIDATION = "validation", "Validation"
        POLICY = "policy", "Policy"
        BUDGET = "budget", "Budget"
        RETRIEVAL = "retrieval", "Retrieval"
        NOTE = "note", "Note"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    index = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=120)
    input = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    output = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    error = models.TextField(blank=True)
    is_retry = models.BooleanField(default=False)
    cached = models.BooleanField(default=False)
    model = models.CharField(max_length=100, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_cached = models.PositiveIntegerField(default=0, db_default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    unpriced = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "index"], name="step_unique_index_in_run"),
        ]
        # The dashboard's live slice of today's tool calls and errors.
        indexes = [models.Index(fields=["kind", "created_at"], name="step_kind_created_at")]

    def __str__(self) -> str:
        return f"{self.run_id}.{self.index} {self.kind} {self.name}"


class ProposalQuerySet(models.QuerySet):
    def pending(self) -> ProposalQuerySet:
        return self.filter(status=Proposal.Status.PENDING)

    def awaiting_review(self) -> ProposalQuerySet:
        return self.filter(**Proposal.AWAITING_REVIEW)

    def awaiting_sample(self) -> ProposalQuerySet:
        return self.filter(**Proposal.AWAITING_SAMPLE, decision__isnull=True)


class Proposal(models.Model):
    class Verdict(models.TextChoices):
        ALLOW = "allow", "Allow"
        NEEDS_APPROVAL = "needs_approval", "Needs approval"
        DENY = "deny", "Deny"

    class Status(models.TextChoices):
        PENDING = "pending", "Awaiting review"
        ACCEPTED = "accepted", "Accepted"
        EDITED = "edited", "Edited"
        REJECTED = "rejected", "Rejected"
        EXECUTED = "executed", "Executed"
        EXECUTION_FAILED = "execution_failed", "Execution failed"
        CANCELLED = "cancelled", "Cancelled"

    DECIDED = (Status.ACCEPTED, Status.EDITED, Status.REJECTED)
    # What the reviewers' queues hold, defined once (the ORM's querysets above and the
    # hand-written statements in reviews.sql are both built from these):
    # awaiting review, a pending action waiting for a human before it may run (an
    # auto-allowed one on its way to execution is pending too, but not theirs to
    # decide); awaiting a sample review, an action that executed on its own and was
    # picked for post-hoc review, with no decision yet.
    AWAITING_REVIEW = {"status": Status.PENDING, "auto_executed": False}
    AWAITING_SAMPLE = {"status": Status.EXECUTED, "sampled_for_review": True}

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="proposals")
    # Denormalised from the run so queue queries touch one table.
    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="proposals")
    work_item = models.ForeignKey(WorkItem, on_delete=models.CASCADE, related_name="proposals")
    sequence = models.PositiveSmallIntegerField(default=1, help_text="Position in the run's plan.")
    tool = models.CharField(max_length=100)
    arguments = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    arguments_hash = models.CharField(max_length=64)
    rationale = models.TextField(blank=True)
    confidence = models.DecimalField(max_digits=4, decimal_places=3, null=True, blank=True)
    citations = models.JSONField(default=list, blank=True, encoder=DjangoJSONEncoder)
    risk_class = models.CharField(max_length=20, choices=RiskClass.choices)
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    verdict_rule = models.TextField(help_text="The rule text that produced the verdict.")
    # Where each sensitive argument came from (agents.provenance):
    # {"$.amount": {"role": "money", "value": "42.00", "source": "tool_output:get_order#step2"}}
    # An empty object in the database too, so bulk loads that predate it keep working.
    provenance = models.JSONField(
        default=dict,
        db_default=Value({}, output_field=models.JSONField()),
        blank=True,
        encoder=DjangoJSONEncoder,
    )
    injection_flags = models.JSONField(default=list, blank=True)
    flagged_injection = models.BooleanField(default=False)
    autonomy_level = models.CharField(
        max_length=16,
        choices=AutonomyLevel.choices,
        help_text="The tool's effective level when the proposal was made.",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    auto_executed = models.BooleanField(default=False)
    sampled_for_review = models.BooleanField(default=False)
    priority = models.SmallIntegerField(
        default=0, help_text="Higher first: high-risk actions and items near their SLA."
    )
    sla_due_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    objects = ProposalQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "sequence"], name="proposal_unique_sequence_in_run"
            ),
        ]
        indexes = [
            # The reviewer queue: pending items of a workflow, by priority then age.
            models.Index(
                fields=["workflow", "-priority", "created_at"],
                condition=Q(status="pending"),
                name="proposal_queue_idx",
            ),
            models.Index(fields=["workflow", "status", "decided_at"]),
            models.Index(fields=["work_item", "sequence"]),
        ]

    def __str__(self) -> str:
        return f"proposal {self.pk}: {self.tool}"


class Escalation(models.Model):
    class Reason(models.TextChoices):
        BUDGET = "budget", "Budget tripped"
        LOOP = "loop", "Loop detected"
        INVALID_ARGUMENTS = "invalid_arguments", "Invalid arguments after retry"
        UNGRANTED_TOOL = "ungranted_tool", "Tool not granted"
        POLICY_DENIED = "policy_denied", "Denied by policy"
        PAUSED = "paused", "Workflow paused mid-run"
        MODEL_ERROR = "model_error", "Model error"
        HARD_CASE = "hard_case", "Agent could not decide"
        EXECUTION_FAILED = "execution_failed", "Execution failed"
        DEAD_LETTER = "dead_letter", "Run crashed on every attempt (dead letter)"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"

    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="escalations")
    work_item = models.ForeignKey(WorkItem, on_delete=models.CASCADE, related_name="escalations")
    run = models.ForeignKey(
        Run, on_delete=models.CASCADE, null=True, blank=True, related_name="escalations"
    )
    reason = models.CharField(max_length=24, choices=Reason.choices)
    detail = models.TextField(blank=True)
    packet = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(
                fields=["workflow", "created_at"],
                condition=Q(status="open"),
                name="escalation_open_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"escalation {self.pk}: {self.reason}"


class Execution(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    proposal = models.ForeignKey(Proposal, on_delete=models.PROTECT, related_name="executions")
    idempotency_key = models.CharField(max_length=100, unique=True)
    arguments = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    arguments_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    result = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    error = models.TextField(blank=True)
    principal = models.CharField(max_length=150, blank=True)
    auto = models.BooleanField(default=False, help_text="Executed without a human approval.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"execution {self.idempotency_key} ({self.status})"


# --- Context and identity -----------------------------------------------------


class KnowledgeDocument(models.Model):
    """A workflow's policies, runbooks and FAQ, searched by the agent's read tool."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="documents")
    slug = models.SlugField(max_length=100)
    title = models.CharField(max_length=200)
    body = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workflow", "title"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "slug"], name="document_unique_slug"),
        ]

    def __str__(self) -> str:
        return self.title


class ConnectorCredential(models.Model):
    """A workflow's secret for one connector, encrypted at rest and never shown again."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="credentials")
    name = models.SlugField(max_length=100)
    ciphertext = models.BinaryField()
    fingerprint = models.CharField(
        max_length=16, help_text="Last characters of a hash, to tell keys apart."
    )
    version = models.PositiveIntegerField(default=1)
    rotated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workflow", "name"], name="credential_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow.slug}:{self.name} v{self.version}"


class ToolDefinition(models.Model):
    """A tool registered from an OpenAI function definition (JSON schema), handled by
    an HTTP connector: an existing agent's tools in shadow mode without Python."""

    workflow = models.ForeignKey(
        Workflow, on_delete=models.CASCADE, related_name="tool_definitions"
    )
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    parameters = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    risk_class = models.CharField(max_length=20, choices=RiskClass.choices)
    endpoint_url = models.URLField(max_length=500)
    credential_name = models.SlugField(max_length=100, blank=True)
    untrusted_output = models.BooleanField(
        default=False,
        help_text="Its output carries text someone outside typed (a ticket body, an email): "
        "scanned for injections, and never grounds a sensitive argument.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workflow", "name"], name="tooldefinition_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow.slug}:{self.name}"


# --- Regression evals ---------------------------------------------------------------


class EvalSuite(models.Model):
    """A workflow's set of regression cases, replayed against each agent version."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="eval_suites")
    name = models.SlugField(max_length=100, default="regression")
    description = models.TextField(blank=True)
    threshold = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.900"),
        help_text="Least share of cases that must agree for a run to pass (0 to 1).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["workflow", "name"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "name"], name="evalsuite_unique_name"),
            models.CheckConstraint(
                condition=Q(threshold__gte=0) & Q(threshold__lte=1),
                name="evalsuite_threshold_0_to_1",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workflow.slug}/{self.name}"


class EvalCase(models.Model):
    """One work item with the world as the agent saw it and the answer a human gave.

    ``expected_outcome`` says how the replay is judged: ``act`` needs exactly the
    expected actions (any call of a tool whose rejected call is in ``forbidden_actions``
    is not judged); ``escalate`` needs no action at all; ``avoid`` needs none of the
    forbidden actions, whatever else happens.
    """

    class Source(models.TextChoices):
        DECISION = "decision", "Reviewer decision"
        ESCALATION = "escalation", "Escalation resolution"
        MANUAL = "manual", "Manual or seeded"
        ADVERSARIAL = "adversarial", "Adversarial"

    class Outcome(models.TextChoices):
        ACT = "act", "Propose exactly these actions"
        ESCALATE = "escalate", "Propose nothing; a human decides"
        AVOID = "avoid", "Never propose the forbidden actions"

    suite = models.ForeignKey(EvalSuite, on_delete=models.CASCADE, related_name="cases")
    name = models.CharField(max_length=200)
    source = models.CharField(max_length=16, choices=Source.choices)
    source_proposal = models.ForeignKey(
        "Proposal", on_delete=models.SET_NULL, null=True, blank=True, related_name="eval_cases"
    )
    source_escalation = models.ForeignKey(
        "Escalation", on_delete=models.SET_NULL, null=True, blank=True, related_name="eval_cases"
    )
    external_id = models.CharField(max_length=200, help_text="The source work item's id.")
    title = models.CharField(max_length=300, blank=True)
    payload = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    recorded_outputs = models.JSONField(
        default=list,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text="[{tool, arguments, output}] served in place of live read tools.",
    )
    expected_outcome = models.CharField(max_length=16, choices=Outcome.choices)
    expected_actions = models.JSONField(
        default=list, blank=True, encoder=DjangoJSONEncoder, help_text="[{tool, arguments, ignore}]"
    )
    forbidden_actions = models.JSONField(
        default=list, blank=True, encoder=DjangoJSONEncoder, help_text="[{tool, arguments?}]"
    )
    tags = models.JSONField(default=list, blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["suite", "pk"]
        constraints = [
            # One case per source decision or escalation and suite: a second click is a no-op.
            models.UniqueConstraint(
                fields=["suite", "source_proposal"],
                condition=Q(source_proposal__isnull=False),
                name="evalcase_unique_proposal",
            ),
            models.UniqueConstraint(
                fields=["suite", "source_escalation"],
                condition=Q(source_escalation__isnull=False),
                name="evalcase_unique_escalation",
            ),
            models.UniqueConstraint(fields=["suite", "name"], name="evalcase_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.suite}: {self.name}"


class EvalRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        PASSED = "pass", "Pass"
        FAILED = "fail", "Fail"

    suite = models.ForeignKey(EvalSuite, on_delete=models.CASCADE, related_name="runs")
    agent_version = models.CharField(max_length=40)
    prompt_version = models.CharField(max_length=40, blank=True)
    model = models.CharField(max_length=100, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    cases = models.PositiveIntegerField(default=0)
    passed = models.PositiveIntegerField(default=0)
    agreement = models.DecimalField(max_digits=4, decimal_places=3, default=Decimal("0"))
    threshold = models.DecimalField(max_digits=4, decimal_places=3, default=Decimal("0"))
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.RUNNING)
    report = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    created_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]
        indexes = [
            models.Index(
                fields=["suite", "agent_version", "-started_at"], name="evalrun_suite_version_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"eval run {self.pk} of {self.suite} ({self.status})"


class EvalCaseResult(models.Model):
    run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="results")
    # SET_NULL keeps a report readable after a case is deleted from the suite.
    case = models.ForeignKey(
        EvalCase, on_delete=models.SET_NULL, null=True, blank=True, related_name="results"
    )
    case_name = models.CharField(max_length=200)
    passed = models.BooleanField()
    regressed = models.BooleanField(default=False)
    expected = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    actual = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    diff = models.JSONField(default=list, blank=True, encoder=DjangoJSONEncoder)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["run", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "case"],
                condition=Q(case__isnull=False),
                name="evalcaseresult_unique_case",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.case_name}: {'pass' if self.passed else 'fail'}"


# --- Outside agents ----------------------------------------------------------------


class GateCall(models.Model):
    """One tool call an outside agent sent to the gate (API or MCP), idempotent on
    (workflow, Idempotency-Key). The call is recorded as a work item with a run and
    its proposal (or, when policy denies it, an escalation), so it joins the same
    queues, metrics, gate and audit as Tenure's own agent; this row keeps what the
    outside agent sent and ties its retries to that record."""

    class Channel(models.TextChoices):
        API = "api", "Gate API"
        MCP = "mcp", "MCP gateway"

    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="gate_calls")
    idempotency_key = models.CharField(max_length=200)
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.API)
    agent_run_id = models.CharField(max_length=200)
    step_id = models.CharField(max_length=200, blank=True)
    tool = models.CharField(max_length=100)
    request_hash = models.CharField(
        max_length=64, help_text="sha256 of the call as sent: a retry must send the same."
    )
    work_item = models.OneToOneField(
        WorkItem, on_delete=models.CASCADE, related_name="gate_call", null=True, blank=True
    )
    proposal = models.OneToOneField(
        Proposal, on_delete=models.CASCADE, related_name="gate_call", null=True, blank=True
    )
    denied_rule = models.TextField(blank=True)
    callback_url = models.URLField(max_length=500, blank=True)
    callback_sent_at = models.DateTimeField(null=True, blank=True)
    principal = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "idempotency_key"], name="gatecall_unique_key"
            ),
        ]
        indexes = [models.Index(fields=["workflow", "agent_run_id"], name="gatecall_agent_run")]

    def __str__(self) -> str:
        return f"gate call {self.idempotency_key} ({self.tool})"
