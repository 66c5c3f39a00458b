"""Factories for test data. Build the least that a test needs; say the rest."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from agents.models import Escalation, Proposal, RiskClass, Run, WorkItem
from governance.models import AutonomyLevel, ToolGrant, Workflow

PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.test")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def saved(self, create: bool, extracted: object, **kwargs: object) -> None:
        if create:
            self.save()


class WorkflowFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workflow
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"workflow-{n}")
    name = factory.LazyAttribute(lambda w: w.slug.replace("-", " ").title())
    description = "A test workflow."
    autonomy_level = AutonomyLevel.SHADOW


class ToolGrantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ToolGrant

    workflow = factory.SubFactory(WorkflowFactory)
    tool = "create_refund"
    autonomy_level = AutonomyLevel.SHADOW


class WorkItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WorkItem

    workflow = factory.SubFactory(WorkflowFactory)
    external_id = factory.Sequence(lambda n: f"ext-{n}")
    title = "Refund request"
    payload = factory.LazyAttribute(
        lambda _: {"text": "Please refund order A-1001, it arrived broken."}
    )
    source = WorkItem.Source.API
    status = WorkItem.Status.AWAITING_REVIEW


class RunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Run

    work_item = factory.SubFactory(WorkItemFactory)
    status = Run.Status.PROPOSED
    stop_reason = Run.StopReason.COMPLETED
    autonomy_level = factory.LazyAttribute(lambda r: r.work_item.workflow.autonomy_level)
    model = "demo-small"
    tokens_in = 900
    tokens_out = 120
    cost_usd = Decimal("0.000207")
    tool_calls = 2


def args_hash(arguments: dict) -> str:
    return hashlib.sha256(json.dumps(arguments, sort_keys=True).encode()).hexdigest()


class ProposalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Proposal

    run = factory.SubFactory(RunFactory)
    work_item = factory.LazyAttribute(lambda p: p.run.work_item)
    workflow = factory.LazyAttribute(lambda p: p.run.work_item.workflow)
    sequence = 1
    tool = "create_refund"
    arguments = factory.LazyAttribute(
        lambda _: {"order_number": "A-1001", "amount": "42.00", "reason": "Arrived broken"}
    )
    arguments_hash = factory.LazyAttribute(lambda p: args_hash(p.arguments))
    rationale = "The customer reports damage; the order total covers the refund."
    risk_class = RiskClass.MONEY
    verdict = Proposal.Verdict.NEEDS_APPROVAL
    verdict_rule = "Refunds need approval in shadow mode."
    autonomy_level = factory.LazyAttribute(lambda p: p.workflow.autonomy_level)
    status = Proposal.Status.PENDING


class EscalationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Escalation

    work_item = factory.SubFactory(WorkItemFactory, status=WorkItem.Status.ESCALATED)
    workflow = factory.LazyAttribute(lambda e: e.work_item.workflow)
    reason = Escalation.Reason.BUDGET
    detail = "Tool-call budget of 8 reached."
    packet = factory.LazyAttribute(lambda _: {"budget": "max_tool_calls=8", "steps": []})
