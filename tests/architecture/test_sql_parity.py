"""Every hand-written statement (governance.sql, agents.sql, reviews.sql, demo.sql)
answers exactly what its ORM form answers, on data with every status in it."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from agents import sql as agents_sql
from agents.models import Execution, Proposal, RiskClass, Run, Step, ToolDefinition, WorkItem
from demo import sql as demo_sql
from demo.models import SandboxOrder, SandboxRefund
from governance import sql as governance_sql
from governance.audit import audit_append
from governance.models import ApiToken, AuditChain, AuditEvent, AutonomyLevel, ToolGrant, Workflow
from governance.permissions import MANAGE, REVIEW, VIEW, Role, roles_ensure, workflow_grant_role
from reviews import sql as reviews_sql
from reviews.models import Claim, Decision
from reviews.selectors import awaiting_review_q, awaiting_sample_q
from tests.factories import (
    ProposalFactory,
    RunFactory,
    ToolGrantFactory,
    UserFactory,
    WorkflowFactory,
    WorkItemFactory,
)

pytestmark = pytest.mark.django_db

TOOLS = ("create_refund", "draft_customer_reply", "get_order")


@pytest.fixture
def world():
    """Two workflows with proposals in every status, runs, steps, grants, decisions,
    executions and claims, laid out at random (seeded)."""
    rng = random.Random(20261203)
    reviewer = UserFactory(username="parity-reviewer")
    workflows = [WorkflowFactory(slug=f"parity-{n}") for n in range(2)]
    workflows[1].paused = True
    workflows[1].save(update_fields=["paused"])
    for workflow in workflows:
        for tool in TOOLS[:2]:
            ToolGrantFactory(
                workflow=workflow, tool=tool, autonomy_level=rng.choice(AutonomyLevel.values)
            )
        ToolDefinition.objects.create(
            workflow=workflow,
            name="lookup_ticket",
            parameters={"type": "object", "properties": {}},
            risk_class=RiskClass.READ,
            endpoint_url="http://127.0.0.1:9/x",
        )
        for n in range(12):
            item = WorkItemFactory(
                workflow=workflow,
                external_id=f"{workflow.slug}-{n}",
                status=rng.choice(WorkItem.Status.values),
            )
            run = RunFactory(work_item=item, status=Run.Status.PROPOSED)
            for index in range(rng.randint(0, 3)):
                Step.objects.create(run=run, index=index + 1, kind=Step.Kind.NOTE, name=f"s{index}")
            for sequence in range(1, rng.randint(1, 3) + 1):
                status = rng.choice(Proposal.Status.values)
                proposal = ProposalFactory(
                    run=run,
                    sequence=sequence,
                    tool=rng.choice(TOOLS + ("lookup_ticket",)),
                    status=status,
                    priority=rng.choice([0, 10, 50]),
                    auto_executed=status == Proposal.Status.PENDING and rng.random() < 0.3,
                    sampled_for_review=status == Proposal.Status.EXECUTED and rng.random() < 0.6,
                )
                Proposal.objects.filter(pk=proposal.pk).update(
                    created_at=timezone.now() - timedelta(minutes=rng.randint(0, 500))
                )
                if status in Proposal.DECIDED or (
                    status == Proposal.Status.EXECUTED and rng.random() < 0.5
                ):
                    Decision.objects.create(
                        proposal=proposal,
                        reviewer=reviewer,
                        verdict={"edited": "edit", "rejected": "reject"}.get(status, "accept"),
                        reason="other" if status == Proposal.Status.REJECTED else "",
                        # A shadow acceptance records what the human did; it never runs.
                        autonomy_level=rng.choice([AutonomyLevel.SHADOW, AutonomyLevel.SUPERVISED]),
                    )
                if status in (Proposal.Status.EXECUTED, Proposal.Status.EXECUTION_FAILED):
                    Execution.objects.create(
                        proposal=proposal,
                        idempotency_key=f"key-{proposal.pk}",
                        arguments=proposal.arguments,
                        arguments_hash=proposal.arguments_hash,
                        status=Execution.Status.SUCCEEDED,
                    )
                if status == Proposal.Status.PENDING and rng.random() < 0.3:
                    Claim.objects.create(
                        proposal=proposal,
                        reviewer=reviewer,
                        claimed_at=timezone.now(),
                        expires_at=timezone.now() + timedelta(minutes=rng.choice([-5, 5])),
                    )
    return {"workflows": workflows, "reviewer": reviewer}


def _fields(obj, names=None) -> dict:
    names = names or [f.attname for f in type(obj)._meta.concrete_fields]
    return {name: getattr(obj, name) for name in names}


# --- governance.sql ----------------------------------------------------------------------


def test_workflow_reads_match_the_orm(world):
    for workflow in Workflow.objects.all():
        assert governance_sql.workflow_state(workflow.pk) == (
            workflow.paused,
            workflow.autonomy_level,
        )
        assert governance_sql.workflow_paused(workflow.pk) is workflow.paused
        assert governance_sql.workflow_paused(workflow.pk, share_lock=False) is workflow.paused
        orm = {g.tool: _fields(g) for g in ToolGrant.objects.filter(workflow=workflow)}
        assert {t: _fields(g) for t, g in governance_sql.grants_of(workflow.pk).items()} == orm
        for tool in TOOLS:
            grant = ToolGrant.objects.filter(workflow=workflow, tool=tool).first()
            for locked in (True, False):
                found = governance_sql.grant_of(workflow.pk, tool, locked=locked)
                assert (found and _fields(found)) == (grant and _fields(grant))
            found, paused = governance_sql.grant_and_pause(workflow.pk, tool)
            assert (found and _fields(found), paused) == (grant and _fields(grant), workflow.paused)


def test_the_permission_read_matches_django_and_guardian(world):
    roles = roles_ensure()
    workflow = world["workflows"][0]
    users = [UserFactory(username=f"perm-{n}") for n in range(4)]
    workflow_grant_role(user=users[0], workflow=workflow, role=Role.REVIEWER)
    users[1].groups.add(roles[Role.OPS])
    group = Group.objects.create(name="parity-group")
    users[2].groups.add(group)
    from guardian.shortcuts import assign_perm

    assign_perm(MANAGE, group, workflow)
    assign_perm(VIEW, group, workflow)
    from django.contrib.contenttypes.models import ContentType

    content_type = ContentType.objects.get_for_model(Workflow)
    for user in users:
        for perm in (VIEW, REVIEW, MANAGE):
            params = []
            for codename in (VIEW.split(".")[1], perm.split(".")[1]):
                params += [content_type.pk, codename, *[user.pk] * 4]
            found, may_view, may_act = governance_sql.workflow_with_permissions(
                slug=workflow.slug, held_params=params
            )
            assert found.pk == workflow.pk
            fresh = type(user).objects.get(pk=user.pk)  # no permission cache
            assert may_view == (fresh.has_perm(VIEW) or fresh.has_perm(VIEW, workflow)), user
            assert may_act == (fresh.has_perm(perm) or fresh.has_perm(perm, workflow)), user
    assert governance_sql.workflow_with_permissions(slug="nope", held_params=None)[0] is None


def test_the_token_scope_read_matches_the_orm(world):
    token = ApiToken.objects.create(name="parity", prefix="tp_parity", token_hash="x")
    token.workflows.add(world["workflows"][0])
    for workflow in Workflow.objects.all():
        orm = token.workflows.filter(slug=workflow.slug).first()
        found = governance_sql.workflow_in_token_scope(token_id=token.pk, slug=workflow.slug)
        assert (found and _fields(found)) == (orm and _fields(orm))


def test_the_audit_seal_reads_match_the_orm(world):
    workflow = world["workflows"][0]
    audit_append(action="parity.one", actor="system", workflow=workflow)
    audit_append(action="parity.two", actor="system", workflow=workflow)
    key = f"workflow:{workflow.pk}"
    AuditChain.objects.get_or_create(key=key)  # sealing waits for a commit that never comes
    unsealed = governance_sql.audit_unsealed(key, 100)
    orm = AuditEvent.objects.filter(chain=key, seq__isnull=True).order_by("id")
    assert [e.pk for e in unsealed] == [e.pk for e in orm]
    head = AuditChain.objects.get(key=key)
    assert governance_sql.audit_head_locked(key) == (head.pk, head.seq, head.head_hash)


# --- agents.sql ------------------------------------------------------------------------------


def test_the_claim_read_matches_the_orm(world):
    for item in WorkItem.objects.all():
        found = agents_sql.item_to_claim(item.pk)
        assert _fields(found) == _fields(item)
        assert _fields(found.workflow) == _fields(item.workflow)
        latest = item.runs.order_by("-attempt").values_list("pk", flat=True).first()
        assert found.latest_run_id == latest
    assert agents_sql.item_to_claim(10**9) is None


def test_the_plan_read_matches_the_orm(world):
    for run in Run.objects.all():
        orm = list(run.proposals.select_related("workflow").order_by("sequence"))
        for locked in (True, False):
            plan = agents_sql.plan(run.pk, locked=locked)
            assert [_fields(p) for p in plan] == [_fields(p) for p in orm]
            for proposal, expected in zip(plan, orm, strict=True):
                decision = Decision.objects.filter(proposal=expected).first()
                assert (proposal.decision.pk if _has_decision(proposal) else None) == (
                    decision.pk if decision else None
                )
                grant = ToolGrant.objects.filter(
                    workflow_id=expected.workflow_id, tool=expected.tool
                ).first()
                assert proposal.grant_level == (grant.autonomy_level if grant else None)
                assert proposal.grant_enabled == (grant.enabled if grant else None)
                assert _fields(proposal.workflow) == _fields(expected.workflow)


def _has_decision(proposal: Proposal) -> bool:
    try:
        return proposal.decision is not None
    except Decision.DoesNotExist:
        return False


def test_the_execution_reads_match_the_orm(world):
    unblocked = 0  # an earlier action not executed that holds nothing after it
    for proposal in Proposal.objects.all():
        found = agents_sql.proposal_to_execute(proposal.pk)
        assert _fields(found) == _fields(proposal)
        assert _fields(found.work_item) == _fields(proposal.work_item)
        assert found.plan_size == Proposal.objects.filter(run_id=proposal.run_id).count()
        running = [AutonomyLevel.SUPERVISED, AutonomyLevel.LIMITED, AutonomyLevel.AUTONOMOUS]
        runnable_grant = ToolGrant.objects.filter(
            workflow=OuterRef("workflow"), tool=OuterRef("tool"), enabled=True,
            autonomy_level__in=running,
        )  # fmt: skip
        waiting = (
            Proposal.objects.filter(run_id=proposal.run_id, sequence__lt=proposal.sequence)
            .filter(
                Q(
                    status__in=[
                        Proposal.Status.PENDING,
                        Proposal.Status.CANCELLED,
                        Proposal.Status.EXECUTION_FAILED,
                    ]
                )
                | Q(
                    Exists(runnable_grant),
                    status__in=[Proposal.Status.ACCEPTED, Proposal.Status.EDITED],
                    decision__autonomy_level__in=running,
                    workflow__autonomy_level__in=running,
                )
            )
            .exists()
        )
        assert (
            agents_sql.earlier_action_waiting(run_id=proposal.run_id, sequence=proposal.sequence)
            is waiting
        )
        earlier = Proposal.objects.filter(run_id=proposal.run_id, sequence__lt=proposal.sequence)
        unblocked += not waiting and earlier.exclude(status=Proposal.Status.EXECUTED).exists()
        human = Proposal.objects.filter(run_id=proposal.run_id).awaiting_review().exists()
        assert agents_sql.human_decision_waiting(run_id=proposal.run_id) is human
    assert unblocked, "the world holds rejected and shadow-accepted earlier actions"
    for execution in Execution.objects.all():
        assert _fields(agents_sql.execution_by_key(execution.idempotency_key)) == _fields(execution)
    assert agents_sql.execution_by_key("no-such-key") is None


def test_the_one_statement_ingest_matches_the_orm(world):
    workflow = world["workflows"][0]
    rows = [("new-1", "First", {"text": "a"}), (f"{workflow.slug}-0", "Taken", {"text": "b"})]
    inserted = agents_sql.work_items_insert_new(
        workflow=workflow, rows=rows, source=WorkItem.Source.API, principal="integration:x"
    )
    assert list(inserted) == ["new-1"]
    stored = WorkItem.objects.get(workflow=workflow, external_id="new-1")
    built = inserted["new-1"]
    for name in ("pk", "title", "payload", "source", "source_principal", "status"):
        assert getattr(built, name) == getattr(stored, name), name


# --- reviews.sql -----------------------------------------------------------------------------


def test_the_queue_reads_match_the_orm(world):
    now = timezone.now()
    for workflow in Workflow.objects.all():
        review = Proposal.objects.filter(awaiting_review_q(), workflow=workflow)
        pending, escalations, oldest, _ = reviews_sql.queue_size(workflow.pk, cap=1000)
        assert pending == review.count()
        oldest_pending = (
            Proposal.objects.filter(workflow=workflow, status=Proposal.Status.PENDING)
            .order_by("created_at")
            .values_list("created_at", flat=True)
            .first()
        )
        assert oldest == oldest_pending
        assert reviews_sql.oldest_pending_at(workflow.pk) == oldest_pending
        sample = Proposal.objects.filter(awaiting_sample_q(), workflow=workflow)
        rows = reviews_sql.queue_rows_fetch(
            workflow_ids=[workflow.pk], filters_sql="", filter_params=[], limit=1000
        )
        assert sorted(r[0] for r in rows) == sorted([p.pk for p in review] + [p.pk for p in sample])
        holders = {
            c.proposal_id: c.reviewer.username
            for c in Claim.objects.filter(proposal__workflow=workflow)
        }
        assert {r[0]: r[-1] for r in rows if r[-1]} == {
            pk: name for pk, name in holders.items() if pk in {r[0] for r in rows}
        }
    ids = [w.pk for w in world["workflows"]]
    assert reviews_sql.tool_names(ids) == sorted(
        set(ToolGrant.objects.filter(workflow_id__in=ids).values_list("tool", flat=True))
    )
    assert now  # the fixture's times are all before now


def test_the_card_reads_match_the_orm(world):
    for proposal in Proposal.objects.all()[:20]:
        rows = reviews_sql.card_rows(proposal_id=proposal.pk, with_workflow=True)
        plan = list(Proposal.objects.filter(run_id=proposal.run_id).order_by("sequence"))
        assert [r[0] for r in rows] == [p.pk for p in plan]
        steps = reviews_sql.steps_of(proposal.run_id)
        orm = list(Step.objects.filter(run_id=proposal.run_id).order_by("index"))
        assert [_fields(s) for s in steps] == [_fields(s) for s in orm]
        row = reviews_sql.grant_row(workflow_id=proposal.workflow_id, tool=proposal.tool)
        grant = ToolGrant.objects.filter(
            workflow_id=proposal.workflow_id, tool=proposal.tool
        ).first()
        defined = ToolDefinition.objects.filter(
            workflow_id=proposal.workflow_id, name=proposal.tool
        ).exists()
        assert (None if row[0] is None else bool(row[0]), row[1], bool(row[2])) == (
            grant.enabled if grant else None,
            grant.autonomy_level if grant else None,
            defined,
        )
        locked = reviews_sql.plan_locked(proposal_id=proposal.pk, workflow_id=None)
        assert [r[0] for r in locked] == [p.pk for p in plan]
        assert reviews_sql.plan_locked(proposal_id=proposal.pk, workflow_id=10**9) == []


def test_the_claim_statements_match_the_orm(world):
    reviewer, other = world["reviewer"], UserFactory(username="parity-other")
    now = timezone.now()
    claimable = (
        Proposal.objects.filter(awaiting_review_q())
        .annotate(live=Exists(Claim.objects.filter(proposal=OuterRef("pk"), expires_at__gt=now)))
        .filter(live=False)
        .first()
    )
    claim = reviews_sql.claim_upsert(
        proposal_id=claimable.pk, reviewer_id=other.pk, now=now, expires=now + timedelta(minutes=5)
    )
    assert Claim.objects.get(proposal=claimable).reviewer_id == other.pk
    held = reviews_sql.claim_upsert(
        proposal_id=claimable.pk,
        reviewer_id=reviewer.pk,
        now=now,
        expires=now + timedelta(minutes=5),
    )
    assert held is None, "a live claim is not taken over"
    assert (
        reviews_sql.claim_take(proposal_id=claimable.pk, reviewer_id=other.pk, token=uuid.uuid4())
        is None
    )
    taken = reviews_sql.claim_take(
        proposal_id=claimable.pk, reviewer_id=other.pk, token=claim.token
    )
    assert taken.pk == claim.pk
    assert not Claim.objects.filter(pk=claim.pk).exists()


# --- demo.sql ----------------------------------------------------------------------------------


def test_the_refund_read_matches_the_orm(world):
    order = SandboxOrder.objects.create(
        number="P-1",
        customer_name="Pat",
        customer_email="pat@example.test",
        total=Decimal("50.00"),
        placed_at=timezone.now(),
    )
    refund = SandboxRefund.objects.create(
        order=order, amount=Decimal("5.00"), reason="x", idempotency_key="k-1"
    )
    found, refund_id, amount = demo_sql.order_locked_with_refund(number="P-1", key="k-1")
    assert _fields(found) == _fields(order)
    assert (refund_id, amount) == (refund.pk, refund.amount)
    assert demo_sql.order_locked_with_refund(number="P-1", key="k-2")[1:] == (None, None)
    assert demo_sql.order_locked_with_refund(number="nope", key="k-1") == (None, None, None)
