"""The kill switch against a live worker, measured.

Time-to-stop is the time from the pause commit to the last model call (as the
model server received it) or tool execution (its RUNNING row) that STARTED. It
must not be positive: nothing starts after the pause commits. A side effect may
land a moment after the pause only as part of an execution that started before.
In-flight runs stop at their next step and escalate with reason "paused"; the
workflow page lists what is still in flight.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from agents import services
from agents.models import Escalation, Execution, Run, WorkItem
from demo.models import SandboxOrder, SandboxRefund
from governance.models import AutonomyLevel, Workflow
from governance.services import workflow_pause
from tests.agents.stub_openai import (  # noqa: F401 - fixtures
    item_payload,
    make_refund_workflow,
    stub_openai_env_fixture,
    stub_openai_fixture,
)

ITEMS = 24


def _wait(predicate, timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def measure_kill_switch(stub, *, items: int = ITEMS, pause_after_refunds: int = 2) -> dict:
    """Ingest items at limited (runs, then automatic refunds), pause mid-flight, and
    measure. Used by this test and by bench/kill_switch_bench.py."""
    model_calls: list[float] = []
    respond = stub.respond

    def timed(body):
        model_calls.append(time.time())
        return respond(body)

    stub.respond = timed
    workflow = make_refund_workflow(
        slug="kill-switch", level=AutonomyLevel.LIMITED, sample_rate=Decimal("0"), bound=True
    )
    SandboxOrder.objects.filter(number="A-1001").update(total=Decimal("100000"))
    with transaction.atomic():
        for i in range(items):
            # Every third item thinks slowly, so runs are mid-model-call at the pause.
            scenario = "slow" if i % 3 == 0 else "within_cap"
            services.work_item_create(
                workflow=workflow,
                external_id=f"ks-{i}",
                # Distinct texts: identical model requests would be served from the cache.
                payload=item_payload(
                    workflow, f"[scenario:{scenario}] Order A-1001 arrived broken (#{i})."
                ),
                source="api",
            )

    def mid_flight() -> bool:
        # Refunds are landing and a run is thinking right now: pause at that moment.
        return (
            SandboxRefund.objects.count() >= pause_after_refunds
            and Run.objects.filter(work_item__workflow=workflow, status=Run.Status.RUNNING).exists()
        )

    assert _wait(mid_flight, timeout=90), "no refund landed while a run was in flight"

    workflow_pause(workflow=workflow, actor="ops:drill", reason="kill switch drill")
    committed = time.time()  # measured after the commit returned: a late bound
    in_flight_at_pause = Run.objects.filter(
        work_item__workflow=workflow, status=Run.Status.RUNNING
    ).count()

    def settled() -> bool:
        busy_runs = Run.objects.filter(
            work_item__workflow=workflow, status=Run.Status.RUNNING
        ).exists()
        busy_executions = Execution.objects.filter(status=Execution.Status.RUNNING).exists()
        return not busy_runs and not busy_executions

    assert _wait(settled), "in-flight work did not stop"
    drained = time.time()
    time.sleep(1.5)  # queued tasks still arriving must find the pause and do nothing

    def epoch(value: datetime | None) -> float | None:
        return value.astimezone(UTC).timestamp() if value else None

    # What starts: a model request (as the model server received it) and an
    # execution (its RUNNING row commits under a lock the pause conflicts with).
    starts = {
        "model_call": max(model_calls, default=None),
        "execution": epoch(
            Execution.objects.order_by("-started_at").values_list("started_at", flat=True).first()
        ),
    }
    last_start = max(v for v in starts.values() if v is not None)
    # A side effect belongs to an execution; it may land just after the pause only
    # when its execution had started before it.
    last_side_effect = epoch(
        SandboxRefund.objects.order_by("-created_at").values_list("created_at", flat=True).first()
    )
    started = datetime.fromtimestamp(committed, UTC)
    orphans = SandboxRefund.objects.exclude(
        idempotency_key__in=Execution.objects.filter(started_at__lte=started).values(
            "idempotency_key"
        )
    ).count()
    paused_at = Workflow.objects.get(pk=workflow.pk).paused_at
    return {
        "workflow": workflow,
        "items": items,
        "pause_committed": committed,
        "paused_at": paused_at,
        "time_to_stop_ms": round((last_start - committed) * 1000, 1),
        "last_start_by_kind_ms": {
            k: round((v - committed) * 1000, 1) for k, v in starts.items() if v is not None
        },
        "last_side_effect_ms": (
            round((last_side_effect - committed) * 1000, 1) if last_side_effect else None
        ),
        "started_after_pause": {
            "model_calls": sum(1 for t in model_calls if t > committed),
            "executions": Execution.objects.filter(started_at__gt=started).count(),
            "side_effects_of_executions_started_after": orphans,
        },
        "drain_ms": round((drained - committed) * 1000, 1),
        "runs_in_flight_at_pause": in_flight_at_pause,
        "escalated_paused": Escalation.objects.filter(
            workflow=workflow, reason=Escalation.Reason.PAUSED
        ).count(),
        "refunds": SandboxRefund.objects.count(),
        "items_by_status": {
            status: WorkItem.objects.filter(workflow=workflow, status=status).count()
            for status in WorkItem.Status.values
            if WorkItem.objects.filter(workflow=workflow, status=status).exists()
        },
    }


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_nothing_starts_after_the_pause_commits(stub_openai_env, celery_worker_process, capsys):
    celery_worker_process.stop()
    celery_worker_process.start(concurrency=4)  # several runs in flight at once

    result = measure_kill_switch(stub_openai_env)

    with capsys.disabled():
        print(
            f"\nkill switch: time-to-stop {result['time_to_stop_ms']} ms "
            f"(last start relative to the pause commit), by kind "
            f"{result['last_start_by_kind_ms']}, drained in {result['drain_ms']} ms, "
            f"{result['escalated_paused']} run(s) escalated as paused"
        )
    assert result["time_to_stop_ms"] <= 0
    assert result["started_after_pause"] == {
        "model_calls": 0,
        "executions": 0,
        "side_effects_of_executions_started_after": 0,
    }
    assert result["escalated_paused"] >= 1  # the slow runs were stopped mid-flight
    assert not Run.objects.filter(
        work_item__workflow=result["workflow"], status=Run.Status.RUNNING
    ).exists()
    # Nothing was lost: every item ran to an end, stopped, or waits for the resume.
    assert sum(result["items_by_status"].values()) == ITEMS
    assert result["paused_at"] <= timezone.now()


@pytest.mark.django_db
def test_the_workflow_page_lists_runs_in_flight(client_for, ops, manager):
    from agents.models import Step
    from governance.permissions import Role, workflow_grant_role
    from tests.factories import RunFactory

    workflow = make_refund_workflow(slug="inflight")
    workflow_grant_role(user=manager, workflow=workflow, role=Role.MANAGER)
    run = RunFactory(
        work_item__workflow=workflow,
        work_item__external_id="busy-1",
        status=Run.Status.RUNNING,
        started_at=timezone.now(),
    )
    Step.objects.create(run=run, index=1, kind=Step.Kind.MODEL_CALL, name="stub-small")
    url = reverse("workflow-detail", args=[workflow.slug]) + "?part=in-flight"

    response = client_for(manager).get(url, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="in-flight"')
    assert "busy-1" in html
    assert "model_call <code>stub-small</code>" in html

    workflow_pause(workflow=workflow, actor="ops:test", reason="drill")
    Run.objects.filter(pk=run.pk).update(status=Run.Status.ESCALATED)
    Escalation.objects.create(
        workflow=workflow, work_item=run.work_item, run=run, reason=Escalation.Reason.PAUSED
    )
    html = client_for(manager).get(url, headers={"HX-Request": "true"}).content.decode()
    assert "Nothing running right now." in html
    assert "1 in-flight run stopped at its next step and escalated." in html
