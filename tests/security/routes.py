"""What the route-walking security tests share: every named route, sample arguments for each, and
a world of workflows and users in every role to request them as."""

from __future__ import annotations

from dataclasses import dataclass

from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from agents.evals import SuiteStatus
from agents.models import EvalRun, EvalSuite, Execution
from evidence import gate as evidence_gate
from governance.models import AutonomyChange, AutonomyLevel, ConfigChange
from governance.permissions import Role, workflow_grant_role
from reviews.models import Decision
from tests.console.evidence import make_evidence
from tests.factories import EscalationFactory, ProposalFactory, UserFactory, WorkflowFactory

# Reachable without a session (each checks its own credentials, or has none to check).
PUBLIC = {
    "login",
    "healthz",
    "readyz",
    "prometheus-metrics",
    "oidc_authentication_init",
    "oidc_authentication_callback",
    "slack-actions",  # Slack's signed webhook: a signature, not a session (tests/chat)
}
# Endpoints called by other systems with their own proof, not by a signed-in browser.
WEBHOOKS = {"slack-actions"}
SKIP = {"docs-asset", "api-root"}  # file assets and the API's catch-all 404


def named_routes() -> list[str]:
    """Every named route, namespaced where it lives in a namespace (the API's)."""

    def walk(patterns, namespace=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                if getattr(p, "app_name", None) == "admin":
                    continue
                inner = f"{namespace}{p.namespace}:" if p.namespace else namespace
                yield from walk(p.url_patterns, inner)
            elif isinstance(p, URLPattern) and p.name and p.name not in SKIP:
                yield namespace + p.name

    return sorted(set(walk(get_resolver().url_patterns)))


def args_for(world, name: str) -> dict:
    return world.kwargs.get(name.rsplit(":", 1)[-1], {})


@dataclass
class World:
    kwargs: dict[str, dict]
    users: dict[str, object]


def world_build(roles, monkeypatch) -> World:
    monkeypatch.setattr(evidence_gate, "regression_status", lambda wf: SuiteStatus(True, "green"))
    refunds = WorkflowFactory(slug="refunds", name="Refunds", autonomy_level=AutonomyLevel.LIMITED)
    access = WorkflowFactory(slug="access", name="Access")
    users = {"anonymous": None}
    for name, role, workflows in (
        ("reviewer", Role.REVIEWER, [refunds]),
        ("outsider", Role.REVIEWER, [access]),
        ("manager", Role.MANAGER, [refunds]),
        ("ops", Role.OPS, []),
        ("admin", Role.ADMIN, []),
    ):
        user = UserFactory(username=f"matrix-{name}")
        user.groups.add(roles[role])
        for workflow in workflows:
            workflow_grant_role(user=user, workflow=workflow, role=role)
        users[name] = user
    pending = ProposalFactory(run__work_item__workflow=refunds)
    decided = make_evidence(refunds, accepted=1)[0].proposal
    execution = Execution.objects.create(
        proposal=decided, idempotency_key="matrix-1", arguments_hash="x" * 64
    )
    escalation = EscalationFactory(work_item__workflow=refunds)
    change = AutonomyChange.objects.create(
        workflow=refunds,
        kind=AutonomyChange.Kind.PROMOTION,
        from_level=AutonomyLevel.LIMITED,
        to_level=AutonomyLevel.AUTONOMOUS,
        requested_by=users["admin"],
    )
    config_change = ConfigChange.objects.create(
        workflow=refunds,
        kind=ConfigChange.Kind.ADD_TOOL,
        tool="draft_customer_reply",
        after={"tool": "draft_customer_reply", "caps": {}},
        requested_by=users["admin"],
    )
    suite = EvalSuite.objects.create(workflow=refunds, name="regression")
    run = EvalRun.objects.create(suite=suite, agent_version="v", started_at=timezone.now())
    slug = {"slug": "refunds"}
    kwargs = {
        "workflow-detail": slug,
        "workflow-promote": slug,
        "workflow-pause": slug,
        "workflow-resume": slug,
        "workflow-change-level": slug,
        "autonomy-change-approve": {**slug, "change_id": change.pk},
        "evidence-dashboard": slug,
        "evidence-rows": slug,
        "evidence-pack": slug,
        "explain-proposal": {"proposal_id": decided.pk},
        "explain-execution": {"execution_id": execution.pk},
        "review-queue": slug,
        "review-queue-counts": slug,
        "review-card": {**slug, "proposal_id": pending.pk},
        "review-decide": {**slug, "proposal_id": pending.pk},
        "review-reject-rest": {**slug, "proposal_id": pending.pk},
        "review-undo": {**slug, "decision_id": Decision.objects.get(proposal=decided).pk},
        "review-escalations": slug,
        "review-escalation": {**slug, "escalation_id": escalation.pk},
        "evals": slug,
        "eval-run": {**slug, "run_id": run.pk},
        "eval-cases-export": {**slug, "fmt": "csv"},
        "eval-add-proposal": {"proposal_id": decided.pk},
        "eval-add-escalation": {"escalation_id": escalation.pk},
        "workflow-export": {**slug, "kind": "decisions", "fmt": "csv"},
        "workflow-changes": slug,
        "tool-import": slug,
        "config-change-decide": {**slug, "change_id": config_change.pk},
        "work_item_post": slug,
        "work_item_batch_post": slug,
        "action_report": slug,
        "history_post": slug,
        "workflow_metrics_get": slug,
        "export_get": {**slug, "kind": "decisions"},
        "gate_call_post": slug,
        "gate_call_read": {**slug, "call_id": 1},
        "subject_erase_post": slug,
    }
    return World(kwargs=kwargs, users=users)


def client_as(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client
