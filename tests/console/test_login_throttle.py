"""Password sign-in is throttled (django-axes): five failures for one username from one
address lock that pair out for fifteen minutes, the page says so and until when, and
every failure and lockout is in the audit log under the name tried, never the password."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from governance.models import AuditEvent
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

WRONG = "not-the-password-0"


def sign_in(client: Client, username: str, password: str, **extra):
    return client.post(reverse("login"), {"username": username, "password": password}, **extra)


def signed_in(client: Client) -> bool:
    return client.get(reverse("home")).status_code == 200


def test_forty_wrong_passwords_do_not_lead_in(reviewer):
    client = Client()
    statuses = [sign_in(client, reviewer.username, f"guess-{n}").status_code for n in range(39)]
    right = sign_in(client, reviewer.username, PASSWORD)  # the 40th guess is right

    assert statuses[:4] == [200] * 4  # the form again, with its error
    assert set(statuses[4:]) == {429}  # locked from the fifth failure on
    assert right.status_code == 429
    assert not signed_in(client)


def test_the_lockout_page_says_what_happened_and_when_to_try_again(reviewer):
    client = Client()
    for _ in range(5):
        response = sign_in(client, reviewer.username, WRONG)

    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed sign-ins for “rita” from your address" in page
    until = (timezone.now() + timedelta(minutes=15)).strftime("%H:%M")
    assert f"locked until {until} UTC" in page
    assert 800 <= int(response["Retry-After"]) <= 900
    assert 'name="username"' in page, "the sign-in form is still there"


def test_the_right_password_after_a_lockout_is_refused_until_the_cool_off_ends(reviewer):
    client = Client()
    for _ in range(5):
        sign_in(client, reviewer.username, WRONG)
    assert sign_in(client, reviewer.username, PASSWORD).status_code == 429

    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=14))
    assert sign_in(client, reviewer.username, PASSWORD).status_code == 429
    assert not signed_in(client)

    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert sign_in(client, reviewer.username, PASSWORD).status_code == 302
    assert signed_in(client)


def test_a_success_resets_the_count(reviewer):
    client = Client()
    for _ in range(4):
        sign_in(client, reviewer.username, WRONG)
    assert sign_in(client, reviewer.username, PASSWORD).status_code == 302
    client.post(reverse("logout"))
    for _ in range(4):
        sign_in(client, reviewer.username, WRONG)
    assert sign_in(client, reviewer.username, PASSWORD).status_code == 302


def test_the_lockout_holds_one_username_at_one_address(reviewer, manager):
    attacker = Client(REMOTE_ADDR="203.0.113.9")
    for _ in range(5):
        sign_in(attacker, reviewer.username, WRONG)

    at_her_desk = Client(REMOTE_ADDR="198.51.100.7")
    assert sign_in(at_her_desk, reviewer.username, PASSWORD).status_code == 302
    assert sign_in(attacker, manager.username, PASSWORD).status_code == 302


def test_failed_sign_ins_and_the_lockout_are_audited_without_the_password(reviewer):
    client = Client()
    for _ in range(6):
        sign_in(client, reviewer.username, WRONG)

    failed = AuditEvent.objects.filter(action="auth.login_failed").order_by("id")
    assert failed.count() == 6
    assert {e.actor_label for e in failed} == {"login:rita"}
    assert [e.data["refused_while_locked"] for e in failed] == [False] * 5 + [True]
    [locked] = AuditEvent.objects.filter(action="auth.locked_out")
    assert locked.actor_label == "login:rita"
    assert locked.data["ip_address"] == "127.0.0.1"
    assert locked.data["failures"] == 5
    for event in AuditEvent.objects.all():
        assert WRONG not in str(event.data) + event.actor_label


def test_an_unknown_or_hostile_username_is_audited_tidily(db):
    sign_in(Client(), "nobody\u202e" + "x" * 140, WRONG)
    [event] = AuditEvent.objects.filter(action="auth.login_failed")
    assert event.actor_label == "login:nobody" + "x" * 138


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_an_overlong_username_is_a_form_error_or_refused_not_a_500(db, path):
    response = Client().post(path, {"username": "x" * 300, "password": WRONG})
    assert response.status_code == 200
    assert not signed_in(Client())
