"""The audit chain: verification catches an edited, deleted or reordered event."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from io import StringIO

import httpx
import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from agents import notifications as agent_notifications
from agents.models import WorkItem
from governance import notifications
from governance.audit import ERR_HEAD_MISMATCH, audit_append, audit_seal, audit_verify, chain_key
from governance.audit_keys import key_for
from governance.models import AuditEvent, AutonomyChange, AutonomyLevel
from tests.factories import EscalationFactory, ProposalFactory, WorkItemFactory

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def chain(workflow, other_workflow):
    for i in range(4):
        audit_append(action=f"test.step{i}", actor="system", workflow=workflow, data={"i": i})
    audit_append(action="test.other", actor="system", workflow=other_workflow)
    audit_append(action="test.global", actor="system")
    # What runs when the transaction commits (the test's own never does).
    audit_seal()
    return chain_key(workflow)


def tamper(sql: str, *params: object) -> None:
    """Bypass the append-only trigger inside this test's transaction (rolled back after).

    ALTER TABLE ... DISABLE TRIGGER would refuse while Django's deferred foreign-key
    checks are pending, so the session's replication role switches triggers off.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)
        cursor.execute("SET LOCAL session_replication_role = origin")


def run_verify() -> tuple[str, CommandError | None]:
    out = StringIO()
    try:
        call_command("verify_audit", stdout=out)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def test_intact_chains_verify(chain):
    output, error = run_verify()
    assert error is None
    assert f"OK      {chain}" in output
    assert "OK      global" in output
    assert "3 chain(s) verified." in output


def test_database_refuses_to_edit_the_log(chain):
    from django.db import DatabaseError, transaction

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(chain=chain, seq=2).update(action="test.forged")


def test_an_event_is_sealed_into_its_chain_when_its_transaction_commits(
    workflow, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        first = audit_append(action="test.a", actor="system", workflow=workflow)
        second = audit_append(action="test.b", actor="system", workflow=workflow)
        assert (first.seq, first.hash) == (None, ""), "unsealed until commit"
    assert len(callbacks) == 1, "one seal per chain per transaction"
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.seq, second.seq) == (1, 2)
    assert second.prev_hash == first.hash
    assert audit_verify(chain=chain_key(workflow)) == []


def test_sealing_may_not_change_what_an_event_says(workflow):
    from django.db import DatabaseError

    event = audit_append(action="test.a", actor="system", workflow=workflow)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(
            seq=1, prev_hash="0" * 64, hash="f" * 64, action="test.forged"
        )
    audit_seal()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(seq=7, hash="f" * 64)


def test_verify_seals_what_a_crash_left_unsealed(workflow):
    audit_append(action="test.a", actor="system", workflow=workflow)
    audit_append(action="test.b", actor="system", workflow=workflow)
    assert AuditEvent.objects.filter(seq__isnull=True).count() == 2
    assert audit_verify() == []
    assert list(AuditEvent.objects.values_list("seq", flat=True)) == [1, 2]


def test_edited_event_is_the_first_broken_link(chain):
    tamper("UPDATE console_auditevent SET data = '{\"i\": 99}' WHERE chain = %s AND seq = 2", chain)
    output, error = run_verify()
    assert error is not None
    assert f"BROKEN  {chain} at #2: event content does not match its hash" in output
    assert "OK      global" in output


def test_deleted_event_breaks_the_sequence(chain):
    tamper("DELETE FROM console_auditevent WHERE chain = %s AND seq = 2", chain)
    output, error = run_verify()
    assert error is not None
    assert f"BROKEN  {chain} at #3: sequence gap: expected 2, found 3" in output


def test_deleted_last_event_is_caught_against_the_chain_head(chain):
    tamper("DELETE FROM console_auditevent WHERE chain = %s AND seq = 4", chain)
    output, error = run_verify()
    assert error is not None
    assert f"BROKEN  {chain} at #4: the chain ends at #3 but its head says #4" in output


def test_reordered_events_are_caught(chain):
    # Swap the contents of #2 and #3, keeping their positions and hashes.
    tamper(
        "UPDATE console_auditevent SET seq = seq + 1000 WHERE chain = %s AND seq IN (2, 3)", chain
    )
    tamper("UPDATE console_auditevent SET seq = 3 WHERE chain = %s AND seq = 1002", chain)
    tamper("UPDATE console_auditevent SET seq = 2 WHERE chain = %s AND seq = 1003", chain)
    output, error = run_verify()
    assert error is not None
    assert f"BROKEN  {chain} at #2" in output


