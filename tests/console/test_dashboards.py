"""Dashboards, ops overview and drill-downs at the HTTP boundary."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from governance.audit import audit_append
from governance.models import Workflow
from governance.services import workflow_pause
from tests.console.factories import build_evidence, build_history
from tests.factories import PASSWORD, RunFactory, UserFactory, WorkflowFactory

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def evidence(workflow):
    Workflow.objects.filter(pk=workflow.pk).update(
        cost_target_usd=Decimal("1.00"), tool_error_budget=Decimal("0.050")
    )
    workflow.refresh_from_db()
    build_evidence(workflow, timezone.now())
    return workflow


def dashboard_url(slug: str = "refunds", **query: str) -> str:
    url = reverse("evidence-dashboard", args=[slug])
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return url


def test_manager_sees_agreement_with_its_wilson_interval(client_for, manager, evidence):
    response = client_for(manager).get(dashboard_url())
    assert response.status_code == 200
    html = response.content.decode()
    assert "80.0%" in html
    assert "95% interval 49.0–94.3%" in html
    assert "$1.50" in html  # cost per successful outcome, reviewer time included
    assert "over target" in html
    assert html.count("<svg") >= 4
    assert 'role="img"' in html
    assert "metric=decisions&amp;days=30&amp;verdict=accept" in html
    assert "HX-Request" in response["Vary"]


def test_htmx_poll_gets_only_the_dashboard_partial(client_for, manager, evidence):
    response = client_for(manager).get(dashboard_url(), **HX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="dashboard-body"')
    assert "<html" not in html
    assert "80.0%" in html


def test_boosted_request_gets_the_whole_page(client_for, manager, evidence):
    response = client_for(manager).get(dashboard_url(), HTTP_HX_BOOSTED="true", **HX)
    assert "<html" in response.content.decode()


@pytest.mark.parametrize("days", ["abc", "0", "366", "-3", "7.5"])
def test_bad_window_is_a_400_with_a_message(client_for, manager, evidence, days):
    response = client_for(manager).get(dashboard_url(days=days))
    assert response.status_code == 400
    assert "whole number of days" in response.content.decode()


def test_unknown_workflow_is_a_404(client_for, manager):
    response = client_for(manager).get(dashboard_url("nope"))
    assert response.status_code == 404


def test_reviewer_sees_only_their_workflows_dashboards(client_for, reviewer, other_workflow):
    client = client_for(reviewer)
    assert client.get(dashboard_url("refunds")).status_code == 200
    assert client.get(dashboard_url("access")).status_code == 404


def test_anonymous_is_sent_to_login(client, workflow):
    response = client.get(dashboard_url())
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_empty_workflow_dashboard_renders_dashes(client_for, manager, workflow):
    response = client_for(manager).get(dashboard_url())
    html = response.content.decode()
    assert response.status_code == 200
    assert "No decisions in this window" in html
    assert "0.0–100.0%" in html


def test_dashboard_query_count_does_not_grow_with_rows(client_for, manager, evidence):
    client = client_for(manager)
    client.get(dashboard_url())
    # New rows each time, so both requests count the item comparison afresh (it is
    # kept for a minute only while nothing new arrives).
    build_evidence(evidence, timezone.now(), decisions_per_verdict=(1, 0, 0))
    with CaptureQueriesContext(connection) as first:
        client.get(dashboard_url())
    build_evidence(evidence, timezone.now(), decisions_per_verdict=(20, 5, 5))
    with CaptureQueriesContext(connection) as second:
        response = client.get(dashboard_url())
    assert response.status_code == 200
    assert len(second.captured_queries) == len(first.captured_queries)


def _rows_in(html: str) -> int:
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return body.count("<tr>")


def test_each_drilldown_lists_exactly_the_rows_counted(client_for, manager, evidence):
    client = client_for(manager)
    html = client.get(dashboard_url()).content.decode()
    cases = {
        "metric=decisions&amp;days=30&amp;verdict=accept": 8,
        "metric=decisions&amp;days=30&amp;verdict=edit": 1,
        "metric=outcomes&amp;days=30&amp;succeeded=1": 6,
        "metric=received&amp;days=30&amp;escalated=1": 2,
        "metric=runs&amp;days=30&amp;budget=1": 1,
        "metric=tool_steps&amp;days=30&amp;errors=1": 1,
        "metric=resolutions&amp;days=30": 2,
    }
    for query, expected in cases.items():
        assert query in html, query
        url = reverse("evidence-rows", args=["refunds"]) + "?" + query.replace("&amp;", "&")
        response = client.get(url)
        assert response.status_code == 200, query
        page = response.content.decode()
        assert f"<strong>{expected}</strong> row" in page, query
        assert _rows_in(page) == expected, query


def test_drilldown_of_a_day_link(client_for, manager, evidence):
    client = client_for(manager)
    html = client.get(dashboard_url()).content.decode()
    today = timezone.localdate().isoformat()
    link = re.search(rf'href="([^"]*metric=decisions&amp;days=30&amp;day={today})"', html)
    assert link
    page = client.get(link.group(1).replace("&amp;", "&")).content.decode()
    assert "<strong>10</strong> rows" in page


@pytest.mark.parametrize(
    "query",
    ["metric=bogus", "metric=decisions&verdict=maybe", "metric=runs&day=yesterday", ""],
)
def test_drilldown_bad_input_is_a_400(client_for, manager, evidence, query):
    url = reverse("evidence-rows", args=["refunds"]) + "?" + query
    response = client_for(manager).get(url)
    assert response.status_code == 400


def test_drilldown_paginates(client_for, manager, evidence):
    build_evidence(evidence, timezone.now(), decisions_per_verdict=(60, 0, 0))
    url = reverse("evidence-rows", args=["refunds"]) + "?metric=decisions&verdict=accept"
    client = client_for(manager)
    first = client.get(url).content.decode()
    assert "<strong>68</strong> rows" in first
    assert _rows_in(first) == 50
    second = client.get(url + "&page=2").content.decode()
    assert _rows_in(second) == 18


def test_ops_overview_spans_all_workflows_for_ops(client_for, ops, evidence, other_workflow):
    RunFactory(work_item__workflow=other_workflow, cost_usd=Decimal("12.00"))
    Workflow.objects.filter(pk=other_workflow.pk).update(
        daily_budget_usd=Decimal("10"), paused=True, paused_at=timezone.now()
    )
    response = client_for(ops).get(reverse("ops-overview"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Refunds" in html
    assert "Access requests" in html
    assert "$12.00" in html
    assert "120.0%" in html  # over its daily budget
    assert "meter-over" in html
    assert "paused workflow" in html
    assert "metric=runs&amp;days=7&amp;budget=1" in html


def test_ops_overview_for_a_reviewer_lists_only_their_workflow(
    client_for, reviewer, evidence, other_workflow
):
    html = client_for(reviewer).get(reverse("ops-overview")).content.decode()
    assert "Refunds" in html
    assert "Access requests" not in html


def test_ops_overview_partial_and_query_count(client_for, ops, evidence):
    client = client_for(ops)
    client.get(reverse("ops-overview"))
    with CaptureQueriesContext(connection) as first:
        client.get(reverse("ops-overview"), **HX)
    for i in range(5):
        wf = WorkflowFactory(slug=f"extra-{i}")
        build_evidence(wf, timezone.now() - timedelta(hours=1), decisions_per_verdict=(2, 1, 1))
    # The first read of a new workflow stores its closed days' rollups (one insert);
    # from then on every read is the same queries, whatever the rows or workflows.
    client.get(reverse("ops-overview"))
    with CaptureQueriesContext(connection) as second:
        response = client.get(reverse("ops-overview"), **HX)
    assert response.content.decode().lstrip().startswith('<div id="ops-body"')
    assert len(second.captured_queries) == len(first.captured_queries)


def test_ops_overview_bad_window(client_for, ops):
    assert client_for(ops).get(reverse("ops-overview") + "?days=x").status_code == 400


# --- Browser: ops opens the overview and a dashboard, charts render, a drill-down lands ---

SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


@pytest.fixture
def browser_page(live_server):
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1360, "height": 1000})
        try:
            yield page
        finally:
            # Stop the pages' htmx polling before the live server and database go away.
            page.goto("about:blank")
            browser.close()
            # Under Playwright's event loop Django hands this context its own database
            # connection; close it, or the test database cannot be dropped afterwards.
            connections.close_all()


def _log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}{reverse('login')}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


@pytest.mark.browser
def test_ops_reads_the_overview_and_drills_down(browser_page, live_server, roles):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    now = timezone.now()
    refunds = WorkflowFactory(slug="refunds", name="Refunds", cost_target_usd=Decimal("0.40"))
    build_history(refunds, now)
    access = WorkflowFactory(slug="access", name="Access requests", daily_budget_usd=Decimal("1"))
    build_history(access, now, days=5)
    user = UserFactory(username="otto")
    workflow_pause(workflow=access, actor=user, reason="Directory sync incident")
    audit_append(action="grant.caps_changed", actor=user, workflow=refunds, data={"amount": 100})
    user.groups.add(roles["ops"])
    page = browser_page
    errors: list[str] = []
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico")
            else None
        ),
    )
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    _log_in(page, live_server, "otto")
    page.goto(f"{live_server.url}{reverse('ops-overview')}")
    assert page.locator("h1").inner_text() == "Ops overview"
    assert page.locator("svg.chart").count() == 1
    assert page.locator("svg.meter").count() == 2
    page.screenshot(path=str(SCREENSHOTS / "ops-overview.png"), full_page=True)

    page.click("table.ops-table >> text=Refunds")
    page.wait_for_url("**/w/refunds/dashboard/**")
    charts = page.locator("svg.chart")
    assert charts.count() == 4
    for i in range(4):
        box = charts.nth(i).bounding_box()
        assert box is not None
        assert box["width"] > 300
        assert box["height"] > 100
    assert page.locator("svg.chart polygon.chart-band").count() >= 1
    assert page.locator("svg.chart rect.chart-bar").count() > 10
    page.screenshot(path=str(SCREENSHOTS / "workflow-dashboard.png"), full_page=True)

    expected = page.locator(".evidence-tiles .tile").first.locator(".tile-label a").inner_text()
    n_decisions = int(expected.split()[0])
    page.locator(".evidence-tiles .tile").first.locator(".tile-label a").click()
    page.wait_for_url("**/evidence/rows/**")
    assert page.locator(".rows-count strong").inner_text() == str(n_decisions)
    assert page.locator("table.rows-table tbody tr").count() == min(n_decisions, 50)
    page.screenshot(path=str(SCREENSHOTS / "drilldown-decisions.png"), full_page=False)

    page.locator("table.rows-table tbody tr").first.locator("a").first.click()
    page.wait_for_url("**/explain/proposal/**")
    assert "Explain this action" in page.locator("h1").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "explain.png"), full_page=True)

    page.goto(f"{live_server.url}{reverse('audit-log')}")
    page.click("text=Verify the chains")
    page.wait_for_selector(".verify-ok")
    assert "2 chains verified" in page.locator("#verify-result").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "audit.png"), full_page=False)

    page.goto(f"{live_server.url}{reverse('evidence-pack', args=['access'])}")
    assert "Evidence pack: Access requests" in page.locator("h1").inner_text()
    assert "Directory sync incident" in page.locator("table.incidents").inner_text()
    page.emulate_media(media="print")
    assert not page.locator("header.topbar").is_visible()
    page.screenshot(path=str(SCREENSHOTS / "evidence-pack-print.png"), full_page=True)
    # No missing static file and no script error (CSP allows no inline script).
    assert errors == []


@pytest.mark.parametrize("name", ["ops-overview", "audit-log"])
def test_anonymous_is_sent_to_login_from_every_evidence_page(client, db, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_charts_escape_labels_and_break_lines_at_gaps():
    from datetime import date

    from evidence import charts

    days = [date(2026, 11, d) for d in range(1, 6)]
    svg = charts.band_chart(
        chart_id="a",
        title="Agreement <per> day",
        days=days,
        values=[0.5, 0.6, None, 0.8, 0.9],
        lows=[0.2, 0.3, None, 0.5, 0.6],
        highs=[0.8, 0.85, None, 0.95, 0.97],
        threshold=0.9,
        threshold_label="gate 90%",
    )
    assert "Agreement &lt;per&gt; day" in svg
    assert svg.count("<polyline") == 2  # the empty day breaks the line
    assert svg.count('class="chart-band"') == 2
    assert "style=" not in svg
    bars = charts.bar_chart(
        chart_id="b", title="Volume", days=days, series=[charts.Series("items", [9] * 5, "a")]
    )
    # Whole-number ticks for counts: 0, 3, 6, 9, 12.
    assert ">12</text>" in bars
    assert ">3</text>" in bars
