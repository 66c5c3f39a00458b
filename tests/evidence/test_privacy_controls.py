"""Who may change, see and erase personal data: the data policy under change control, the
tokens and their keys, the erasure API and page, and the rules in the evidence pack."""

from __future__ import annotations

import json

import pytest
from cryptography.exceptions import InvalidTag
from django.core.exceptions import ValidationError
from django.urls import reverse

from agents.models import Proposal, WorkItem
from agents.services import work_item_create
from governance import change_control as cc
from governance import privacy
from governance.models import ApiToken, AuditEvent, ConfigChange, DataSubject, Workflow
from tests.api.conftest import ApiClient, error_of, make_token  # noqa: F401 - a fixture
from tests.factories import ProposalFactory, RunFactory

pytestmark = pytest.mark.django_db

POLICY = {
    "subject_fields": ["customer_id", "email"],
    "personal_fields": ["name"],
    "personal_arguments": {"draft_customer_reply": ["to"]},
    "retention_days": {"payloads": 90, "arguments": 90},
}
PAYLOAD = {
    "text": "Dana Reyes (dana@example.com) wants a refund.",
    "customer_id": "CUST-5521",
    "email": "dana@example.com",
    "name": "Dana Reyes",
}


@pytest.fixture
def declared(workflow):
    Workflow.objects.filter(pk=workflow.pk).update(data_policy=POLICY)
    workflow.refresh_from_db()
    return workflow


def _item(workflow, payload=PAYLOAD, external_id="t-1") -> WorkItem:
    item, _ = work_item_create(
        workflow=workflow, external_id=external_id, payload=dict(payload), source="api"
    )
    return item


# --- the declaration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ([], "must be an object"),
        ({"subject": ["email"]}, "unknown keys"),
        ({"subject_fields": "email"}, "subject_fields as a list"),
        ({"personal_arguments": ["to"]}, "personal_arguments as"),
        ({"retention_days": {"payloads": -1}}, "a whole number 0 to"),
        ({"retention_days": {"payloads": True}}, "a whole number 0 to"),
        ({"retention_days": {"logs": 5}}, "retention_days as"),
    ],
)
def test_a_malformed_data_policy_is_refused_with_the_reason(policy, message):
    with pytest.raises(ValidationError, match=message):
        privacy.policy_clean(policy)


def test_declaring_more_or_keeping_less_applies_at_once(workflow, manager):
    change = cc.config_change_request(
        workflow=workflow, actor=manager, settings={"data_policy": POLICY}, reason="GDPR"
    )
    assert change.kind == ConfigChange.Kind.NARROW_SETTINGS
    assert change.status == ConfigChange.Status.APPLIED
    assert Workflow.objects.get(pk=workflow.pk).data_policy["subject_fields"] == [
        "customer_id",
        "email",
    ]


def test_keeping_longer_or_declaring_less_waits_for_a_second_manager(
    declared, manager, second_manager
):
    longer = {**POLICY, "retention_days": {"payloads": 365, "arguments": 90}}
    change = cc.config_change_request(
        workflow=declared, actor=manager, settings={"data_policy": longer}
    )
    assert change.kind == ConfigChange.Kind.WIDEN_SETTINGS
    assert change.status == ConfigChange.Status.REQUESTED
    assert Workflow.objects.get(pk=declared.pk).data_policy["retention_days"]["payloads"] == 90
    cc.config_change_approve(change=change, actor=second_manager)
    assert Workflow.objects.get(pk=declared.pk).data_policy["retention_days"]["payloads"] == 365

    fewer = {**longer, "personal_fields": []}
    assert privacy.policy_widens(longer, fewer)
    forever = {**longer, "retention_days": {"payloads": 0, "arguments": 90}}
    assert privacy.policy_widens(longer, forever)
    assert not privacy.policy_widens(forever, longer)


# --- the tokens ----------------------------------------------------------------------------


