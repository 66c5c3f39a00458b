"""The spec example in docs/INTEGRATION.md (section 9) loads, plans and applies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agents.specs.schema import spec_parse
from agents.specs.service import spec_apply, spec_export, spec_plan
from agents.tools import registry_for
from governance.models import AutonomyLevel, ToolGrant
from governance.permissions import Role
from tests.factories import UserFactory

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "INTEGRATION.md"
EXAMPLE = re.compile(r"<!-- spec-example -->\n```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)

pytestmark = pytest.mark.django_db


def documented_spec() -> str:
    found = EXAMPLE.findall(GUIDE.read_text())
    assert len(found) == 1, "the guide documents one spec example"
    return found[0]


def test_the_documented_spec_plans_and_applies(roles, monkeypatch):
    monkeypatch.setenv("BILLING_API_TOKEN", "guide-token")
    ada = UserFactory(username="ada")
    ada.groups.add(roles[Role.ADMIN])
    spec = spec_parse(documented_spec(), source="docs/INTEGRATION.md")
    assert "will be created in shadow mode" in spec_plan(spec).text()
    workflow = spec_apply(spec, actor=ada).workflow
    grants = ToolGrant.objects.filter(workflow=workflow)
    assert set(grants.values_list("tool", flat=True)) == {
        "lookup_invoice",
        "refund_invoice",
        "invoices_over",
    }
    assert {g.autonomy_level for g in grants} == {AutonomyLevel.SHADOW}
    assert workflow.policy["tools"]["refund_invoice"]["arguments"]["amount"]["role"] == "money"
    assert workflow.policy["tools"]["crm_merge_contacts"]["server"] == "crm"
    assert set(registry_for(workflow)) == {"lookup_invoice", "refund_invoice", "invoices_over"}
    assert "crm_merge_contacts" in spec_export("billing")
    assert spec_plan(spec).text().endswith("No changes.")
