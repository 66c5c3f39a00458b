"""A reviewer whose card is taken is never one keystroke from accepting a card they
did not see, and can take back a slip with one key."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from governance.permissions import Role, workflow_grant_role
from reviews import claims, services
from reviews.models import Claim, Decision, UndoneDecision
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_review_queue import _log_in, page, setup  # noqa: F401 - fixtures
from tests.factories import UserFactory
from tests.reviews.factories import plan_factory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _shot(page, name: str) -> None:  # noqa: F811 - the page fixture's argument
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, caret="initial")


def test_a_replaced_card_needs_a_second_key_and_a_slip_is_undone_with_u(
    page,  # noqa: F811 - the fixture
    live_server,
    workflow,
    setup,  # noqa: F811 - the fixture
    roles,
):
    taken = plan_factory(workflow=workflow)[0]
    other = plan_factory(workflow=workflow)[0]
    remy = UserFactory(username="remy")
    remy.groups.add(roles[Role.REVIEWER])
    workflow_grant_role(user=remy, workflow=workflow, role=Role.REVIEWER)

    _log_in(page, live_server, setup.username)
    page.goto(f"{live_server.url}/w/{workflow.slug}/queue/")
    page.wait_for_selector(f'#card[data-proposal="{taken.pk}"]')

    # The reviewer's lease runs out while they read, and another reviewer takes the card.
    Claim.objects.filter(proposal=taken).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert claims.claim_proposal(reviewer=remy, proposal=taken) is not None

    # a: refused (the claim was lost); the next card arrives, marked as a replacement.
    page.keyboard.press("a")
    page.wait_for_selector(f'#card[data-proposal="{other.pk}"][data-replaced]')
    assert services.ERR_CLAIM_LOST in page.locator("[data-notice]").inner_text()
    _shot(page, "card-replaced")

    # The first decision key on it only points at why the card changed.
    page.keyboard.press("a")
    page.wait_for_selector("[data-notice].is-flagged")
    assert page.evaluate("() => document.activeElement.hasAttribute('data-notice')")
    page.wait_for_timeout(400)
    assert not Decision.objects.exists()

    # The next one works.
    page.keyboard.press("a")
    page.wait_for_selector("[data-undo-form]")
    decision = Decision.objects.get()
    assert (decision.proposal_id, decision.reviewer_id) == (other.pk, setup.pk)
    _shot(page, "undo-offered")

    # u: the slip is taken back, and the card is the reviewer's again.
    page.keyboard.press("u")
    page.wait_for_selector(f'#card[data-proposal="{other.pk}"]:not([data-replaced])')
    page.wait_for_selector("text=Undone: your decision")
    assert not Decision.objects.exists()
    assert UndoneDecision.objects.get().decision_id == decision.pk
    assert Claim.objects.get(proposal=other).reviewer == setup
    assert page.locator("#card [data-accept-form]").count() == 1
    assert [p for p in page.problems if "favicon" not in p and "404" not in p] == []
