"""Model prices under change control: admins set them (service, page, command), each
change is a SET_PRICE ConfigChange with before and after, audited, applied at once."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from agents.models import Run, Step
from governance import change_control as cc
from governance.audit import audit_verify
from governance.models import AuditEvent, ConfigChange, ModelPrice
from governance.views import ERR_PRICES_NOT_ADMIN
from tests.console.factories import StepFactory
from tests.factories import ProposalFactory, RunFactory, WorkItemFactory

pytestmark = pytest.mark.django_db


def test_an_admin_adds_a_price_for_a_new_model(admin_user):
    change = cc.model_price_set(
        model="gpt-4.1", input="2", cached_input="0.5", output="8", actor=admin_user
    )
    price = ModelPrice.objects.get(model="gpt-4.1")
    assert (price.input_per_mtok, price.cached_input_per_mtok, price.output_per_mtok) == (
        Decimal("2"),
        Decimal("0.5"),
        Decimal("8"),
    )
    assert change.before == {}
    assert change.requested_by == admin_user
    assert change.decided_at is not None
    assert AuditEvent.objects.filter(action="config.set_price.applied", workflow=None).exists()
    assert audit_verify() == []  # the global chain holds


@pytest.mark.parametrize("role_user", ["reviewer", "manager", "ops"])
def test_only_an_admin_sets_a_price(request, role_user):
    user = request.getfixturevalue(role_user)
    with pytest.raises(PermissionDenied, match=cc.ERR_PRICE_NOT_ADMIN):
        cc.model_price_set(model="gpt-4o", input="0", cached_input="0", output="0", actor=user)
    assert ModelPrice.objects.get(model="gpt-4o").input_per_mtok == Decimal("2.5")
    assert not ConfigChange.objects.exists()


@pytest.mark.parametrize(
    ("prices", "code"),
    [
        (("-1", "0", "1"), "bad_price"),
        (("abc", "0", "1"), "bad_price"),
        (("1.0000001", "0", "1"), "bad_price"),  # never rounded silently
        (("NaN", "0", "1"), "bad_price"),
        (("1", "2", "3"), "cached_above_input"),
        (("2.5", "1.25", "10"), "nothing_changes"),
    ],
)
def test_a_price_that_is_not_one_is_refused(admin_user, prices, code):
    per_in, per_cached, per_out = prices
    with pytest.raises(ValidationError) as exc:
        cc.model_price_set(
            model="gpt-4o", input=per_in, cached_input=per_cached, output=per_out, actor=admin_user
        )
    assert exc.value.code == code
    assert not ConfigChange.objects.exists()


def test_the_prices_page_lists_and_sets_prices_for_admins(admin_user, client_for):
    client = client_for(admin_user)
    page = client.get(reverse("model-prices"))
    assert page.status_code == 200
    assert b'data-model="gpt-4o-mini"' in page.content
    response = client.post(
        reverse("model-prices"),
        {
            "model": "llama-3.3-70b",
            "input": "0.6",
            "cached_input": "0.3",
            "output": "0.6",
            "reason": "vLLM on our GPUs",
        },
    )
    assert response.status_code == 302
    assert ModelPrice.objects.filter(model="llama-3.3-70b").exists()
    page = client.get(reverse("model-prices"))
    assert b"vLLM on our GPUs" in page.content  # in the history


def test_the_prices_page_shows_a_refused_price_with_its_reason(admin_user, client_for):
    response = client_for(admin_user).post(
        reverse("model-prices"),
        {"model": "x", "input": "1", "cached_input": "5", "output": "1", "reason": "typo"},
    )
    assert response.status_code == 400
    assert "did you swap them?" in response.content.decode()
    assert not ModelPrice.objects.filter(model="x").exists()


@pytest.mark.parametrize("role_user", ["reviewer", "manager", "ops"])
def test_the_prices_page_is_for_admins_only(request, client_for, role_user):
    client = client_for(request.getfixturevalue(role_user))
    assert client.get(reverse("model-prices")).status_code == 403
    response = client.post(
        reverse("model-prices"),
        {"model": "gpt-4o", "input": "0", "cached_input": "0", "output": "0", "reason": "free"},
    )
    assert response.status_code == 403
    assert ERR_PRICES_NOT_ADMIN in response.content.decode()
    assert ModelPrice.objects.get(model="gpt-4o").input_per_mtok == Decimal("2.5")


def test_the_home_page_links_admins_to_the_prices(admin_user, ops, client_for):
    assert b'id="model-prices-link"' in client_for(admin_user).get(reverse("home")).content
    assert b'id="model-prices-link"' not in client_for(ops).get(reverse("home")).content


def test_the_prices_command_lists_and_sets_as_the_named_admin(admin_user, ops):
    out = StringIO()
    call_command("prices", "set", "gpt-4o", "3", "1.5", "12", "--by", "ada", stdout=out)
    assert "gpt-4o: 3.000000 input" in out.getvalue()
    assert ConfigChange.objects.get().requested_by == admin_user
    listing = StringIO()
    call_command("prices", "list", stdout=listing)
    assert "gpt-4o" in listing.getvalue()
    assert "12.000000" in listing.getvalue()
    with pytest.raises(CommandError, match=cc.ERR_PRICE_NOT_ADMIN):
        call_command("prices", "set", "gpt-4o", "1", "1", "1", "--by", ops.username)


def test_unpriced_runs_say_so_on_the_runs_list_the_explain_page_and_the_dashboard(
    workflow, admin_user, client_for
):
    run = RunFactory(work_item=WorkItemFactory(workflow=workflow), unpriced=True)
    StepFactory(run=run, index=1, kind=Step.Kind.MODEL_CALL, name="mystery", unpriced=True)
    proposal = ProposalFactory(run=run)
    RunFactory(
        work_item=WorkItemFactory(workflow=workflow),
        status=Run.Status.ESCALATED,
        stop_reason=Run.StopReason.UNPRICED_MODEL,
        cost_usd=Decimal("0"),
    )
    client = client_for(admin_user)

    rows = client.get(reverse("evidence-rows", args=[workflow.slug]) + "?metric=runs")
    assert rows.content.decode().count(">unpriced</span>") == 1
    explain = client.get(reverse("explain-proposal", args=[proposal.pk])).content.decode()
    assert explain.count(">unpriced</span>") == 2  # the run and its model call
    dashboard = client.get(reverse("evidence-dashboard", args=[workflow.slug])).content.decode()
    assert "1 run charged at the fallback price; 1 stopped: no price for the model" in dashboard
