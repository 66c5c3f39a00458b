"""The main screens in real headless Chromium: no console error or CSP report on
any of them (htmx swaps included), nothing wider than a 390 px phone, and the
edit form's keyboard save (Ctrl+Enter from a text box) with its diff shown first."""

from __future__ import annotations

import pytest

from agents.models import Step
from governance.models import AutonomyLevel
from governance.permissions import Role, workflow_grant_role
from reviews.models import Decision
from tests.console.factories import ExecutionFactory
from tests.factories import PASSWORD, EscalationFactory, ToolGrantFactory, UserFactory
from tests.reviews.factories import fake_tool_for, plan_factory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
# Set before any page script runs: every CSP violation the page reports is kept.
CSP_WATCH = (
    "window.__csp = [];"
    "document.addEventListener('securitypolicyviolation', (e) =>"
    " window.__csp.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sourceFile));"
)


def _page(browser, viewport):
    context = browser.new_context(viewport=viewport)
    context.add_init_script(CSP_WATCH)
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda msg: problems.append(f"{page.url} {msg.text}") if msg.type == "error" else None,
    )
    page.on("pageerror", lambda exc: problems.append(f"{page.url} {exc}"))
    page.problems = problems
    return context, page


def _log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def _csp_reports(page) -> list[str]:
    return page.evaluate("() => window.__csp || []")


@pytest.fixture
def screens(roles, workflow, monkeypatch):
    """A workflow with something on every screen, and an admin who may open them all."""
    monkeypatch.setattr("reviews.tools.tool_for", fake_tool_for)
    workflow.autonomy_level = AutonomyLevel.LIMITED
    workflow.save(update_fields=["autonomy_level"])
    for tool in ("create_refund", "send_message"):
        ToolGrantFactory(workflow=workflow, tool=tool)
    admin = UserFactory(username="ada", is_staff=True)
    admin.groups.add(roles[Role.ADMIN])
    reviewer = UserFactory(username="rita")
    reviewer.groups.add(roles[Role.REVIEWER])
    workflow_grant_role(user=reviewer, workflow=workflow, role=Role.REVIEWER)
    proposals = [plan_factory(workflow=workflow, tools=("create_refund",))[0] for _ in range(3)]
    escalation = EscalationFactory(
        work_item__workflow=workflow,
        detail="A refund above the cap.",
        packet={"budget": {"tool_calls": 2, "max_tool_calls": 8}},
    )
    Step.objects.create(
        run=proposals[0].run,
        index=9,
        kind=Step.Kind.VALIDATION,
        name="create_refund",
        input={"amount": "900.00", "order_number": "A-1001"},
        error='[{"loc": "amount", "msg": "Input should be less than or equal to 500"}]',
    )
    escalation.run = proposals[0].run
    escalation.save(update_fields=["run"])
    execution = ExecutionFactory(proposal=proposals[2])
    return {
        "admin": admin,
        "reviewer": reviewer,
        "proposals": proposals,
        "escalation": escalation,
        "execution": execution,
    }


def _main_pages(workflow, screens) -> list[str]:
    slug = workflow.slug
    proposal = screens["proposals"][0]
    pages = [
        "/",
        f"/w/{slug}/",
        f"/w/{slug}/queue/",
        f"/w/{slug}/queue/{proposal.pk}/",
        f"/w/{slug}/escalations/",
        f"/w/{slug}/escalations/{screens['escalation'].pk}/",
        f"/w/{slug}/dashboard/",
        f"/w/{slug}/promote/",
        f"/w/{slug}/evidence-pack/",
        f"/explain/proposal/{proposal.pk}/",
        f"/explain/execution/{screens['execution'].pk}/",
        "/ops/",
        "/audit/",
    ]
    return pages


def test_no_console_error_or_csp_report_on_the_main_pages(browser, live_server, workflow, screens):
    context, page = _page(browser, {"width": 1360, "height": 900})
    try:
        _log_in(page, live_server, "ada")
        for path in _main_pages(workflow, screens):
            page.goto(f"{live_server.url}{path}")
            page.wait_for_load_state("networkidle")
            assert _csp_reports(page) == [], path
        # htmx swaps: decide a card with the keyboard, and the next one comes in.
        first, second = screens["proposals"][0], screens["proposals"][1]
        page.goto(f"{live_server.url}/w/{workflow.slug}/queue/")
        page.wait_for_selector(f'#card[data-proposal="{first.pk}"]')
        page.keyboard.press("a")
        page.wait_for_selector(f'#card[data-proposal="{second.pk}"]')
        page.wait_for_load_state("networkidle")
        assert _csp_reports(page) == []
    finally:
        problems = list(page.problems)
        context.close()
    assert [p for p in problems if "favicon" not in p] == []


@pytest.mark.parametrize("who", ["ada", "rita"])
def test_the_screens_fit_a_390px_phone_and_log_out_is_reachable(
    browser, live_server, workflow, screens, who
):
    context, page = _page(browser, PHONE)
    slug = workflow.slug
    paths = [
        "/",
        f"/w/{slug}/queue/",
        f"/w/{slug}/queue/{screens['proposals'][0].pk}/",
        f"/w/{slug}/escalations/",
        f"/w/{slug}/escalations/{screens['escalation'].pk}/",
    ]
    if who == "ada":
        paths += [f"/w/{slug}/dashboard/", "/ops/", "/audit/", f"/w/{slug}/evidence-pack/"]
    try:
        _log_in(page, live_server, who)
        for path in paths:
            page.goto(f"{live_server.url}{path}")
            page.wait_for_load_state("networkidle")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{path} is {width}px wide"
            logout = page.locator("form[action='/logout/'] button").bounding_box()
            assert logout is not None
            assert logout["x"] + logout["width"] <= PHONE["width"], path
        # On the queue the card comes first: its accept button is on the first screens.
        page.goto(f"{live_server.url}/w/{slug}/queue/")
        accept = page.locator("#accept-button").bounding_box()
        assert accept is not None
        assert accept["x"] + accept["width"] <= PHONE["width"]
    finally:
        context.close()


def test_the_edit_form_shows_the_diff_and_ctrl_enter_saves_from_a_text_box(
    browser, live_server, workflow, screens
):
    proposal = screens["proposals"][0]
    context, page = _page(browser, {"width": 1360, "height": 900})
    try:
        _log_in(page, live_server, "rita")
        page.goto(f"{live_server.url}/w/{workflow.slug}/queue/")
        page.wait_for_selector(f'#card[data-proposal="{proposal.pk}"]')
        page.keyboard.press("e")
        reason = page.locator("#id_arg-reason")
        reason.click()
        page.keyboard.press("Control+A")
        page.keyboard.type("Box crushed")
        # Plain Enter in a text box is a new line, not a save.
        if reason.evaluate("el => el.tagName") == "TEXTAREA":
            page.keyboard.press("Enter")
            page.keyboard.type("in transit")
            assert Decision.objects.filter(proposal=proposal).count() == 0
        diff = page.locator("[data-edit-diff]")
        assert diff.is_visible()
        assert "reason" in diff.inner_text()
        assert "Box crushed" in diff.inner_text()
        page.keyboard.press("Control+Enter")
        page.wait_for_selector(f'#card:not([data-proposal="{proposal.pk}"])')
        decision = Decision.objects.get(proposal=proposal)
        assert decision.verdict == "edit"
        assert "Box crushed" in decision.diff["reason"][1]
        assert _csp_reports(page) == []
    finally:
        problems = list(page.problems)
        context.close()
    assert [p for p in problems if "favicon" not in p] == []
