"""The role groups exist after migrate; createadmin makes the first admin."""

from __future__ import annotations

from importlib import import_module
from io import StringIO

import pytest
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError

from governance.management.commands import createadmin
from governance.models import AuditEvent
from governance.permissions import GLOBAL_ROLE_PERMS, Role, is_admin

pytestmark = pytest.mark.django_db

STRONG = "correct-horse-battery-staple-41"


def _perms(group: Group) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}


def test_role_groups_exist_after_migrate_with_their_global_permissions():
    groups = {g.name: g for g in Group.objects.filter(name__in=Role.ALL)}
    assert set(groups) == set(Role.ALL)
    for role in Role.ALL:
        assert _perms(groups[role]) == set(GLOBAL_ROLE_PERMS[role])


def test_role_groups_migration_is_idempotent_and_keeps_members():
    migration = import_module("governance.migrations.0009_spec_role_groups")
    Group.objects.filter(name=Role.OPS).delete()
    user = get_user_model().objects.create_user(username="otto")
    Group.objects.get(name=Role.REVIEWER).user_set.add(user)
    migration.role_groups_create(django_apps, None)
    migration.role_groups_create(django_apps, None)
    assert Group.objects.filter(name__in=Role.ALL).count() == 4
    assert _perms(Group.objects.get(name=Role.OPS)) == set(GLOBAL_ROLE_PERMS[Role.OPS])
    assert user.groups.filter(name=Role.REVIEWER).exists()


def test_createadmin_from_environment(monkeypatch):
    monkeypatch.setenv(createadmin.ENV_USERNAME, "alice")
    monkeypatch.setenv(createadmin.ENV_EMAIL, "alice@example.com")
    monkeypatch.setenv(createadmin.ENV_PASSWORD, STRONG)
    out = StringIO()
    call_command("createadmin", "--no-input", stdout=out)
    user = get_user_model().objects.get(username="alice")
    assert user.check_password(STRONG)
    assert user.groups.filter(name=Role.ADMIN).exists()
    assert is_admin(user)
    assert createadmin.DONE.format(username="alice") in out.getvalue()
    assert AuditEvent.objects.filter(action="user.admin_created", object_id=str(user.pk)).exists()


def test_createadmin_prompts_for_the_password(monkeypatch):
    monkeypatch.delenv(createadmin.ENV_PASSWORD, raising=False)
    answers = iter([STRONG, STRONG])
    monkeypatch.setattr(createadmin.getpass, "getpass", lambda prompt: next(answers))
    call_command(
        "createadmin", "--username", "bob", "--email", "bob@example.com", stdout=StringIO()
    )
    assert get_user_model().objects.get(username="bob").check_password(STRONG)


def test_createadmin_refuses_two_different_passwords(monkeypatch):
    monkeypatch.delenv(createadmin.ENV_PASSWORD, raising=False)
    answers = iter([STRONG, STRONG + "x"])
    monkeypatch.setattr(createadmin.getpass, "getpass", lambda prompt: next(answers))
    with pytest.raises(CommandError, match=createadmin.ERR_MISMATCH):
        call_command("createadmin", "--username", "bob", "--email", "bob@example.com")
    assert not get_user_model().objects.filter(username="bob").exists()


@pytest.mark.parametrize("password", ["password", "alice", "12345678", "short"])
def test_createadmin_refuses_a_weak_password_and_writes_nothing(monkeypatch, password):
    monkeypatch.setenv(createadmin.ENV_PASSWORD, password)
    with pytest.raises(CommandError, match="The password is refused"):
        call_command(
            "createadmin", "--username", "alice", "--email", "alice@example.com", "--no-input"
        )
    assert not get_user_model().objects.filter(username="alice").exists()


def test_createadmin_refuses_a_duplicate_username_or_email(monkeypatch):
    get_user_model().objects.create_user(username="alice", email="a@example.com")
    monkeypatch.setenv(createadmin.ENV_PASSWORD, STRONG)
    with pytest.raises(CommandError, match="already exists; choose another username"):
        call_command("createadmin", "--username", "ALICE", "--email", "x@example.com", "--no-input")
    with pytest.raises(CommandError, match="A user with the email A@example.com already exists"):
        call_command("createadmin", "--username", "carol", "--email", "A@example.com", "--no-input")
    assert get_user_model().objects.count() == 1


def test_createadmin_without_input_names_what_is_missing(monkeypatch):
    for name in (createadmin.ENV_USERNAME, createadmin.ENV_EMAIL, createadmin.ENV_PASSWORD):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(CommandError, match="Give the admin's username"):
        call_command("createadmin", "--no-input")
    with pytest.raises(CommandError, match="Give the admin's password"):
        call_command("createadmin", "--username", "dan", "--email", "d@example.com", "--no-input")
    with pytest.raises(CommandError, match="is not an email address"):
        call_command("createadmin", "--username", "dan", "--email", "nope", "--no-input")


def test_role_groups_come_back_after_a_flush_without_losing_extra_permissions():
    from django.contrib.auth.models import Permission

    from governance.apps import role_groups_keep

    ops = Group.objects.get(name=Role.OPS)
    extra = Permission.objects.get(codename="review_workflow")
    ops.permissions.add(extra)
    Group.objects.filter(name=Role.MANAGER).delete()
    role_groups_keep(using="default")
    assert Group.objects.filter(name__in=Role.ALL).count() == 4
    assert _perms(Group.objects.get(name=Role.OPS)) == {
        *GLOBAL_ROLE_PERMS[Role.OPS],
        extra.content_type.app_label + ".review_workflow",
    }
