"""Evidence that matches what really happened, on multi-step plans.

A generator builds work items whose ground truth is known: what the agent proposed
(a plan of one to three actions, or nothing) and what the human really did. The
items go through the real paths — reviewers deciding in the console at shadow and at
supervised (a rejected middle step in both), reports of the human's actions
(retried, and one conflicting), escalations the human closed or acted on, an action
cancelled after an earlier one failed, one still waiting, and imported history.

The test pairs each plan with the human's actions on its own (same tool and same
arguments: exact; same tool, other arguments: edited; a proposal left over: extra;
a human action left over: missed) and asserts that the dashboard, the workflow page,
the metrics API, the evidence pack and the gate report exactly those counts.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agents import states
from agents.models import Proposal, WorkItem
from agents.tools import arguments_hash
from evidence import gate as evidence_gate
from evidence import metrics
from governance.api.tokens import api_token_create
from governance.models import ApiToken, AutonomyLevel, ToolGrant, Workflow
from governance.permissions import Role, workflow_grant_role
from reviews.claims import claim_proposal
from reviews.models import Decision, EscalationResolution, RejectReason
from reviews.services import escalation_resolve, plan_reject_rest, proposal_decide
from tests.agents.stub_openai import make_refund_workflow
from tests.factories import (
    PASSWORD,
    EscalationFactory,
    ProposalFactory,
    RunFactory,
    UserFactory,
    WorkItemFactory,
)

pytestmark = pytest.mark.django_db

WINDOW_DAYS = 30
REFUND, REPLY = "create_refund", "draft_customer_reply"


def refund(amount: str, reason: str = "Arrived broken") -> tuple[str, dict[str, Any]]:
    return (REFUND, {"order_number": "A-1001", "amount": amount, "reason": reason})


def reply(body: str) -> tuple[str, dict[str, Any]]:
    return (
        REPLY,
        {
            "to": "cora@example.com",
            "subject": "Your order A-1001",
            "body": body,
            "order_number": "A-1001",
        },
    )


@dataclass
class Item:
    """One generated work item and its ground truth."""

    name: str
    proposed: list[tuple[str, dict[str, Any]]]
    human: list[tuple[str, dict[str, Any]]]
    channel: str  # console | reject_rest | report | escalation | import | cancelled | waiting
    level: str = AutonomyLevel.SHADOW
    complete: bool = True  # the human's account of the item is complete
    proposals: list[Proposal] = field(default_factory=list)


def generate() -> list[Item]:
    """The scenarios, each a distinct shape of plan against what the human did."""
    return [
        # Console at shadow.
        Item("all exact", [refund("42.00"), reply("Refunded.")], [], "console"),
        Item("one edit", [refund("42.00"), reply("Refunded.")], [], "console"),
        # A rejected middle step at shadow cancels nothing: each action is judged.
        Item(
            "rejected middle at shadow",
            [refund("20.00"), reply("Wrong words."), refund("22.00", "Late")],
            [refund("20.00"), refund("22.00", "Late")],
            "console",
        ),
        # Reports of what the human did (shadow).
        Item(
            "report, same set in another order",
            [refund("30.00"), reply("Refund on its way.")],
            [reply("Refund on its way."), refund("30.00")],
            "report",
        ),
        Item(
            "report, an edit and a missed reply",
            [refund("50.00")],
            [refund("45.00"), reply("We refunded part of it.")],
            "report",
        ),
        Item(
            "report, every proposal right but a step missed",
            [refund("35.00")],
            [refund("35.00"), reply("Refunded, sorry for the wait.")],
            "report",
        ),
        Item("report, the human did nothing", [refund("10.00"), reply("Done.")], [], "report"),
        Item("report, both did nothing", [], [], "report"),
        Item("report, agent proposed nothing", [], [refund("12.00")], "report"),
        # Escalations: the agent proposed nothing.
        Item("escalation, closed", [], [], "escalation"),
        Item("escalation, human acted", [], [refund("15.00")], "escalation"),
        # Supervised: a rejected middle step holds the rest for the reviewer.
        Item(
            "rejected middle at supervised, rest decided",
            [refund("25.00"), reply("Wrong words."), refund("5.00", "Late")],
            [refund("25.00"), refund("5.00", "Late")],
            "console",
            level=AutonomyLevel.SUPERVISED,
        ),
        Item(
            "rejected middle at supervised, rest rejected",
            [refund("26.00"), reply("Wrong words."), refund("6.00", "Late")],
            [refund("26.00")],
            "reject_rest",
            level=AutonomyLevel.SUPERVISED,
        ),
        # The first action's execution failed: the rest was cancelled, never judged.
        Item(
            "cancelled after a failure",
            [refund("27.00"), reply("Refunded.")],
            [refund("27.00")],
            "cancelled",
            level=AutonomyLevel.SUPERVISED,
            complete=False,
        ),
        Item("still waiting", [refund("28.00")], [], "waiting", complete=False),
        # Imported history.
        Item("imported exact", [refund("31.00")], [refund("31.00")], "import"),
        Item("imported edit", [refund("32.00")], [refund("33.00")], "import"),
        Item("imported both nothing", [], [], "import"),
    ]


def _fill_console_truth(items: list[Item]) -> None:
    """For console items the human's actions are what the reviewer will do: the
    scenario says it as decisions (below); here as actions, for the counting."""
    by_name = {i.name: i for i in items}
    by_name["all exact"].human = list(by_name["all exact"].proposed)
    by_name["one edit"].human = [refund("40.00"), reply("Refunded.")]


# --- The ground truth, computed here on its own ---------------------------------------


@dataclass
class Truth:
    exact: int = 0
    edited: int = 0
    extra: int = 0
    missed: int = 0
    items: int = 0
    agreed: int = 0
    both_nothing: int = 0
    judged: int = 0
    settled: int = 0
    cancelled: int = 0
    waiting: int = 0

    def as_tuple(self) -> tuple[int, ...]:
        return (
            self.exact,
            self.edited,
            self.extra,
            self.missed,
            self.items,
            self.agreed,
            self.both_nothing,
            self.judged,
            self.settled,
        )


def _pair(proposed, human) -> Counter:
    """Exact pairs first, then same-tool pairs (edits); the rest extra or missed."""
    left, done, kinds = list(proposed), list(human), Counter()
    for action in list(left):
        if action in done:
            left.remove(action)
            done.remove(action)
            kinds["exact"] += 1
    for action in list(left):
        match = next((h for h in done if h[0] == action[0]), None)
        if match is not None:
            left.remove(action)
            done.remove(match)
            kinds["edited"] += 1
    kinds["extra"] += len(left)
    kinds["missed"] += len(done)
    return kinds


def truth_of(items: list[Item], *, with_imported: bool = True) -> Truth:
    t = Truth()
    for item in items:
        if item.channel == "import" and not with_imported:
            continue
        if item.channel == "waiting":
            t.waiting += len(item.proposed)
            continue
        if item.channel == "cancelled":
            # The first was accepted; the second cancelled before anyone judged it.
            t.exact += 1
            t.judged += 1
            t.settled += 2
            t.cancelled += 1
            continue
        kinds = _pair(item.proposed, item.human)
        t.exact += kinds["exact"]
        t.edited += kinds["edited"]
        t.extra += kinds["extra"]
        t.missed += kinds["missed"]
        t.judged += len(item.proposed)
        t.settled += len(item.proposed)
        if item.complete:
            t.items += 1
            right = kinds["edited"] == kinds["extra"] == kinds["missed"] == 0
            t.agreed += right
            t.both_nothing += not item.proposed and not item.human
    return t


# --- Driving Tenure through its real paths ---------------------------------------------


@pytest.fixture
def world(roles, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False  # nothing executes: the evidence is the point
    workflow = make_refund_workflow(
        slug="refunds-truth", gate_window_days=WINDOW_DAYS, gate_counts_imported=False
    )
    reviewer = UserFactory(username="rhea")
    reviewer.groups.add(roles[Role.REVIEWER])
    workflow_grant_role(user=reviewer, workflow=workflow, role=Role.REVIEWER)
    manager = UserFactory(username="mika")
    manager.groups.add(roles[Role.MANAGER])
    workflow_grant_role(user=manager, workflow=workflow, role=Role.MANAGER)
    _, token = api_token_create(
        name="system-of-record",
        workflows=[workflow],
        verbs=list(ApiToken.Verb.values),
        actor=None,
        rate_limit_per_minute=6000,
    )
    return workflow, reviewer, manager, token


def _set_level(workflow: Workflow, level: str) -> None:
    Workflow.objects.filter(pk=workflow.pk).update(autonomy_level=level)
    ToolGrant.objects.filter(workflow=workflow).update(autonomy_level=level)


def _plan(workflow: Workflow, item: Item, n: int) -> None:
    status = WorkItem.Status.AWAITING_REVIEW if item.proposed else WorkItem.Status.ESCALATED
    work_item = WorkItemFactory(workflow=workflow, external_id=f"GT-{n}", status=status)
    run = RunFactory(work_item=work_item)
    item.proposals = [
        ProposalFactory(
            run=run,
            sequence=position,
            tool=tool,
            arguments=dict(arguments),
            arguments_hash=arguments_hash(dict(arguments)),
            autonomy_level=item.level,
        )
        for position, (tool, arguments) in enumerate(item.proposed, start=1)
    ]
    item.work_item = work_item  # type: ignore[attr-defined]


def _decide(proposal: Proposal, reviewer, verdict: str, final=None) -> None:
    claim = claim_proposal(reviewer=reviewer, proposal=proposal)
    assert claim is not None, proposal
    proposal_decide(
        proposal_id=proposal.pk,
        reviewer=reviewer,
        claim_token=claim.token,
        verdict=verdict,
        final_arguments=final,
        reason=RejectReason.WRONG_ACTION if verdict == Decision.Verdict.REJECT else "",
    )


def _console(item: Item, reviewer) -> None:
    """The reviewer decides each action as the human's actions say."""
    remaining = list(item.human)
    for proposal in item.proposals:
        action = (proposal.tool, proposal.arguments)
        if action in remaining:
            remaining.remove(action)
            _decide(proposal, reviewer, Decision.Verdict.ACCEPT)
            continue
        same_tool = next((h for h in remaining if h[0] == proposal.tool), None)
        if same_tool is not None and item.name == "one edit":
            remaining.remove(same_tool)
            _decide(proposal, reviewer, Decision.Verdict.EDIT, final=dict(same_tool[1]))
            continue
        _decide(proposal, reviewer, Decision.Verdict.REJECT)