def test_declared_values_are_stored_as_tokens_of_one_subject(declared):
    item = _item(declared)
    stored = json.dumps(item.payload) + item.title
    for value in ("dana@example.com", "CUST-5521", "Dana Reyes"):
        assert value not in stored
    assert privacy.reveal(item.payload) == PAYLOAD
    # The same person again: the same subject, the same tokens.
    again = _item(declared, {**PAYLOAD, "text": "Again."}, external_id="t-2")
    assert again.payload["email"] == item.payload["email"]
    assert DataSubject.objects.count() == 1


def test_a_workflow_that_declares_nothing_stores_payloads_as_received(workflow):
    item = _item(workflow)
    assert item.payload == PAYLOAD
    assert not DataSubject.objects.exists()


def test_a_token_needs_its_subject_key_and_the_master_key(declared, settings):
    item = _item(declared)
    token = item.payload["email"]
    assert privacy.TOKEN_RE.fullmatch(token)
    # Another master key cannot unwrap the subject's key.
    privacy.master_keys.cache_clear()
    settings.TENURE_PRIVACY_KEY = "b3RoZXItbWFzdGVyLWtleS1ub3QtdGhlLXJpZ2h0LW9uZS14eA=="
    try:
        with pytest.raises(InvalidTag):
            privacy.reveal(item.payload)
    finally:
        privacy.master_keys.cache_clear()


# --- the erasure API and page ---------------------------------------------------------------


def test_the_api_erases_a_subject_and_lists_what_went(declared, make_token):  # noqa: F811
    item = _item(declared)
    _, plain = make_token([declared], [ApiToken.Verb.SUBJECTS_ERASE])
    api = ApiClient(plain)
    url = f"/api/v1/workflows/{declared.slug}/subjects/erase"

    response = api.post(url, {"identifier": "DANA@example.com "})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["records"]["work_items"] == 1
    assert body["erased"] >= 1
    item.refresh_from_db()
    assert privacy.reveal(item.payload)["name"] == privacy.ERASED
    assert AuditEvent.objects.filter(action="privacy.subject.erased").count() == 1
    # Once erased, the identifier names no one.
    again = api.post(url, {"identifier": "dana@example.com"})
    assert again.status_code == 404
    assert error_of(again)["message"] == "No data subject is known by that identifier."


def test_the_api_refuses_a_token_without_the_erase_scope(declared, make_token):  # noqa: F811
    _item(declared)
    _, plain = make_token([declared], [ApiToken.Verb.PROPOSALS_READ])
    url = f"/api/v1/workflows/{declared.slug}/subjects/erase"
    response = ApiClient(plain).post(url, {"identifier": "dana@example.com"})
    assert response.status_code == 403
    blank = ApiClient(make_token([declared], [ApiToken.Verb.SUBJECTS_ERASE])[1]).post(
        url, {"identifier": "  "}
    )
    assert blank.status_code == 422
    assert DataSubject.objects.get().erased_at is None


def test_only_an_admin_may_open_the_erasure_page(declared, client_for, manager, admin_user):
    url = reverse("privacy-erase")
    assert client_for(manager).get(url).status_code == 403
    assert client_for(admin_user).get(url).status_code == 200


def test_an_admin_erases_from_the_page_after_confirming(declared, client_for, admin_user):
    _item(declared)
    client = client_for(admin_user)
    url = reverse("privacy-erase")

    unconfirmed = client.post(url, {"identifier": "CUST-5521"})
    assert unconfirmed.status_code == 400
    assert DataSubject.objects.get().erased_at is None

    response = client.post(url, {"identifier": "CUST-5521", "confirm": "on"})
    assert response.status_code == 200
    assert b"erasure-result" in response.content
    assert DataSubject.objects.get().erased_at is not None
    assert AuditEvent.objects.get(action="privacy.subject.erased").actor_label == "user:ada"

    unknown = client.post(url, {"identifier": "CUST-0000", "confirm": "on"})
    assert unknown.status_code == 404
    assert b"No data subject is known" in unknown.content


# --- who sees values ------------------------------------------------------------------------


