"""/metrics: Prometheus text computed from the database, protected for scraping."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from agents.models import Escalation, Run, Step
from agents.tasks import HEARTBEAT_KEY
from tests.factories import EscalationFactory, ProposalFactory, RunFactory, WorkItemFactory

pytestmark = pytest.mark.django_db

REMOTE = {"REMOTE_ADDR": "203.0.113.7"}


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _scrape(client, **extra) -> dict:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return _samples(response.content.decode())


def test_loopback_scrape_without_a_token_is_served(client, workflow, settings):
    settings.TENURE_METRICS_TOKEN = ""
    samples = _scrape(client)
    assert samples[("tenure_review_queue_depth", (("workflow", "refunds"),))] == 0


def test_remote_scrape_without_a_configured_token_is_refused(client, workflow, settings):
    settings.TENURE_METRICS_TOKEN = ""
    assert client.get("/metrics", **REMOTE).status_code == 403
    # Through a proxy on the same host: still not local.
    proxied = client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert proxied.status_code == 403


def test_with_a_token_set_the_bearer_token_is_required(client, workflow, settings):
    settings.TENURE_METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics", **REMOTE).status_code == 401
    assert client.get("/metrics").status_code == 401  # loopback is no exception any more
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope", **REMOTE)
    assert wrong.status_code == 401
    ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret", **REMOTE)
    assert ok.status_code == 200


def test_metrics_move_when_work_happens(client, workflow, settings):
    settings.TENURE_METRICS_TOKEN = ""
    before = _scrape(client)
    wf = (("workflow", "refunds"),)
    item = WorkItemFactory(workflow=workflow)
    run = RunFactory(work_item=item, stop_reason=Run.StopReason.BUDGET_TOKENS,
                     status=Run.Status.ESCALATED, tokens_in=1000, tokens_out=200)  # fmt: skip
    ProposalFactory(run=run)
    EscalationFactory(work_item=item, run=run, status=Escalation.Status.OPEN)
    Step.objects.create(run=run, index=1, kind=Step.Kind.TOOL_CALL, name="lookup_order",
                        error="timeout")  # fmt: skip
    Step.objects.create(run=run, index=2, kind=Step.Kind.TOOL_CALL, name="lookup_order")
    cache.set(HEARTBEAT_KEY, timezone.now().isoformat(), timeout=60)
    after = _scrape(client)

    assert before[("tenure_review_queue_depth", wf)] == 0
    assert after[("tenure_review_queue_depth", wf)] == 1
    assert after[("tenure_review_queue_oldest_age_seconds", wf)] >= 0
    assert after[("tenure_escalations_open", wf)] == 1
    assert after[("tenure_runs", (("status", "escalated"), *wf))] == 1
    assert after[("tenure_budget_trips_total", (("kind", "budget_tokens"), *wf))] == 1
    tool = (("tool", "lookup_order"), *wf)
    assert after[("tenure_tool_calls_total", tool)] == 2
    assert after[("tenure_tool_errors_total", tool)] == 1
    assert after[("tenure_model_tokens_total", (("direction", "in"), *wf))] == 1000
    assert after[("tenure_model_cost_usd_total", wf)] > 0
    assert after[("tenure_executions", (("status", "succeeded"), *wf))] == 0
    assert 0 <= after[("tenure_worker_heartbeat_age_seconds", ())] < 60


def test_a_scrape_runs_a_fixed_number_of_queries(client, workflow, settings,
                                                  django_assert_max_num_queries):  # fmt: skip
    settings.TENURE_METRICS_TOKEN = ""
    for _ in range(5):
        ProposalFactory(run__work_item=WorkItemFactory(workflow=workflow))
    with django_assert_max_num_queries(12):
        client.get("/metrics")