def _report(api: Client, token: str, workflow: Workflow, body: dict, key: str):
    return api.post(
        f"/api/v1/workflows/{workflow.slug}/actions/report",
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
    )


def drive(world, items: list[Item]) -> dict[str, Any]:
    workflow, reviewer, _manager, token = world
    api = Client()
    seen: dict[str, Any] = {}
    # Shadow first, then supervised (a promotion between them).
    for level in (AutonomyLevel.SHADOW, AutonomyLevel.SUPERVISED):
        _set_level(workflow, level)
        for n, item in enumerate(items):
            if item.level != level or item.channel == "import":
                continue
            _plan(workflow, item, n)
            if item.channel == "console":
                _console(item, reviewer)
            elif item.channel == "reject_rest":
                first, middle, last = item.proposals
                _decide(first, reviewer, Decision.Verdict.ACCEPT)
                _decide(middle, reviewer, Decision.Verdict.REJECT)
                claim = claim_proposal(reviewer=reviewer, proposal=last)
                plan_reject_rest(
                    proposal_id=last.pk,
                    reviewer=reviewer,
                    claim_token=claim.token,
                    reason=RejectReason.WRONG_ACTION,
                )
            elif item.channel == "cancelled":
                first, _second = item.proposals
                _decide(first, reviewer, Decision.Verdict.ACCEPT)
                # What the execution path does when the first action fails to run.
                states.plan_rest_cancel(run_id=first.run_id, after=first.sequence)
            elif item.channel == "escalation":
                escalation = EscalationFactory(work_item=item.work_item, workflow=workflow)
                took = bool(item.human)
                escalation_resolve(
                    escalation_id=escalation.pk,
                    reviewer=reviewer,
                    outcome=EscalationResolution.Outcome.TOOK_ACTION
                    if took
                    else EscalationResolution.Outcome.CLOSED,
                    packet_rating=4,
                    actions=[{"tool": t, "arguments": a} for t, a in item.human],
                )
            elif item.channel == "report":
                body = {
                    "external_id": item.work_item.external_id,
                    "actions": [{"tool": t, "arguments": a} for t, a in item.human],
                }
                key = f"report-{n}"
                first = _report(api, token, workflow, body, key)
                assert first.status_code == 200, first.content
                # A retry after a timeout: the same answer, nothing counted twice.
                again = _report(api, token, workflow, body, key)
                assert again.status_code == 200, again.content
                assert again.json() == first.json()
                # The same key with another body: refused, nothing recorded.
                conflict = _report(api, token, workflow, {**body, "seconds_spent": 7}, key)
                assert conflict.status_code == 409, conflict.content
                seen[item.name] = first.json()
    # Imported history, dated a few days ago.
    pairs = [
        {
            "external_id": f"OLD-{n}",
            "payload": {"text": item.name},
            "occurred_at": (timezone.now() - timedelta(days=3)).isoformat(),
            "proposed": [{"tool": t, "arguments": a} for t, a in item.proposed],
            "human": [{"tool": t, "arguments": a} for t, a in item.human],
        }
        for n, item in enumerate(items)
        if item.channel == "import"
    ]
    response = api.post(
        f"/api/v1/workflows/{workflow.slug}/history",
        json.dumps({"pairs": pairs}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.content
    return seen


# --- What each surface shows -------------------------------------------------------------

COUNTS = ("exact", "edited", "extra", "missed", "items", "agreed", "both-nothing")


def _from_html(html: str) -> Truth:
    section = re.search(r'data-metric="comparison".*?</table>', html, re.S)
    assert section, "no comparison on the page"
    found = {
        name: int(value)
        for name, value in re.findall(r'data-count="([a-z-]+)">(\d+)<', section.group(0))
    }
    return Truth(
        exact=found["exact"],
        edited=found["edited"],
        extra=found["extra"],
        missed=found["missed"],
        items=found["items"],
        agreed=found["agreed"],
        both_nothing=found["both-nothing"],
        judged=found["judged"],
        settled=found["settled"],
    )


def _from_json(c: dict[str, Any]) -> Truth:
    items, coverage = c["item_agreement"], c["coverage"]
    assert c["precision"]["n"] == c["exact"] + c["edited"] + c["extra"]
    assert c["recall"]["n"] == c["exact"] + c["edited"] + c["missed"]
    return Truth(
        exact=c["exact"],
        edited=c["edited"],
        extra=c["extra"],
        missed=c["missed"],
        items=items["items"],
        agreed=items["agreed"],
        both_nothing=items["both_did_nothing"],
        judged=coverage["judged"],
        settled=coverage["settled"],
        cancelled=coverage["not_judged"].get("cancelled", 0),
        waiting=coverage["waiting"],
    )


def _login(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.content[:300]
    return response.content.decode()


def _gate(workflow: Workflow) -> Truth:
    evidence = evidence_gate.gate_evaluate(
        workflow=workflow, to_level=AutonomyLevel.LIMITED, from_level=AutonomyLevel.SUPERVISED
    )
    c = {k.key: k for k in evidence.criteria}
    a = re.fullmatch(
        r"(\d+) accepted, (\d+) edited, (\d+) rejected \(rate .*\)", c["agreement"].detail
    )
    i = re.fullmatch(
        r"(\d+) of (\d+) items right \((\d+) where both did nothing\)", c["item_agreement"].detail
    )
    v = re.match(r"(\d+) of (\d+) judged", c["coverage"].detail)
    assert a, c["agreement"].detail
    assert i, c["item_agreement"].detail
    assert v, c["coverage"].detail
    return Truth(
        exact=int(a.group(1)),
        edited=int(a.group(2)),
        extra=int(a.group(3)),
        missed=-1,  # the gate decides on precision, item agreement and coverage
        items=int(i.group(2)),
        agreed=int(i.group(1)),
        both_nothing=int(i.group(3)),
        judged=int(v.group(1)),
        settled=int(v.group(2)),
    )


def test_every_surface_reports_the_ground_truth_of_multi_step_plans(world):
    workflow, _reviewer, manager, token = world
    items = generate()
    _fill_console_truth(items)
    drive(world, items)
    workflow.refresh_from_db()

    truth = truth_of(items)
    print(  # the table in the note: pytest -s shows it
        "\n".join(
            f"| {name} | {value} |"
            for name, value in (
                ("exact", truth.exact),
                ("edited", truth.edited),
                ("extra", truth.extra),
                ("missed", truth.missed),
                ("items with a complete account", truth.items),
                ("items right (whole plan)", truth.agreed),
                ("both did nothing", truth.both_nothing),
                ("judged / settled", f"{truth.judged} / {truth.settled}"),
                ("not judged: cancelled", truth.cancelled),
                ("still waiting", truth.waiting),
            )
        )
    )
    # The generator covers every shape it promises.
    assert min(truth.exact, truth.edited, truth.extra, truth.missed) > 0
    assert (truth.both_nothing, truth.cancelled, truth.waiting) == (3, 1, 1)
    assert truth.agreed < truth.items

    client = _login(manager)
    dashboard = _page(
        client, reverse("evidence-dashboard", args=[workflow.slug]) + f"?days={WINDOW_DAYS}"
    )
    shown = {
        "dashboard": _from_html(dashboard),
        "workflow page": _from_html(
            _page(client, reverse("workflow-detail", args=[workflow.slug]))
        ),
    }
    api = Client().get(
        f"/api/v1/workflows/{workflow.slug}/metrics",
        {"days": WINDOW_DAYS},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert api.status_code == 200, api.content
    shown["API"] = _from_json(api.json()["comparison"])
    pack = client.get(
        reverse("evidence-pack", args=[workflow.slug]) + f"?format=json&days={WINDOW_DAYS}"
    )
    shown["evidence pack"] = _from_json(pack.json()["comparison"])
    assert {name: s.as_tuple() for name, s in shown.items()} == dict.fromkeys(
        shown, truth.as_tuple()
    )
    for name in ("API", "evidence pack"):
        assert (shown[name].cancelled, shown[name].waiting) == (1, 1), name
    assert "not judged: 1 cancelled" in dashboard
    # The HTML evidence pack shows the same table.
    pack_html = _page(
        client, reverse("evidence-pack", args=[workflow.slug]) + f"?days={WINDOW_DAYS}"
    )
    assert _from_html(pack_html).as_tuple() == truth.as_tuple()

    # The gate leaves imported history out (the workflow does not count it)...
    gate_truth = truth_of(items, with_imported=False)
    shown_gate = _gate(workflow)
    shown_gate.missed = gate_truth.missed
    assert shown_gate.as_tuple() == gate_truth.as_tuple()
    # ...and counts it once the workflow says so: the same numbers as every screen.
    Workflow.objects.filter(pk=workflow.pk).update(gate_counts_imported=True)
    workflow.refresh_from_db()
    shown_gate = _gate(workflow)
    shown_gate.missed = truth.missed
    assert shown_gate.as_tuple() == truth.as_tuple()

    # Precision is agreement: the same numbers as the agreement tiles.
    agreement = metrics.agreement_for(
        metrics.Scope.for_workflow(workflow, since=metrics.window_start(WINDOW_DAYS))
    )
    assert (agreement.accepted, agreement.edited, agreement.rejected) == (
        truth.exact,
        truth.edited,
        truth.extra,
    )
    # Imported rows are marked wherever evidence is shown.
    assert "imported" in dashboard
    imported = api.json()["comparison"]
    assert imported["imported"] == sum(
        len(i.proposed) + _pair(i.proposed, i.human)["missed"]
        for i in items
        if i.channel == "import"
    )
    assert imported["item_agreement"]["imported"] == sum(i.channel == "import" for i in items)
