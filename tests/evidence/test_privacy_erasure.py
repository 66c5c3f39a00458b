"""Erasure of one data subject: a workflow seeded with two people's data in every kind
of record; one is erased. Nothing of theirs is left readable anywhere in the database
(every text and JSON column of every table, scanned with SQL), in the logs or in the
exports; the other person's data is intact; the audit chain verifies; the dashboard's
and the gate's numbers are the same."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import asdict
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from agents import services as agent_services
from agents.evals.cases import eval_case_from_decision, eval_case_from_escalation
from agents.models import Escalation, EvalCase, Execution, Proposal, Run, Step, WorkItem
from agents.runner import run_work_item
from agents.services import proposal_execute
from evidence import metrics
from evidence.exports import export_response
from evidence.gate import gate_evaluate
from evidence.metrics import Scope
from evidence.privacy import subject_erase
from evidence.views.dashboards import evidence_pack_data
from governance import privacy
from governance.models import AuditEvent, DataSubject, SubjectIdentifier
from governance.permissions import Role, roles_ensure, workflow_grant_role
from reviews import claims, services
from reviews.models import Decision
from tests.agents.stub_openai import (  # noqa: F401 - fixtures
    make_refund_workflow,
    stub_openai_fixture,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

POLICY = {
    "subject_fields": ["customer_id", "email", "phone"],
    "personal_fields": ["name"],
    "personal_arguments": {"draft_customer_reply": ["to"]},
}
CORA = {
    "customer_id": "CUST-77120",
    "email": "cora@example.com",
    "phone": "+1 415 555 0142",
    "name": "Cora Diaz",
}
BOB = {
    "customer_id": "CUST-90311",
    "email": "bob.stone@example.org",
    "phone": "+44 20 7946 0958",
    "name": "Bob Stone",
}


# Tables of the demo's sandbox systems stand for the customer's own systems of record
# (the shop, the mailbox): what a tool did there is the side effect, not Tenure's record.
def _outside_tenure() -> set[str]:
    from django.apps import apps

    return {m._meta.db_table for m in apps.get_app_config("demo").get_models()}


def _item(workflow, scenario: str, person: dict[str, str], external_id: str) -> WorkItem:
    text = f"[scenario:{scenario}] Order A-1001 arrived broken. {person['name']}, {person['email']}"
    item, _ = agent_services.work_item_create(
        workflow=workflow,
        external_id=external_id,
        payload={"text": text, **person},
        source=WorkItem.Source.API,
    )
    return item


def _decide(proposal: Proposal, reviewer, verdict: str = "accept", **extra: Any) -> Decision:
    claim = claims.claim_proposal(reviewer=reviewer, proposal=proposal)
    assert claim is not None
    return services.proposal_decide(
        proposal_id=proposal.pk,
        reviewer=reviewer,
        claim_token=claim.token,
        verdict=verdict,
        **extra,
    )


def _seed(stub_openai, policy: dict[str, Any] = POLICY, **fields: Any) -> dict[str, Any]:
    workflow = make_refund_workflow(level="supervised", data_policy=policy, **fields)
    reviewer = UserFactory(username="rita")
    reviewer.groups.add(roles_ensure()[Role.REVIEWER])
    workflow_grant_role(user=reviewer, workflow=workflow, role=Role.REVIEWER)

    # Cora: a plan (refund + reply) that a reviewer judges (the reply edited) and that
    # executes; an escalation with its packet; eval cases from both.
    plan_item = _item(workflow, "plan", CORA, "t-100")
    run = run_work_item(work_item_id=plan_item.pk)
    assert run.status == Run.Status.PROPOSED
    refund, reply = run.proposals.order_by("sequence")
    _decide(refund, reviewer)
    shown = privacy.reveal(reply.arguments)
    assert shown["to"] == CORA["email"]  # a reviewer sees the value
    decision = _decide(
        reply,
        reviewer,
        verdict="edit",
        final_arguments={**shown, "body": f"Dear {CORA['name']}, we refunded $42.00."},
    )
    for proposal in (refund, reply):
        execution = proposal_execute(proposal_id=proposal.pk)
        assert execution is not None
        assert execution.status == Execution.Status.SUCCEEDED
    escalated = _item(workflow, "ungranted", CORA, "t-101")
    run_work_item(work_item_id=escalated.pk)
    escalation = Escalation.objects.get(work_item=escalated)
    eval_case_from_decision(decision=decision, actor=reviewer)
    eval_case_from_escalation(escalation=escalation, actor=reviewer)

    # Bob: a refund, accepted and executed.
    bob_item = _item(workflow, "good", BOB, "t-200")
    (bob_refund,) = run_work_item(work_item_id=bob_item.pk).proposals.all()
    _decide(bob_refund, reviewer)
    proposal_execute(proposal_id=bob_refund.pk)
    return {"workflow": workflow, "reviewer": reviewer, "bob_item": bob_item, "cora": plan_item}


def _text_columns() -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.table_name, c.column_name FROM information_schema.columns c
            JOIN information_schema.tables t
              ON t.table_name = c.table_name AND t.table_schema = c.table_schema
            WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
              AND c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb')
            ORDER BY 1, 2
            """
        )
        return list(cursor.fetchall())


