"""Approvals from chat, both ways: interactive approval requests posted to a (loopback)
Slack webhook, and the button clicks coming back, signed, recorded under the console's
rules (hash-bound, claim, four eyes)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from django.test import Client

from agents import queue
from agents.models import Proposal
from agents.notifications import ACTION_APPROVE, ACTION_REJECT, notify_approval_requests
from agents.runner import run_work_item
from agents.tools.base import arguments_hash
from governance.models import AuditEvent, AutonomyLevel, ChatChannel, ChatIdentity
from governance.permissions import Role, workflow_grant_role
from governance.services import workflow_pause, workflow_resume
from reviews.chat import (
    CHAT_REJECT_REASON,
    ERR_BAD_SIGNATURE,
    ERR_STALE,
    MSG_HELD_BY_OTHER,
    MSG_NOT_ALLOWED,
    MSG_REFUSED,
    MSG_UNMAPPED,
    slack_signature,
)
from reviews.claims import claim_proposal
from reviews.models import Approval, Claim, Decision
from reviews.services import ERR_CARD_REPLACED, ERR_SAME_APPROVER, proposal_decide
from tests.agents.stub_openai import (  # noqa: F401 - fixtures
    GOOD_REFUND,
    make_item,
    make_refund_workflow,
    stub_openai_fixture,
)
from tests.agents.test_execute import plan
from tests.chat.receiver import Receiver
from tests.conftest import sent_args
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

SECRET = "slack-signing-secret-for-tests"
URL = "/integrations/slack/actions"
BIG_REFUND = {**GOOD_REFUND, "amount": "350.00"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def slack(settings, receiver, eager_tasks):
    """Notices go to the loopback receiver (delivered at once by an eager task); clicks
    are verified with SECRET; replies may go back to the receiver."""
    settings.TENURE_WEBHOOK_URL = receiver.url + "/hook"
    settings.TENURE_WEBHOOK_SECRET = ""
    settings.TENURE_BASE_URL = "https://tenure.example.test"
    settings.TENURE_SLACK_SIGNING_SECRET = SECRET
    settings.TENURE_SLACK_RESPONSE_URL_PREFIXES = (receiver.url + "/respond/",)
    return receiver


@pytest.fixture
def dispatched(monkeypatch):
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr("agents.queue.send", lambda name, *args: sent.append((name, args)) or True)
    return sent


@pytest.fixture
def supervised():
    workflow = make_refund_workflow(level=AutonomyLevel.SUPERVISED, cap="500")
    workflow.policy = {**workflow.policy, "two_approvers": {"money_above": 300}}
    workflow.save(update_fields=["policy"])
    return workflow


@pytest.fixture
def reviewers(roles, supervised):
    """Two reviewers of the workflow, each linked to a Slack account."""
    users = []
    for name, slack_id in (("rhea", "U0RHEA"), ("ravi", "U0RAVI")):
        user = UserFactory(username=name, email=f"{name}@example.test")
        user.groups.add(roles[Role.REVIEWER])
        workflow_grant_role(user=user, workflow=supervised, role=Role.REVIEWER)
        ChatIdentity.objects.create(external_user_id=slack_id, user=user)
        users.append(user)
    return users


def click(
    proposal: Proposal,
    *,
    user: str = "U0RHEA",
    action: str = ACTION_APPROVE,
    shown_hash: str | None = None,
    timestamp: int | None = None,
    secret: str = SECRET,
    signature: str | None = None,
    response_url: str = "",
):
    """POST a Slack block action for the proposal's button, signed like Slack does."""
    value = json.dumps({"proposal": proposal.pk, "hash": shown_hash or proposal.arguments_hash})
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower()},
        "team": {"id": "T0TEAM"},
        "container": {"type": "message", "message_ts": f"{time.time() - 40:.6f}"},
        "message": {
            "text": "Approval requested",
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": "*Approval requested*"}},
                {"type": "actions", "block_id": f"tenure-proposal-{proposal.pk}", "elements": []},
            ],
        },
        "response_url": response_url,
        "actions": [{"action_id": action, "value": value, "type": "button"}],
    }
    body = urlencode({"payload": json.dumps(payload)})
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return Client().post(
        URL,
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers={
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": signature or slack_signature(body.encode(), stamp, secret),
        },
    )