def test_rewritten_tail_with_a_valid_hash_is_caught_by_the_head(chain):
    event = AuditEvent.objects.get(chain=chain, seq=4)
    event.data = {"i": "forged"}
    # The worst case: the forger even holds the audit key. The head still catches it.
    forged_hash = event.compute_hash(key_for(event.key_id))
    tamper(
        "UPDATE console_auditevent SET data = %s, hash = %s WHERE chain = %s AND seq = 4",
        '{"i": "forged"}',
        forged_hash,
        chain,
    )
    [broken] = audit_verify(chains=[chain])
    assert (broken.seq, broken.problem) == (4, ERR_HEAD_MISMATCH)


def test_admin_and_ops_see_every_event(client_for, admin_user, ops, chain):
    for user in (admin_user, ops):
        html = client_for(user).get(reverse("audit-log")).content.decode()
        assert "test.step3" in html
        assert "test.other" in html
        assert "test.global" in html


def test_manager_sees_only_their_workflows_events(client_for, manager, chain):
    client = client_for(manager)
    html = client.get(reverse("audit-log")).content.decode()
    assert "test.step3" in html
    assert "test.other" not in html
    assert "test.global" not in html
    assert client.get(reverse("audit-log") + "?workflow=access").status_code == 404


def test_reviewer_may_not_read_the_audit_log(client_for, reviewer, chain):
    response = client_for(reviewer).get(reverse("audit-log"))
    assert response.status_code == 403
    assert "audit log is open to admins" in response.content.decode()
    assert client_for(reviewer).get(reverse("audit-verify")).status_code == 403


def test_verify_button_reports_ok_as_a_partial(client_for, ops, chain):
    response = client_for(ops).get(reverse("audit-verify"), **HX)
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="verify-result"')
    assert "<strong>OK.</strong> 3 chains verified" in html


def test_verify_button_reports_the_first_broken_link(client_for, manager, chain):
    tamper(
        "UPDATE console_auditevent SET actor_label = 'user:mallory' WHERE chain = %s AND seq = 3",
        chain,
    )
    client = client_for(manager)
    html = client.get(reverse("audit-verify") + "?workflow=refunds", **HX).content.decode()
    assert "Chain broken." in html
    assert "first broken link at event #3" in html
    # Without JavaScript the button is a plain GET that renders the whole page.
    page = client.get(reverse("audit-verify")).content.decode()
    assert "<html" in page
    assert "Chain broken." in page


# --- Notifications: signed webhooks to the outside (kept here with the audit trail) -----

WEBHOOK = "https://hooks.example.test/tenure"
SECRET = "s3cret-for-tests"


@pytest.fixture
def webhook(settings):
    settings.TENURE_WEBHOOK_URL = WEBHOOK
    settings.TENURE_WEBHOOK_SECRET = SECRET
    settings.TENURE_BASE_URL = "https://tenure.example.test"


def _client(status: int, seen: list) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, text="nope" if status >= 400 else "ok")

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_signature_round_trip_and_tamper():
    stamp = str(int(time.time()))
    signature = notifications.sign(b'{"a":1}', stamp, SECRET)
    assert signature.startswith("v1=")
    assert notifications.verify_signature(b'{"a":1}', stamp, signature, SECRET)
    assert not notifications.verify_signature(b'{"a":2}', stamp, signature, SECRET)
    assert not notifications.verify_signature(b'{"a":1}', stamp, signature, "other")
    old = str(int(time.time()) - 3600)
    stale = notifications.sign(b'{"a":1}', old, SECRET)
    assert not notifications.verify_signature(b'{"a":1}', old, stale, SECRET)


def test_pause_webhook_is_signed_slack_json(webhook, workflow, django_capture_on_commit_callbacks):
    workflow.paused_at = timezone.now()
    with django_capture_on_commit_callbacks() as callbacks:
        assert notifications.notify_pause(
            workflow, actor_label="user:otto", reason="Refund API <down>"
        )
    assert len(callbacks) == 1
    payload, event_id = captured_payload(callbacks)
    seen: list[httpx.Request] = []
    assert notifications.deliver(payload, event_id=event_id, client=_client(200, seen)) == 200
    [request] = seen
    body = request.content
    assert str(request.url) == WEBHOOK
    assert request.headers["Idempotency-Key"] == event_id
    assert notifications.verify_signature(
        body, request.headers["X-Tenure-Timestamp"], request.headers["X-Tenure-Signature"], SECRET
    )
    sent = json.loads(body)
    assert sent["text"] == "Paused: no model call or tool execution starts — Refunds"
    assert sent["blocks"][0]["type"] == "section"
    assert "Refund API &lt;down&gt;" in sent["blocks"][0]["text"]["text"]
    assert sent["tenure"]["event"] == "workflow.paused"
    assert sent["tenure"]["url"] == "https://tenure.example.test/w/refunds/"