def _found_in_database(values: list[str]) -> list[tuple[str, str, str]]:
    """(table, column, value) for every column whose text holds one of the values."""
    hits = []
    outside = _outside_tenure()
    assert "agents_sandboxmessage" in outside
    with connection.cursor() as cursor:
        for table, column in _text_columns():
            if table in outside:
                continue
            for value in values:
                cursor.execute(
                    f'SELECT count(*) FROM "{table}" WHERE "{column}"::text ILIKE %s',
                    [f"%{value}%"],
                )
                if cursor.fetchone()[0]:
                    hits.append((table, column, value))
    return hits


def _exports(workflow) -> str:
    out = []
    for kind in ("decisions", "eval_cases"):
        for fmt in ("jsonl", "csv"):
            response = export_response(kind=kind, workflow=workflow, fmt=fmt, actor="test")
            out.append(b"".join(response.streaming_content).decode())
    return "\n".join(out)


def _numbers(workflow) -> dict[str, Any]:
    now = timezone.now()
    scope = Scope.for_workflow(workflow, since=metrics.window_start(30, now))
    m = metrics.workflow_metrics(scope, workflow)
    pack = evidence_pack_data(workflow, scope=scope, m=m)
    gate = gate_evaluate(workflow=workflow, from_level="supervised", to_level="limited", now=now)
    return {
        "metrics": json.loads(json.dumps(pack["metrics"], default=str)),
        "gate": [asdict(c) for c in gate.criteria],
        "rows": {
            model.__name__: model.objects.count()
            for model in (WorkItem, Run, Step, Proposal, Decision, Execution, Escalation, EvalCase)
        },
    }


def test_erasing_a_subject_leaves_nothing_of_theirs_readable_and_the_evidence_unchanged(
    stub_openai, caplog
):
    caplog.set_level(logging.DEBUG)
    seeded = _seed(stub_openai)
    workflow = seeded["workflow"]
    cora_values = list(CORA.values())

    # Minimal storage already: what the workflow declares is stored as tokens, and the
    # exports carry no value. (A tool's output about Cora in Bob's trace, the order's
    # customer name, is plaintext until she is erased: it is found and scrubbed then.)
    for item in WorkItem.objects.all():
        assert not any(v.lower() in json.dumps(item.payload).lower() for v in cora_values)
    assert not any(v.lower() in _exports(workflow).lower() for v in cora_values)
    # Cora's tokens are in every kind of record.
    cora = DataSubject.objects.get(pk=privacy.subject_ids_in(seeded["cora"].payload).pop())
    needle = f"[pii:{cora.pk}:"
    assert needle in json.dumps(Proposal.objects.get(tool="draft_customer_reply").arguments)
    assert needle in json.dumps(Decision.objects.get(verdict="edit").final_arguments)
    assert needle in json.dumps(Escalation.objects.get().packet)
    assert any(needle in json.dumps([s.input, s.output]) for s in Step.objects.all())
    assert all(needle in json.dumps(c.payload) for c in EvalCase.objects.all())
    before = _numbers(workflow)
    audit_before = AuditEvent.objects.count()

    stdout = io.StringIO()
    call_command("erase_subject", CORA["email"], "--workflow", workflow.slug, stdout=stdout)
    answer = json.loads(stdout.getvalue())
    assert AuditEvent.objects.count() == audit_before + 1  # the erasure's own event

    # The answer lists what was erased, kind by kind.
    assert answer["subjects"] == [cora.pk]
    records = answer["records"]
    assert records["work_items"] == 2
    assert records["proposals"] >= 1
    assert records["decisions"] == 1
    assert records["executions"] >= 1
    assert records["packets"] == 1
    assert records["traces"] >= 1
    assert records["eval_cases"] == 2
    # Her key and her identifiers' look-ups are gone; her tokens read "[erased]".
    cora.refresh_from_db()
    assert cora.wrapped_key is None
    assert cora.erased_at is not None
    assert not SubjectIdentifier.objects.filter(subject=cora).exists()
    assert privacy.reveal(WorkItem.objects.get(external_id="t-100").payload)["email"] == "[erased]"
    reply = Proposal.objects.get(tool="draft_customer_reply")
    assert privacy.reveal(reply.arguments)["to"] == "[erased]"
    # Nothing of hers anywhere: database, logs, exports.
    assert _found_in_database(cora_values) == []
    assert not any(v.lower() in caplog.text.lower() for v in cora_values)
    assert not any(v.lower() in _exports(workflow).lower() for v in cora_values)
    # Bob is intact.
    bob = privacy.reveal(WorkItem.objects.get(pk=seeded["bob_item"].pk).payload)
    assert {k: bob[k] for k in BOB} == BOB
    assert privacy.subjects_find(BOB["email"], workflow)
    # The erasure is one audit event, with counts and no value; the chain verifies.
    event = AuditEvent.objects.get(action="privacy.subject.erased")
    assert event.data["subject"] == cora.pk
    assert not any(v.lower() in json.dumps(event.data).lower() for v in cora_values)
    call_command("verify_audit", stdout=io.StringIO())
    # The dashboard's and the gate's numbers are unchanged.
    assert _numbers(workflow) == before


def test_an_unknown_identifier_erases_nothing_and_says_so(stub_openai):
    workflow = make_refund_workflow(level="supervised", data_policy=POLICY)
    _item(workflow, "good", BOB, "t-300")
    with pytest.raises(LookupError):
        subject_erase(identifier="nobody@example.net", actor="test", workflow=workflow)
    assert not AuditEvent.objects.filter(action="privacy.subject.erased").exists()
    assert DataSubject.objects.filter(erased_at__isnull=True).count() == 1
