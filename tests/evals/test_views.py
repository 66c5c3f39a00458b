from __future__ import annotations

import csv
import io
import json

import pytest
from django.urls import reverse

from agents.evals import eval_case_from_decision, eval_suite_run
from agents.models import Escalation, EvalCase
from demo.workflows import ACCESS, REFUNDS
from governance import privacy
from governance.models import AuditEvent
from governance.permissions import Role, workflow_grant_role
from reviews.models import Decision
from tests.conftest import login
from tests.evals.conftest import decide, resolve, run_item
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


def _user(roles, username: str, role: str, workflow=None):
    user = UserFactory(username=username)
    user.groups.add(roles[role])
    if workflow is not None:
        workflow_grant_role(user=user, workflow=workflow, role=role)
    return user


@pytest.fixture
def rita(roles, refunds):
    return _user(roles, "rita", Role.REVIEWER, refunds)


@pytest.fixture
def otto(roles):
    return _user(roles, "otto", Role.OPS)


@pytest.fixture
def decided(refunds, rita):
    run = run_item(refunds, 0)
    return [decide(p, rita, Decision.Verdict.ACCEPT) for p in run.proposals.order_by("sequence")]


@pytest.fixture
def eval_run(decided, rita):
    case, _ = eval_case_from_decision(decision=decided[0], actor=rita)
    return eval_suite_run(suite=case.suite, agent_version="demo-regressed")


def test_add_to_regression_suite_is_one_post(refunds, rita, decided):
    client = login(rita)
    url = reverse("eval-add-proposal", args=[decided[0].proposal_id])
    response = client.post(url, {"next": "/w/refunds/queue/"})
    assert response.status_code == 302
    assert response["Location"] == "/w/refunds/queue/"
    case = EvalCase.objects.get()
    assert case.source_proposal_id == decided[0].proposal_id
    assert case.created_by == "rita"
    # A second click is harmless; htmx gets the fragment.
    response = client.post(url, **HX)
    assert response.status_code == 200
    assert "already in suite" in response.content.decode()
    assert EvalCase.objects.count() == 1


def test_add_redirects_only_to_this_site(refunds, rita, decided):
    response = login(rita).post(
        reverse("eval-add-proposal", args=[decided[0].proposal_id]),
        {"next": "https://evil.example/"},
    )
    assert response["Location"] == reverse("evals", args=[REFUNDS])


def test_add_escalation_with_htmx_returns_the_added_fragment(refunds, rita):
    run = run_item(refunds, 3)
    escalation = Escalation.objects.get(run=run)
    resolve(escalation, rita)
    response = login(rita).post(reverse("eval-add-escalation", args=[escalation.pk]), **HX)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Added to the regression suite" in body
    assert "<html" not in body
    assert EvalCase.objects.get().expected_outcome == EvalCase.Outcome.ESCALATE


def test_add_refuses_undecided_proposals_and_unknown_ids(refunds, rita):
    run = run_item(refunds, 0)
    client = login(rita)
    proposal = run.proposals.first()
    response = client.post(reverse("eval-add-proposal", args=[proposal.pk]))
    assert response.status_code == 409
    assert "has no decision yet" in response.content.decode()
    assert client.post(reverse("eval-add-proposal", args=[999999])).status_code == 404
    assert client.post(reverse("eval-add-escalation", args=[999999])).status_code == 404
    assert client.get(reverse("eval-add-proposal", args=[proposal.pk])).status_code == 405
    decide(proposal, rita, Decision.Verdict.ACCEPT)
    response = client.post(reverse("eval-add-proposal", args=[proposal.pk]), {"suite": "nope"})
    assert response.status_code == 404
    assert not EvalCase.objects.exists()


def test_add_needs_review_or_manage_and_hides_other_workflows(roles, demo, refunds, decided, otto):
    url = reverse("eval-add-proposal", args=[decided[0].proposal_id])
    # Ops may view every workflow but neither reviews nor manages it.
    response = login(otto).post(url)
    assert response.status_code == 403
    assert "Only reviewers and managers" in response.content.decode()
    stranger = _user(roles, "sam", Role.REVIEWER, demo[ACCESS])
    assert login(stranger).post(url).status_code == 404
    manager = _user(roles, "mona", Role.MANAGER, refunds)
    assert login(manager).post(url).status_code == 302
    assert EvalCase.objects.count() == 1


def test_suites_page_shows_runs_and_the_latest_report(refunds, rita, eval_run):
    response = login(rita).get(reverse("evals", args=[REFUNDS]))
    assert response.status_code == 200
    body = response.content.decode()
    assert f"#{eval_run.pk}" in body
    assert "demo-regressed" in body
    assert "create_refund: amount expected" in body  # expected vs actual, per case
    assert "Never run." not in body
    assert "HX-Request" in response["Vary"]


def test_suites_page_permissions_and_unknown_suite(roles, demo, refunds, eval_run, otto):
    assert login(otto).get(reverse("evals", args=[REFUNDS])).status_code == 200
    stranger = _user(roles, "sam", Role.REVIEWER, demo[ACCESS])
    assert login(stranger).get(reverse("evals", args=[REFUNDS])).status_code == 404
    response = login(otto).get(reverse("evals", args=[REFUNDS]) + "?suite=nope")
    assert response.status_code == 404
    assert login(otto).get(reverse("evals", args=["no-such"])).status_code == 404


def test_suites_page_cases_partial_for_htmx(refunds, rita, eval_run):
    response = login(rita).get(reverse("evals", args=[REFUNDS]) + "?suite=regression", **HX)
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<table class="grid compact" id="eval-cases">')
    assert "demo-refunds-0000" in body


def test_run_page_shows_expected_vs_actual(refunds, rita, eval_run, demo, roles):
    client = login(rita)
    url = reverse("eval-run", args=[REFUNDS, eval_run.pk])
    response = client.get(url)
    body = response.content.decode()
    assert response.status_code == 200
    assert "create_refund(amount=&#x27;89.99&#x27;, order_number=&#x27;A-1001&#x27;)" in body
    assert "differs" in body or "regressed" in body
    partial = client.get(url + "?show=failing", **HX).content.decode()
    assert partial.lstrip().startswith('<table class="grid compact" id="eval-results">')
    assert client.get(reverse("eval-run", args=[REFUNDS, 999999])).status_code == 404
    # A run of another workflow is not found under this one.
    other = _user(roles, "sam", Role.REVIEWER, demo[ACCESS])
    assert login(other).get(url).status_code == 404
    assert client.get(reverse("eval-run", args=[ACCESS, eval_run.pk])).status_code == 404


def test_cases_export_jsonl_and_csv_redacted_and_audited(refunds, rita, eval_run):
    client = login(rita)
    response = client.get(reverse("eval-cases-export", args=[REFUNDS, "jsonl"]))
    assert response.status_code == 200
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert len(rows) == 1
    assert rows[0]["external_id"] == "demo-refunds-0000"
    assert "@" not in json.dumps(rows[0]["recorded_outputs"])  # e-mails are redacted
    # The demo's refunds workflow declares the reply's address personal: a token, no value.
    assert privacy.TOKEN_RE.fullmatch(rows[0]["expected_actions"][1]["arguments"]["to"])
    response = client.get(reverse("eval-cases-export", args=[REFUNDS, "csv"]))
    text = b"".join(response.streaming_content).decode()
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["expected_outcome"] == "act"
    assert AuditEvent.objects.filter(action="export.eval_cases").count() == 2
    assert client.get(reverse("eval-cases-export", args=[REFUNDS, "xml"])).status_code == 404
