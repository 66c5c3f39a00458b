"""The session's user is read by console.backends.ModelBackend: same answers as
Django's ModelBackend."""

from __future__ import annotations

import pytest
from django.contrib.auth import backends, get_user_model
from django.test import Client

from console.backends import ModelBackend

pytestmark = pytest.mark.django_db


def test_get_user_gives_the_same_user_as_djangos_backend():
    user = get_user_model().objects.create_user(username="rita", password="pw-123456789")
    ours, theirs = ModelBackend().get_user(user.pk), backends.ModelBackend().get_user(user.pk)
    assert ours == theirs
    assert {f.attname: getattr(ours, f.attname) for f in user._meta.concrete_fields} == {
        f.attname: getattr(theirs, f.attname) for f in user._meta.concrete_fields
    }
    assert ours._state.adding is False


def test_an_inactive_or_missing_user_is_nobody():
    user = get_user_model().objects.create_user(username="gone", is_active=False)
    assert ModelBackend().get_user(user.pk) is None
    assert ModelBackend().get_user(user.pk + 1000) is None
    assert ModelBackend().get_user(str(user.pk + 1000)) is None  # as a session stores it


def test_a_deactivated_users_session_stops_working():
    user = get_user_model().objects.create_user(username="ravi", password="pw-123456789")
    client = Client()
    client.force_login(user, backend="console.backends.ModelBackend")
    assert client.get("/").status_code == 200
    user.is_active = False
    user.save()
    response = client.get("/")
    assert response.status_code == 302
    assert "/login/" in response["Location"]