def captured_payload(callbacks) -> tuple[dict, str]:
    sent: list = []
    original = notifications.send_webhook.delay
    notifications.send_webhook.delay = lambda payload, event_id: sent.append((payload, event_id))
    try:
        for callback in callbacks:
            callback()
    finally:
        notifications.send_webhook.delay = original
    return sent[0]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (503, notifications.RetryableDeliveryError),
        (429, notifications.RetryableDeliveryError),
        (400, notifications.PermanentDeliveryError),
    ],
)
def test_delivery_failures_are_classified(webhook, status, error):
    with pytest.raises(error):
        notifications.deliver({"text": "x"}, event_id="e1", client=_client(status, []))


def test_network_error_is_retryable(webhook):
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    with pytest.raises(notifications.RetryableDeliveryError, match="ConnectError"):
        notifications.deliver({"text": "x"}, event_id="e1", client=client)


def test_task_retries_transient_failures_then_delivers(webhook, monkeypatch):
    calls: list[str] = []

    def flaky(payload: dict, *, event_id: str) -> int:
        calls.append(event_id)
        if len(calls) < 3:
            raise notifications.RetryableDeliveryError("HTTP 503")
        return 200

    monkeypatch.setattr(notifications, "deliver", flaky)
    notifications.send_webhook.apply(args=[{"text": "x"}, "e-retry"])
    assert calls == ["e-retry"] * 3


def test_task_drops_a_refused_delivery(webhook, monkeypatch):
    calls: list[str] = []

    def refused(payload: dict, *, event_id: str) -> int:
        calls.append(event_id)
        raise notifications.PermanentDeliveryError("HTTP 400")

    monkeypatch.setattr(notifications, "deliver", refused)
    result = notifications.send_webhook.apply(args=[{"text": "x"}, "e-400"])
    assert result.result == 0
    assert calls == ["e-400"]


def test_nothing_is_sent_without_a_webhook_url(
    settings, workflow, django_capture_on_commit_callbacks
):
    settings.TENURE_WEBHOOK_URL = ""
    with django_capture_on_commit_callbacks() as callbacks:
        assert not notifications.notify_pause(workflow, actor_label="system", reason="x")
    assert callbacks == []


def test_sla_breach_is_notified_once(webhook, workflow, monkeypatch):
    proposal = ProposalFactory(
        run__work_item__workflow=workflow, sla_due_at=timezone.now() - timedelta(minutes=5)
    )
    ProposalFactory(
        run__work_item__workflow=workflow, sla_due_at=timezone.now() + timedelta(hours=1)
    )
    cache.delete(agent_notifications.SLA_NOTIFIED_KEY.format(pk=proposal.pk))
    sent: list = []
    monkeypatch.setattr(
        notifications.send_webhook, "delay", lambda payload, event_id: sent.append(event_id)
    )
    monkeypatch.setattr(transaction, "on_commit", lambda fn, *a, **k: fn())
    assert agent_notifications.notify_sla_breaches() == 1
    assert agent_notifications.notify_sla_breaches() == 0
    assert sent == [f"sla-{proposal.pk}"]
    cache.delete(agent_notifications.SLA_NOTIFIED_KEY.format(pk=proposal.pk))


def test_escalation_and_demotion_payloads(webhook, workflow, django_capture_on_commit_callbacks):
    escalation = EscalationFactory(work_item__workflow=workflow, detail="Loop: <same call> x3")
    change = AutonomyChange.objects.create(
        workflow=workflow,
        kind=AutonomyChange.Kind.DEMOTION,
        status=AutonomyChange.Status.APPLIED,
        from_level=AutonomyLevel.SUPERVISED,
        to_level=AutonomyLevel.SHADOW,
        reason="Sampled agreement below the floor.",
    )
    with django_capture_on_commit_callbacks() as callbacks:
        agent_notifications.notify_escalation(escalation)
    payload, event_id = captured_payload(callbacks)
    assert event_id == f"escalation-{escalation.pk}"
    assert "&lt;same call&gt;" in payload["blocks"][0]["text"]["text"]
    with django_capture_on_commit_callbacks() as callbacks:
        notifications.notify_demotion(change)
    payload, event_id = captured_payload(callbacks)
    assert payload["text"] == "Demoted supervised → shadow — Refunds"
    assert "by the circuit breaker" in payload["blocks"][0]["text"]["text"]