def test_an_approval_request_is_posted_with_buttons_after_the_run_commits(
    slack, stub_openai, dispatched, django_capture_on_commit_callbacks
):
    workflow = make_refund_workflow(level=AutonomyLevel.SUPERVISED)
    item = make_item(workflow, "good")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run_work_item(work_item_id=item.pk)
    assert slack.events() == []  # nothing leaves before the commit
    for callback in callbacks:
        callback()
    (proposal,) = Proposal.objects.filter(work_item=item)
    (body,) = [b for b in slack.bodies("/hook") if b["tenure"]["event"] == "approval.requested"]
    assert body["tenure"]["proposal"] == proposal.pk
    (actions,) = [b for b in body["blocks"] if b["type"] == "actions"]
    buttons = {e["action_id"]: e for e in actions["elements"]}
    assert set(buttons) == {"tenure.approve", "tenure.reject", "tenure.open"}
    value = json.loads(buttons["tenure.approve"]["value"])
    assert value == {"proposal": proposal.pk, "hash": proposal.arguments_hash}
    assert buttons["tenure.open"]["url"].endswith(f"/w/refunds/queue/{proposal.pk}/")


def test_a_shadow_proposal_is_not_an_approval_request(slack, django_capture_on_commit_callbacks):
    workflow = make_refund_workflow(level=AutonomyLevel.SHADOW)
    (proposal,) = plan(workflow, ("create_refund", dict(GOOD_REFUND), "money"))
    with django_capture_on_commit_callbacks(execute=True):
        assert notify_approval_requests([proposal]) == 0
    assert slack.events() == []


def test_a_bad_signature_is_refused_with_401(slack, supervised, reviewers, dispatched):
    (refund,) = plan(supervised, ("create_refund", dict(GOOD_REFUND), "money"))
    response = click(refund, secret="not-the-secret")
    assert response.status_code == 401
    assert response.json()["error"] == ERR_BAD_SIGNATURE
    response = click(refund, signature="v0=" + "0" * 64)
    assert response.status_code == 401
    assert not Decision.objects.exists()


def test_a_replayed_request_older_than_five_minutes_is_refused_with_401(
    slack, supervised, reviewers, dispatched
):
    (refund,) = plan(supervised, ("create_refund", dict(GOOD_REFUND), "money"))
    response = click(refund, timestamp=int(time.time()) - 301)
    assert response.status_code == 401
    assert response.json()["error"] == ERR_STALE
    assert not Decision.objects.exists()
    assert click(refund, timestamp=int(time.time()) - 200).status_code == 200


def test_the_endpoint_is_off_without_a_signing_secret(settings, supervised, reviewers):
    settings.TENURE_SLACK_SIGNING_SECRET = ""
    (refund,) = plan(supervised, ("create_refund", dict(GOOD_REFUND), "money"))
    assert click(refund, secret="").status_code == 404


def test_an_unmapped_slack_user_is_told_and_nothing_is_recorded(
    slack, supervised, reviewers, dispatched
):
    (refund,) = plan(supervised, ("create_refund", dict(GOOD_REFUND), "money"))
    response = click(refund, user="U0STRANGER")
    assert response.status_code == 200
    assert response.json() == {
        "response_type": "ephemeral",
        "replace_original": False,
        "text": MSG_UNMAPPED,
    }
    refund.refresh_from_db()
    assert refund.status == Proposal.Status.PENDING
    assert not Decision.objects.exists()
    assert not Claim.objects.exists()


def test_a_linked_user_who_does_not_review_the_workflow_is_refused(
    slack, supervised, reviewers, dispatched
):
    outsider = UserFactory(username="olga")
    ChatIdentity.objects.create(external_user_id="U0OLGA", user=outsider)
    (refund,) = plan(supervised, ("create_refund", dict(GOOD_REFUND), "money"))
    assert click(refund, user="U0OLGA").json()["text"] == MSG_NOT_ALLOWED
    assert not Decision.objects.exists()


def test_a_stale_argument_hash_is_refused(slack, supervised, reviewers, dispatched):
    (refund,) = plan(supervised, ("create_refund", dict(GOOD_REFUND), "money"))
    shown = refund.arguments_hash
    # The arguments changed after the message was posted.
    changed = {**GOOD_REFUND, "amount": "43.00"}
    Proposal.objects.filter(pk=refund.pk).update(
        arguments=changed, arguments_hash=arguments_hash(changed)
    )
    response = click(refund, shown_hash=shown)
    assert response.json()["text"] == MSG_REFUSED.format(reason=ERR_CARD_REPLACED)
    refund.refresh_from_db()
    assert refund.status == Proposal.Status.PENDING
    assert not Decision.objects.exists()
    assert not Claim.objects.exists()  # the claim taken for the click was given back
    assert sent_args(dispatched, queue.EXECUTE_ACTION) == []


