"""Every URL, requested as every role (and anonymously), with GET and POST.

The URL list is read from the resolver, so a new page is covered the day it is
added: it must never answer 5xx, never serve an anonymous visitor, and never let
a reviewer of another workflow see or change this one.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from agents.evals import SuiteStatus
from agents.models import EvalRun, EvalSuite, Execution
from evidence import gate as evidence_gate
from governance.models import AutonomyChange, AutonomyLevel, ConfigChange
from governance.permissions import Role, workflow_grant_role
from reviews.models import Decision
from tests.console.evidence import make_evidence
from tests.factories import EscalationFactory, ProposalFactory, UserFactory, WorkflowFactory

pytestmark = pytest.mark.django_db

# Reachable without a session (each checks its own credentials, or has none to check).
PUBLIC = {
    "login",
    "healthz",
    "readyz",
    "prometheus-metrics",
    "oidc_authentication_init",
    "oidc_authentication_callback",
}
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


@pytest.fixture
def world(roles, monkeypatch):
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
        "config-change-decide": {**slug, "change_id": config_change.pk},
        "work_item_post": slug,
        "work_item_batch_post": slug,
        "action_report": slug,
        "history_post": slug,
        "workflow_metrics_get": slug,
        "export_get": {**slug, "kind": "decisions"},
    }
    return World(kwargs=kwargs, users=users)


def client_as(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


# Routes whose target belongs to the refunds workflow: an outsider must not get through.
def refunds_scoped(name: str, world: World) -> bool:
    return name.rsplit(":", 1)[-1] in world.kwargs


def test_every_route_has_sample_arguments(world):
    """A new route with arguments must be added to the fixture, so it is covered."""
    missing = []
    for name in named_routes():
        try:
            reverse(name, kwargs=args_for(world, name))
        except Exception:  # noqa: BLE001 - any reversal error means "not covered"
            missing.append(name)
    assert missing == []


@pytest.mark.parametrize("role", ["anonymous", "reviewer", "outsider", "manager", "ops", "admin"])
def test_no_route_answers_5xx_and_none_leaks(world, role):
    client = client_as(world.users[role])
    failures = []
    for name in named_routes():
        url = reverse(name, kwargs=args_for(world, name))
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            status = response.status_code
            where = f"{method.upper()} {url} as {role}: {status}"
            if status >= 500 and name != "readyz":
                failures.append(where)
            sent_to_login = status == 302 and response.url.startswith(reverse("login"))
            if (
                role == "anonymous"
                and name not in PUBLIC
                and not url.startswith("/api/")
                and not sent_to_login
            ):
                failures.append(where + " (anonymous not sent to login)")
            api_scoped = url.startswith("/api/v1/workflows/")
            if role == "anonymous" and api_scoped and status not in (401, 405):
                failures.append(where + " (API without a token)")
            if role == "outsider" and refunds_scoped(name, world) and status == 200:
                failures.append(where + " (outsider reached another workflow)")
    assert failures == []


@pytest.mark.parametrize(
    ("role", "name", "expected"),
    [
        ("reviewer", "review-queue", 200),
        ("reviewer", "workflow-promote", 403),
        ("reviewer", "evidence-dashboard", 200),
        ("reviewer", "audit-log", 403),
        ("outsider", "review-queue", 404),
        ("outsider", "workflow-detail", 404),
        ("manager", "workflow-promote", 200),
        ("manager", "review-queue", 403),
        ("manager", "audit-log", 200),
        ("ops", "ops-overview", 200),
        ("ops", "workflow-detail", 200),
        ("ops", "workflow-promote", 403),
        ("admin", "workflow-promote", 200),
        ("admin", "review-queue", 200),
    ],
)
def test_role_sees_what_its_job_needs(world, role, name, expected):
    url = reverse(name, kwargs=args_for(world, name))
    assert client_as(world.users[role]).get(url).status_code == expected


@pytest.mark.parametrize(
    ("role", "expected_paused"), [("reviewer", False), ("manager", False), ("ops", True)]
)
def test_only_ops_can_pull_the_kill_switch(world, role, expected_paused):
    from governance.models import Workflow

    url = reverse("workflow-pause", kwargs={"slug": "refunds"})
    client_as(world.users[role]).post(url, {"reason": "matrix"})
    assert Workflow.objects.get(slug="refunds").paused is expected_paused