def test_the_api_returns_tokens_and_the_card_shows_values(declared, make_token):  # noqa: F811
    item = _item(declared)
    subject_id = privacy.subject_ids_in(item.payload).pop()
    vault = privacy.vault_for(item.payload)
    arguments = vault.protect_arguments(
        "draft_customer_reply",
        {"to": "dana@example.com", "subject": "Refund", "body": "Dear Dana Reyes"},
        privacy.policy_of(declared),
    )
    assert f"[pii:{subject_id}:" in arguments["to"]
    assert "Dana Reyes" not in arguments["body"]
    run = RunFactory(work_item=item)
    proposal = ProposalFactory(run=run, tool="draft_customer_reply", arguments=arguments)

    _, plain = make_token([declared], [ApiToken.Verb.PROPOSALS_READ])
    listed = ApiClient(plain).get("/api/v1/proposals")
    assert listed.status_code == 200
    assert "dana@example.com" not in listed.content.decode()

    from reviews.selectors.card import card_for

    card = card_for(proposal_id=proposal.pk)
    shown = {row.name: row.value for row in card.arg_rows}
    assert shown["to"] == "dana@example.com"
    assert Proposal.objects.get(pk=proposal.pk).arguments == arguments


def test_the_evidence_pack_shows_the_rules_in_force(declared, client_for, manager):
    url = reverse("evidence-pack", args=[declared.slug])
    pack = client_for(manager).get(url, {"format": "json"}).json()
    rules = {r["kind"]: r["days"] for r in pack["data"]["retention"]}
    assert rules["payloads"] == 90
    assert rules["arguments"] == 90
    assert rules["traces"] == declared.trace_retention_days
    assert pack["data"]["subject_fields"] == ["customer_id", "email"]
    page = client_for(manager).get(url)
    assert b"Personal data: what is declared" in page.content


def test_a_card_that_shows_a_persons_values_is_an_audit_event(declared, client_for, reviewer):
    item = _item(declared)
    vault = privacy.vault_for(item.payload)
    arguments = vault.protect_arguments(
        "draft_customer_reply",
        {"to": "dana@example.com", "subject": "Refund", "body": "Done."},
        privacy.policy_of(declared),
    )
    proposal = ProposalFactory(
        run=RunFactory(work_item=item), tool="draft_customer_reply", arguments=arguments
    )
    url = reverse("review-card", args=[declared.slug, proposal.pk])

    response = client_for(reviewer).get(url)

    assert response.status_code == 200
    assert b"dana@example.com" in response.content
    event = AuditEvent.objects.get(action="privacy.revealed")
    assert event.actor_label == f"user:{reviewer.username}"
    assert event.data == {
        "subjects": [privacy.subject_ids_in(item.payload).pop()],
        "arguments": ["to"],
    }


def test_an_escalation_masks_the_packet_and_shows_the_work_item_audited(
    declared, client_for, reviewer
):
    from tests.factories import EscalationFactory

    item = _item(declared)
    escalation = EscalationFactory(
        work_item=item, workflow=declared, packet={"work_item": {"payload": item.payload}}
    )
    url = reverse("review-escalation", args=[declared.slug, escalation.pk])

    response = client_for(reviewer).get(url)

    assert response.status_code == 200
    # The packet shows "[personal]"; the work item the reviewer handles shows the values,
    # and that is an audit event.
    assert b"[personal]" in response.content
    assert b"[pii:" not in response.content
    assert b"Dana Reyes (dana@example.com) wants a refund." in response.content
    event = AuditEvent.objects.get(action="privacy.revealed")
    assert event.data == {
        "subjects": list(privacy.subject_ids_in(item.payload)),
        "shown": ["work_item"],
    }


@pytest.mark.django_db(transaction=True)
def test_two_first_sights_of_one_person_at_once_make_one_subject():
    import threading

    from django.db import connection as default_connection

    from tests.factories import WorkflowFactory

    workflow = WorkflowFactory(slug="race", data_policy=POLICY)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def intake(n: int) -> None:
        try:
            barrier.wait()
            _item(workflow, external_id=f"race-{n}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            default_connection.close()

    threads = [threading.Thread(target=intake, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert DataSubject.objects.filter(workflow=workflow).count() == 1
    assert len(privacy.subjects_find("dana@example.com", workflow)) == 1
    tokens = {WorkItem.objects.get(external_id=f"race-{n}").payload["email"] for n in range(4)}
    assert len(tokens) == 1