def _decision_facts(decision: Decision) -> dict:
    return {
        "reviewer": decision.reviewer_id,
        "kind": decision.kind,
        "verdict": decision.verdict,
        "final_arguments": decision.final_arguments,
        "final_arguments_hash": decision.final_arguments_hash,
        "diff": decision.diff,
        "reason": decision.reason,
        "autonomy_level": decision.autonomy_level,
    }


def test_an_approval_from_slack_is_recorded_exactly_as_from_the_console(
    slack, supervised, reviewers, dispatched, django_capture_on_commit_callbacks
):
    rhea, _ = reviewers
    (in_console,) = plan(supervised, ("create_refund", dict(GOOD_REFUND), "money"))
    (in_slack,) = plan(supervised, ("create_refund", dict(GOOD_REFUND), "money"))
    claim = claim_proposal(reviewer=rhea, proposal=in_console)
    with django_capture_on_commit_callbacks(execute=True):
        console_decision = proposal_decide(
            proposal_id=in_console.pk, reviewer=rhea, claim_token=claim.token, verdict="accept"
        )
    with django_capture_on_commit_callbacks(execute=True):
        response = click(in_slack, response_url=slack.url + "/respond/T0/1")
    assert response.status_code == 200
    slack_decision = Decision.objects.get(proposal=in_slack)
    assert _decision_facts(slack_decision) == _decision_facts(console_decision)
    in_slack.refresh_from_db()
    assert in_slack.status == Proposal.Status.ACCEPTED
    # Approved at supervised: it executes, as from the console.
    assert sent_args(dispatched, queue.EXECUTE_ACTION) == [in_console.pk, in_slack.pk]

    console_event = AuditEvent.objects.get(action="proposal.accept", object_id=str(in_console.pk))
    slack_event = AuditEvent.objects.get(action="proposal.accept", object_id=str(in_slack.pk))
    assert slack_event.actor_id == console_event.actor_id == rhea.pk
    assert slack_event.data.pop("via") == "slack"
    differ = {"run", "seconds_spent"}
    assert {k: v for k, v in slack_event.data.items() if k not in differ} == {
        k: v for k, v in console_event.data.items() if k not in differ
    }

    # The reply: the message without its buttons, saying who approved.
    message = response.json()
    assert message["replace_original"] is True
    assert not [b for b in message["blocks"] if b["type"] == "actions"]
    assert (
        f"Approved by <@U0RHEA> (rhea) in Slack (decision #{slack_decision.pk})"
        in (message["blocks"][-1]["elements"][0]["text"])
    )
    # ... also posted back to the click's response URL.
    assert slack.bodies("/respond/T0/1") == [message]


def test_a_rejection_from_slack_is_a_rejection(slack, supervised, reviewers, dispatched):
    (refund,) = plan(supervised, ("create_refund", dict(GOOD_REFUND), "money"))
    response = click(refund, action=ACTION_REJECT)
    assert "Rejected by <@U0RHEA>" in response.json()["text"]
    decision = Decision.objects.get(proposal=refund)
    assert (decision.verdict, decision.reason) == ("reject", CHAT_REJECT_REASON)
    assert sent_args(dispatched, queue.EXECUTE_ACTION) == []


def test_two_approvers_are_enforced_from_slack(
    slack, supervised, reviewers, dispatched, django_capture_on_commit_callbacks
):
    rhea, ravi = reviewers
    (refund,) = plan(supervised, ("create_refund", dict(BIG_REFUND), "money"))

    first = click(refund, user="U0RHEA").json()
    assert "First approval by <@U0RHEA> (rhea)" in first["text"]
    # The buttons stay, for the second approver.
    assert [b for b in first["blocks"] if b["type"] == "actions"]
    refund.refresh_from_db()
    assert refund.status == Proposal.Status.PENDING
    assert not Decision.objects.exists()

    again = click(refund, user="U0RHEA").json()
    assert again["text"] == MSG_REFUSED.format(reason=ERR_SAME_APPROVER)
    assert Approval.objects.count() == 1

    with django_capture_on_commit_callbacks(execute=True):
        second = click(refund, user="U0RAVI").json()
    assert "Approved by <@U0RAVI> (ravi)" in second["text"]
    decision = Decision.objects.get(proposal=refund)
    assert decision.reviewer == ravi
    event = AuditEvent.objects.get(action="proposal.accept", object_id=str(refund.pk))
    assert event.data["approvers"] == [rhea.pk, ravi.pk]
    assert sent_args(dispatched, queue.EXECUTE_ACTION) == [refund.pk]