@pytest.mark.django_db(transaction=True)
def test_two_transactions_locking_rows_and_auditing_in_opposite_orders_do_not_deadlock():
    """The regression for the soak's deadlocks: one transaction audits and then locks
    a row the other holds, while the other audits in the same workflow before it
    commits. With the chain head locked until commit this deadlocked; now
    appending takes no lock and both commit."""
    import threading

    from django.db import connections

    from governance.models import Workflow

    workflow = Workflow.objects.create(slug="race", name="Race")
    row = WorkItemFactory(workflow=workflow)
    audited = threading.Event()
    errors: list[BaseException] = []

    def audit_then_lock() -> None:
        try:
            with transaction.atomic():
                audit_append(action="test.first", actor="system", workflow=workflow)
                audited.set()
                WorkItem.objects.select_for_update().get(pk=row.pk)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)
        finally:
            connections.close_all()

    def lock_then_audit() -> None:
        try:
            with transaction.atomic():
                WorkItem.objects.select_for_update().get(pk=row.pk)
                audited.wait(5)
                time.sleep(0.2)  # the other transaction is now waiting for the row
                audit_append(action="test.second", actor="system", workflow=workflow)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)
        finally:
            connections.close_all()

    holder = threading.Thread(target=lock_then_audit)
    holder.start()
    time.sleep(0.1)  # it holds the row first
    waiter = threading.Thread(target=audit_then_lock)
    waiter.start()
    holder.join(10)
    waiter.join(10)
    assert errors == []
    events = dict(AuditEvent.objects.values_list("action", "seq"))
    assert set(events) == {"test.first", "test.second"}
    assert sorted(events.values()) == [1, 2], "both committed, both sealed"
    assert audit_verify(chain=chain_key(workflow)) == []


def test_sealing_costs_the_same_few_queries_however_many_events_wait(workflow):
    from django.test.utils import CaptureQueriesContext

    audit_append(action="test.first", actor="system", workflow=workflow)
    audit_seal()  # the chain's head row exists from here on
    for n in (1, 20):
        for i in range(n):
            audit_append(action=f"test.{i}", actor="system", workflow=workflow)
        with CaptureQueriesContext(connection) as ctx:
            assert audit_seal(chain=chain_key(workflow)) == n
        # A statement prepared on the server is logged as "QUERY = '<sql>' - PARAMS = ...".
        statements = [
            q["sql"].removeprefix("QUERY = ").lstrip("'\"").split()[0] for q in ctx.captured_queries
        ]
        # Lock the head, read the waiting events, update them all (one WITH ... UPDATE),
        # move the head (the savepoint is the test's own transaction; in production it
        # is BEGIN/COMMIT).
        assert [s for s in statements if "SAVEPOINT" not in s and s != "RELEASE"] == [
            "SELECT",
            "SELECT",
            "WITH",
            "UPDATE",
        ]
    assert audit_verify(chain=chain_key(workflow)) == []


@pytest.mark.django_db(transaction=True)
def test_the_background_sealer_seals_a_burst_of_commits_off_the_request_path(settings):
    from governance import audit
    from governance.models import Workflow

    settings.TENURE_AUDIT_SEAL = "background"
    audit._sealer.IDLE = 0.2  # lets the thread close its connection before teardown
    workflow = Workflow.objects.create(slug="burst", name="Burst")
    for i in range(30):
        with transaction.atomic():
            audit_append(action=f"test.{i}", actor="system", workflow=workflow)
    deadline = time.monotonic() + 10
    while AuditEvent.objects.filter(seq__isnull=True).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    seqs = list(AuditEvent.objects.order_by("id").values_list("seq", flat=True))
    assert seqs == list(range(1, 31)), "sealed in the order written"
    assert audit_verify(chain=chain_key(workflow)) == []
    time.sleep(0.5)  # the idle sealer has closed its connection
