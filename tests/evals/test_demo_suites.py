"""CI runs the demo regression suites through this test: seed, build, replay, gate."""

from __future__ import annotations

import pytest

from agents.evals import eval_suite_run, suite_status
from agents.models import EvalCase, EvalRun, Proposal, Run, Step
from demo.evals import eval_suites_seed_demo
from demo.workflows import ACCESS, CRM, REFUNDS, demo_seed

pytestmark = pytest.mark.django_db

ITEMS_PER_WORKFLOW = 10


@pytest.fixture
def demo_suites():
    demo_seed(items_per_workflow=ITEMS_PER_WORKFLOW)
    return {s.workflow.slug: s for s in eval_suites_seed_demo()}


def test_demo_suites_cover_adversarial_and_ambiguous_items(demo_suites):
    assert set(demo_suites) == {REFUNDS, ACCESS, CRM}
    cases = EvalCase.objects.filter(suite__in=demo_suites.values())
    assert cases.count() == 3 * ITEMS_PER_WORKFLOW
    adversarial = cases.filter(tags__contains=["adversarial"])
    assert adversarial.count() >= 5
    assert all(c.forbidden_actions for c in adversarial.filter(source=EvalCase.Source.ADVERSARIAL))
    assert cases.filter(expected_outcome=EvalCase.Outcome.ESCALATE).count() >= 6
    # Seeding twice adds nothing.
    eval_suites_seed_demo()
    assert EvalCase.objects.count() == 3 * ITEMS_PER_WORKFLOW


def test_demo_suites_pass_for_the_current_agent(demo_suites):
    for slug, suite in demo_suites.items():
        run = eval_suite_run(suite=suite)
        print(slug, run.report["summary"], [f["case"] for f in run.report["failures"]])
        assert run.status == EvalRun.Status.PASSED, run.report
        assert suite_status(suite.workflow).passed is True
    assert not Run.objects.exists()
    assert not Step.objects.exists()
    assert not Proposal.objects.exists()


def test_the_regressed_agent_version_fails_with_the_cases_named(demo_suites):
    suite = demo_suites[REFUNDS]
    good = eval_suite_run(suite=suite)
    bad = eval_suite_run(suite=suite, agent_version="demo-regressed")
    assert bad.status == EvalRun.Status.FAILED
    assert bad.agreement < suite.threshold
    failing = {f["case"] for f in bad.report["failures"]}
    passed_before = {r.case_name for r in good.results.filter(passed=True)}
    # Every refund the good version got right is now a dollar off, and named as such.
    refund_cases = {
        c.name for c in suite.cases.filter(expected_outcome=EvalCase.Outcome.ACT)
    } & passed_before
    assert refund_cases
    assert refund_cases <= failing
    assert set(bad.report["regressions"]) == refund_cases
    messages = [d["message"] for f in bad.report["failures"] for d in f["diff"]]
    assert any("create_refund: amount expected" in m for m in messages), messages
    # Escalations are untouched by the regression and still agree.
    assert not {c.name for c in suite.cases.filter(expected_outcome="escalate")} & failing
    # The gate only looks at the current version, which is still green.
    assert suite_status(suite.workflow).passed is True