def test_a_proposal_another_reviewer_holds_in_the_console_is_not_taken(
    slack, supervised, reviewers, dispatched
):
    _, ravi = reviewers
    (refund,) = plan(supervised, ("create_refund", dict(GOOD_REFUND), "money"))
    assert claim_proposal(reviewer=ravi, proposal=refund) is not None
    assert click(refund, user="U0RHEA").json()["text"] == MSG_HELD_BY_OTHER
    assert not Decision.objects.exists()


def test_a_click_keeps_the_card_the_reviewer_holds_in_the_console(
    slack, supervised, reviewers, dispatched
):
    rhea, _ = reviewers
    held, clicked = plan(
        supervised,
        ("create_refund", dict(GOOD_REFUND), "money"),
        ("create_refund", {**GOOD_REFUND, "amount": "10.00"}, "money"),
    )
    claim = claim_proposal(reviewer=rhea, proposal=held)
    click(clicked)
    assert Claim.objects.filter(pk=claim.pk, proposal=held).exists()


def test_pauses_and_resumes_notify_the_workflows_own_channel(
    slack, supervised, reviewers, django_capture_on_commit_callbacks
):
    ChatChannel.objects.create(workflow=supervised, webhook_url=slack.url + "/refunds-channel")
    with django_capture_on_commit_callbacks(execute=True):
        workflow_pause(workflow=supervised, actor=reviewers[0], reason="Refund API down")
    with django_capture_on_commit_callbacks(execute=True):
        workflow_resume(workflow=supervised, actor="ops:otto", reason="API back")
    bodies = slack.bodies("/refunds-channel")
    assert [b["tenure"]["event"] for b in bodies] == ["workflow.paused", "workflow.resumed"]
    assert "By rhea" in bodies[0]["blocks"][0]["text"]["text"]
    assert "By ops:otto" in bodies[1]["blocks"][0]["text"]["text"]
    assert slack.bodies("/hook") == []  # the workflow's channel, not the global webhook


def test_an_escalation_is_posted_with_a_link_to_the_console(
    slack, supervised, django_capture_on_commit_callbacks
):
    from agents.notifications import notify_escalation
    from tests.factories import EscalationFactory

    escalation = EscalationFactory(work_item__workflow=supervised, detail="Loop: <same call> x3")
    with django_capture_on_commit_callbacks(execute=True):
        assert notify_escalation(escalation)
    (body,) = slack.bodies("/hook")
    assert body["tenure"]["event"] == "escalation.created"
    (actions,) = [b for b in body["blocks"] if b["type"] == "actions"]
    (button,) = actions["elements"]
    assert button["url"] == "https://tenure.example.test/w/refunds/"
    assert "&lt;same call&gt;" in body["blocks"][0]["text"]["text"]


def test_approval_requests_go_to_the_workflows_own_channel(
    slack, supervised, django_capture_on_commit_callbacks
):
    ChatChannel.objects.create(workflow=supervised, webhook_url=slack.url + "/refunds-channel")
    proposals = plan(
        supervised,
        ("create_refund", dict(GOOD_REFUND), "money"),
        ("create_refund", {**GOOD_REFUND, "amount": "10.00"}, "money"),
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert notify_approval_requests(proposals) == 2
    bodies = slack.bodies("/refunds-channel")
    assert sorted(b["tenure"]["proposal"] for b in bodies) == sorted(p.pk for p in proposals)
    assert slack.bodies("/hook") == []


def test_an_approval_request_shows_the_arguments_redacted(
    slack, supervised, django_capture_on_commit_callbacks
):
    reply = {"to": "cora@example.com", "subject": "Your refund", "body": "Call +1 415 555 0199"}
    (proposal,) = plan(supervised, ("draft_customer_reply", reply, "external_message"))
    with django_capture_on_commit_callbacks(execute=True):
        notify_approval_requests([proposal])
    (body,) = slack.bodies("/hook")
    shown = json.dumps(body)
    assert "cora@example.com" not in shown
    assert "555 0199" not in shown
    assert "Your refund" in shown
    # The button still binds the decision to the real arguments.
    (actions,) = [b for b in body["blocks"] if b["type"] == "actions"]
    assert json.loads(actions["elements"][0]["value"])["hash"] == arguments_hash(reply)
