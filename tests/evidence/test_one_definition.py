"""One definition per metric: every screen, the gate, the evidence pack and the API
show the same agreement for the same workflow.

A supervised refunds workflow goes through the real services: reviewers accept
(then the action executes), edit (then it executes) and reject proposals. Some
decisions land on a closed day (the dashboards read those from rollups), one just
before the window (no surface counts it), one in another workflow. The ground truth
is known; each surface must show it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agents.models import Proposal
from agents.services import proposal_execute
from agents.tools import arguments_hash
from evidence import gate as evidence_gate
from evidence import metrics
from governance.api.tokens import api_token_create
from governance.models import ApiToken, AutonomyLevel, Workflow
from governance.permissions import Role, workflow_grant_role
from reviews.claims import claim_proposal
from reviews.models import Decision, RejectReason
from reviews.services import proposal_decide
from tests.agents.stub_openai import GOOD_REFUND, make_refund_workflow
from tests.console.factories import DecisionFactory, backdate
from tests.factories import PASSWORD, ProposalFactory, RunFactory, UserFactory, WorkItemFactory

pytestmark = pytest.mark.django_db

WINDOW_DAYS = 30
# The ground truth inside the window: a different number for each verdict, so a
# swapped column cannot pass.
ACCEPTED, EDITED, REJECTED = 4, 2, 1


@dataclass(frozen=True)
class Shown:
    """What one surface shows of agreement."""

    accepted: int
    edited: int
    rejected: int
    rate_pct: str | None = None  # "57.1", as the page prints it
    low_pct: str | None = None  # the Wilson 95% interval's bounds
    high_pct: str | None = None

    @property
    def counts(self) -> tuple[int, int, int]:
        return (self.accepted, self.edited, self.rejected)


def _pct(value: float) -> str:
    return f"{value * 100:.1f}"


def _refund(workflow: Workflow) -> Proposal:
    arguments = dict(GOOD_REFUND, amount="10.00")
    run = RunFactory(work_item=WorkItemFactory(workflow=workflow))
    return ProposalFactory(
        run=run, tool="create_refund", arguments=arguments, arguments_hash=arguments_hash(arguments)
    )


def _decide(proposal: Proposal, reviewer, verdict: str) -> Proposal:
    claim = claim_proposal(reviewer=reviewer, proposal=proposal)
    assert claim is not None
    extra: dict = {}
    if verdict == Decision.Verdict.EDIT:
        extra["final_arguments"] = dict(proposal.arguments, amount="8.00")
    if verdict == Decision.Verdict.REJECT:
        extra["reason"] = RejectReason.WRONG_AMOUNT
    proposal_decide(
        proposal_id=proposal.pk,
        reviewer=reviewer,
        claim_token=claim.token,
        verdict=verdict,
        **extra,
    )
    if verdict != Decision.Verdict.REJECT:
        proposal_execute(proposal_id=proposal.pk)
    proposal.refresh_from_db()
    return proposal


def _move(proposal: Proposal, at: datetime) -> None:
    """Put a decided proposal (and what led to it) at another time."""
    backdate(proposal.decision, created_at=at)
    backdate(proposal, created_at=at)
    backdate(proposal.run, created_at=at, started_at=at)
    backdate(proposal.work_item, created_at=at)


@pytest.fixture
def supervised(roles):
    # The gate's window is the one the workflow page and the evidence pack show.
    workflow = make_refund_workflow(
        slug="refunds-supervised", level=AutonomyLevel.SUPERVISED, gate_window_days=WINDOW_DAYS
    )
    reviewer = UserFactory(username="rhea")
    reviewer.groups.add(roles[Role.REVIEWER])
    workflow_grant_role(user=reviewer, workflow=workflow, role=Role.REVIEWER)
    manager = UserFactory(username="mika")
    manager.groups.add(roles[Role.MANAGER])
    workflow_grant_role(user=manager, workflow=workflow, role=Role.MANAGER)

    now = timezone.now()
    decided = {
        verdict: [_decide(_refund(workflow), reviewer, verdict) for _ in range(n)]
        for verdict, n in (
            (Decision.Verdict.ACCEPT, ACCEPTED + 1),  # one of them goes before the window
            (Decision.Verdict.EDIT, EDITED),
            (Decision.Verdict.REJECT, REJECTED),
        )
    }
    assert {p.status for p in decided[Decision.Verdict.ACCEPT]} == {Proposal.Status.EXECUTED}
    assert {p.status for p in decided[Decision.Verdict.EDIT]} == {Proposal.Status.EXECUTED}
    assert {p.status for p in decided[Decision.Verdict.REJECT]} == {Proposal.Status.REJECTED}
    # A closed day: the dashboards read it from the rollups.
    closed_day = now - timedelta(days=3)
    for proposal in (
        decided[Decision.Verdict.ACCEPT][0],
        decided[Decision.Verdict.ACCEPT][1],
        decided[Decision.Verdict.EDIT][0],
    ):
        _move(proposal, closed_day)
    # A minute before the window's first day: nothing counts it.
    first_day = metrics.start_of_today(now) - timedelta(days=WINDOW_DAYS - 1)
    _move(decided[Decision.Verdict.ACCEPT][-1], first_day - timedelta(minutes=1))
    # Waiting for review, and another workflow's decision: not agreement either.
    _refund(workflow)
    DecisionFactory(verdict=Decision.Verdict.REJECT, reason=RejectReason.UNSAFE)
    return workflow, manager


def _client(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _html(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def workflow_page(client, workflow: Workflow) -> Shown:
    html = _html(client, reverse("workflow-detail", args=[workflow.slug]))
    counts = re.search(
        r"(\d+) / (\d+) / (\d+)</span><span class=\"tile-label\">accepted / edited / rejected",
        html,
    )
    rate = re.search(r"agreement ([\d.]+)% · 95% interval ([\d.]+)–([\d.]+)%", html)
    assert counts, html
    assert rate, html
    return Shown(*map(int, counts.groups()), *rate.groups())


def dashboard(client, workflow: Workflow) -> Shown:
    url = reverse("evidence-dashboard", args=[workflow.slug]) + f"?days={WINDOW_DAYS}"
    html = _html(client, url)
    counts = [
        int(re.search(rf"(\d+) {verdict}</a>", html).group(1))
        for verdict in ("accepted", "edited", "rejected")
    ]
    rate = re.search(r"<a class=\"tile-num\" href=\"[^\"]*verdict=accept\">([\d.]+)%</a>", html)
    interval = re.search(r"95% interval ([\d.]+)–([\d.]+)%", html)
    return Shown(*counts, rate.group(1), *interval.groups())


def gate(workflow: Workflow) -> Shown:
    evidence = evidence_gate.gate_evaluate(
        workflow=workflow,
        to_level=AutonomyLevel.LIMITED,
        from_level=AutonomyLevel.SUPERVISED,
    )
    criteria = {c.key: c for c in evidence.criteria}
    detail = re.fullmatch(
        r"(\d+) accepted, (\d+) edited, (\d+) rejected \(rate ([\d.]+)%\)",
        criteria["agreement"].detail,
    )
    assert detail, criteria["agreement"].detail
    counts = tuple(map(int, detail.groups()[:3]))
    assert criteria["sample_size"].value == str(sum(counts))
    return Shown(*counts, detail.group(4), criteria["agreement"].value.rstrip("%"))


def evidence_pack(client, workflow: Workflow) -> Shown:
    url = reverse("evidence-pack", args=[workflow.slug]) + f"?format=json&days={WINDOW_DAYS}"
    response = client.get(url)
    assert response.status_code == 200
    m = response.json()["metrics"]
    low, high = m["agreement_interval"]
    assert m["decisions"] == m["accepted"] + m["edited"] + m["rejected"]
    return Shown(
        m["accepted"], m["edited"], m["rejected"], _pct(m["agreement"]), _pct(low), _pct(high)
    )


def api(workflow: Workflow) -> Shown:
    _, token = api_token_create(
        name="metrics-reader",
        workflows=[workflow],
        verbs=[ApiToken.Verb.METRICS_READ],
        actor=None,
        rate_limit_per_minute=600,
    )
    response = Client().get(
        f"/api/v1/workflows/{workflow.slug}/metrics",
        {"days": WINDOW_DAYS},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.content
    a = response.json()["agreement"]
    assert a["n"] == a["accepted"] + a["edited"] + a["rejected"]
    return Shown(
        a["accepted"],
        a["edited"],
        a["rejected"],
        _pct(a["rate"]),
        _pct(a["wilson_low"]),
        _pct(a["wilson_high"]),
    )


def test_every_surface_shows_the_same_agreement_for_a_supervised_workflow(supervised):
    workflow, manager = supervised
    client = _client(manager)
    low, high = metrics.wilson_interval(ACCEPTED, ACCEPTED + EDITED + REJECTED)
    truth = Shown(
        ACCEPTED,
        EDITED,
        REJECTED,
        _pct(ACCEPTED / (ACCEPTED + EDITED + REJECTED)),
        _pct(low),
        _pct(high),
    )
    shown = {
        "workflow page": workflow_page(client, workflow),
        "dashboard": dashboard(client, workflow),
        "gate": gate(workflow),
        "evidence pack": evidence_pack(client, workflow),
        "API": api(workflow),
    }
    assert {name: s.counts for name, s in shown.items()} == dict.fromkeys(shown, truth.counts)
    rates = dict.fromkeys(shown, (truth.rate_pct, truth.low_pct, truth.high_pct))
    rates["gate"] = (truth.rate_pct, truth.low_pct, None)  # the bound it decides on
    assert {name: (s.rate_pct, s.low_pct, s.high_pct) for name, s in shown.items()} == rates


def test_a_post_hoc_sample_counts_in_agreement_and_in_sampled_agreement(supervised):
    """Every decision counts by its verdict, whatever its kind; samples of automatic
    actions are also their own metric, sampled agreement (the breaker's)."""
    workflow, manager = supervised
    client = _client(manager)
    DecisionFactory(
        proposal=_refund(workflow),
        kind=Decision.Kind.SAMPLE,
        verdict=Decision.Verdict.REJECT,
        reason=RejectReason.WRONG_AMOUNT,
    )
    counts = (ACCEPTED, EDITED, REJECTED + 1)
    assert workflow_page(client, workflow).counts == counts
    assert dashboard(client, workflow).counts == counts
    assert gate(workflow).counts == counts
    assert api(workflow).counts == counts
    url = reverse("evidence-pack", args=[workflow.slug]) + f"?format=json&days={WINDOW_DAYS}"
    pack = client.get(url).json()
    assert (pack["metrics"]["accepted"], pack["metrics"]["rejected"]) == (ACCEPTED, REJECTED + 1)
    sampled = pack["sampled_reviews"]
    assert (sampled["total"], sampled["rejected"], sampled["agreement"]) == (1, 1, 0.0)
