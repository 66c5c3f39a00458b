"""A spec is applied as the app's database role, whose triggers refuse grants, caps and
policy written without the change row that applies them (governance migration 0004)."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from agents.specs.schema import spec_parse
from agents.specs.service import spec_apply
from governance.models import ToolGrant, Workflow
from governance.permissions import Role, roles_ensure
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
ROLE = "tenure_app_spectest"
SPEC = """
slug: role-spec
name: Role spec
budgets: {max_tool_calls: 12}
policy: {allowlists: {groups: [vpn-users]}}
tools:
  - name: create_refund
    kind: builtin
    caps: {amount: 50}
  - name: get_order
    kind: builtin
"""


def _as_app(fn):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {ROLE}")
        return fn()


def test_apply_creates_and_changes_a_workflow_as_the_app_role():
    call_command("db_app_role", role=ROLE, password="", stdout=io.StringIO())
    admin = UserFactory(username="root-admin")
    admin.groups.add(roles_ensure()[Role.ADMIN])
    result = _as_app(lambda: spec_apply(spec_parse(SPEC), actor=admin))
    assert result.created
    changed = SPEC.replace("amount: 50", "amount: 40").replace(
        "max_tool_calls: 12", "max_tool_calls: 10"
    )
    changed = changed.replace("  - name: get_order\n    kind: builtin\n", "")
    _as_app(lambda: spec_apply(spec_parse(changed), actor=admin))
    workflow = Workflow.objects.get(slug="role-spec")
    assert workflow.max_tool_calls == 10
    assert ToolGrant.objects.get(workflow=workflow, tool="create_refund").caps == {"amount": "40"}
    assert not ToolGrant.objects.get(workflow=workflow, tool="get_order").enabled
    # Without its change row the same write is refused: the check above could fail.
    with pytest.raises(DatabaseError, match="only through change control"):
        _as_app(lambda: Workflow.objects.filter(pk=workflow.pk).update(max_tool_calls=99))
