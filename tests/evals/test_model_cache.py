"""A replay hears the model as it answers now: the suite never reads (or fills) the
model request cache, which the live runs share for an hour."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from agents.evals import eval_case_from_decision, eval_suite_run
from agents.llm import CACHE_PREFIX
from agents.models import EvalRun
from agents.runner import run_work_item
from reviews.models import Decision
from tests.agents.stub_openai import (  # noqa: F401 - fixtures
    GOOD_REFUND,
    SCRIPTS,
    call,
    final,
    make_item,
    make_refund_workflow,
    stub_openai_fixture,
)
from tests.evals.conftest import decide

pytestmark = pytest.mark.django_db


def test_a_changed_model_answer_changes_the_eval(stub_openai, human, monkeypatch):
    run = run_work_item(work_item_id=make_item(make_refund_workflow(), "good").pk)
    decision = decide(run.proposals.get(), human, Decision.Verdict.ACCEPT)
    case, _ = eval_case_from_decision(decision=decision, actor=human)
    first = eval_suite_run(suite=case.suite)
    assert first.status == EvalRun.Status.PASSED, first.report
    served = len(stub_openai.scenario_requests("good"))

    # Same agent version, same model name, same prompt: only the model's answer moved.
    bent = [
        SCRIPTS["good"][0],
        {"calls": [call("create_refund", {**GOOD_REFUND, "amount": "43.00"})]},
        final(0.92, "The order arrived broken; refund the item."),
    ]
    monkeypatch.setitem(SCRIPTS, "good", bent)
    second = eval_suite_run(suite=case.suite)

    assert second.status == EvalRun.Status.FAILED
    [result] = second.results.all()
    assert not result.passed
    assert result.actual["actions"][0]["arguments"]["amount"] == "43.00"
    assert len(stub_openai.scenario_requests("good")) > served  # the model was asked


class CacheSpy:
    """The cache, with a record of every model-response key read or written."""

    def __init__(self) -> None:
        self.touched: list[str] = []

    def get(self, key: str, *args, **kwargs):
        self.touched.append(key)
        return cache.get(key, *args, **kwargs)

    def set(self, key: str, *args, **kwargs):
        self.touched.append(key)
        return cache.set(key, *args, **kwargs)


def test_a_replay_neither_reads_nor_fills_the_request_cache(stub_openai, human, monkeypatch):
    spy = CacheSpy()
    monkeypatch.setattr("agents.llm.cache", spy)
    run = run_work_item(work_item_id=make_item(make_refund_workflow(), "good").pk)
    assert any(key.startswith(CACHE_PREFIX) for key in spy.touched)  # live runs use it
    decision = decide(run.proposals.get(), human, Decision.Verdict.ACCEPT)
    case, _ = eval_case_from_decision(decision=decision, actor=human)
    spy.touched.clear()
    requests = len(stub_openai.requests)

    eval_suite_run(suite=case.suite)

    assert len(stub_openai.requests) > requests  # the replay asked the model...
    assert not [key for key in spy.touched if key.startswith(CACHE_PREFIX)]  # ...only
