"""Promotion and the kill switch in real headless Chromium: a manager backtests a
tool and requests its promotion, a second manager approves it, and an ops user
pauses the workflow (confirming the dialog)."""

from __future__ import annotations

import pytest

from agents.evals import SuiteStatus
from evidence import gate as evidence_gate
from governance.models import AutonomyChange, AutonomyLevel, ToolGrant, Workflow
from tests.browser.conftest import SCREENSHOTS
from tests.console.evidence import make_evidence
from tests.factories import PASSWORD, ToolGrantFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _page(browser):
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.problems = problems
    return page


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, caret="initial")


def _log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/")


@pytest.fixture
def evidence(workflow, monkeypatch):
    """A workflow at limited whose refund tool, at supervised, clears the gate."""
    monkeypatch.setattr(evidence_gate, "regression_status", lambda wf: SuiteStatus(True, "green"))
    Workflow.objects.filter(pk=workflow.pk).update(autonomy_level=AutonomyLevel.LIMITED)
    grant = ToolGrantFactory(
        workflow=workflow, tool="create_refund", autonomy_level=AutonomyLevel.SUPERVISED
    )
    # Decided while the tool was supervised: the dwell limited asks for.
    make_evidence(
        workflow,
        accepted=118,
        edited=2,
        amounts=[f"{20 + (i % 9) * 15}.00" for i in range(120)],
        level=AutonomyLevel.SUPERVISED,
    )
    return grant


def test_backtest_request_approve_then_pause(
    browser, live_server, workflow, manager, second_manager, ops, evidence
):
    # 1. A manager backtests the refund tool at limited, then requests the promotion.
    mona = _page(browser)
    _log_in(mona, live_server, manager.username)
    mona.goto(f"{live_server.url}/w/{workflow.slug}/promote/?tool=create_refund")
    mona.fill("#id_amount", "100")
    mona.fill("#id_daily_count", "20")
    mona.get_by_role("button", name="Run backtest").click()
    mona.wait_for_selector("text=would have auto-executed")
    assert mona.locator(".tile").count() >= 5
    _shot(mona, "promotion-backtest")

    mona.fill("textarea[name=reason]", "120 decisions, 2 edits; the backtest holds the big ones.")
    mona.get_by_role("button", name="Request promotion to Limited").click()
    mona.wait_for_selector("text=A second manager must approve it")
    _shot(mona, "promotion-requested")
    change = AutonomyChange.objects.get()
    assert change.status == AutonomyChange.Status.REQUESTED
    assert change.evidence["gate"]["passed"] is True
    # The requester is not offered an approve button on the workflow page.
    mona.goto(f"{live_server.url}/w/{workflow.slug}/")
    assert mona.get_by_role("button", name="Approve").count() == 0

    # 2. A second manager approves it on the workflow page.
    max_ = _page(browser)
    _log_in(max_, live_server, second_manager.username)
    max_.goto(f"{live_server.url}/w/{workflow.slug}/")
    max_.get_by_role("button", name="Approve").click()
    max_.wait_for_selector("text=Approved:")
    _shot(max_, "promotion-approved")
    assert ToolGrant.objects.get(pk=evidence.pk).autonomy_level == AutonomyLevel.LIMITED
    change.refresh_from_db()
    assert change.approved_by == second_manager

    # 3. Ops pauses the workflow; the confirm dialog is accepted.
    otto = _page(browser)
    _log_in(otto, live_server, ops.username)
    otto.goto(f"{live_server.url}/w/{workflow.slug}/")
    otto.wait_for_selector("#in-flight")
    dialogs: list[str] = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    otto.on("dialog", accept)
    otto.fill("input[name=reason]", "Drill: refunds look wrong")
    otto.get_by_role("button", name="Pause now").click()
    otto.wait_for_selector("p.banner.danger")
    _shot(otto, "workflow-paused")
    assert dialogs
    assert dialogs[0].startswith(f"Pause {workflow.name} now?")
    paused = Workflow.objects.get(pk=workflow.pk)
    assert paused.paused
    assert paused.paused_reason == "Drill: refunds look wrong"
    assert otto.get_by_role("button", name="Resume workflow").is_visible()

    for page in (mona, max_, otto):
        assert page.problems == [], page.problems
