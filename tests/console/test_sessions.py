"""Sessions come from Redis when it is up and from the database when it is not:
a Redis outage must not log anybody out or turn pages into 500s."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.core.cache import caches
from django.test import Client, RequestFactory
from django.urls import reverse

from console.middleware import session_user
from console.sessions import SessionStore
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

DEAD_REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
    }
}


def test_a_logged_in_reviewer_keeps_working_while_redis_is_down(settings, reviewer, workflow):
    settings.SESSION_ENGINE = "console.sessions"
    client = Client()
    assert client.login(username=reviewer.username, password=PASSWORD)
    assert client.get(reverse("home")).status_code == 200  # read through the cache

    settings.CACHES = DEAD_REDIS
    response = client.get(reverse("workflow-detail", args=[workflow.slug]))
    assert response.status_code == 200
    assert reviewer.username in response.content.decode()


def test_logging_in_and_out_while_redis_is_down(settings, reviewer):
    settings.SESSION_ENGINE = "console.sessions"
    settings.CACHES = DEAD_REDIS
    client = Client()
    response = client.post(reverse("login"), {"username": reviewer.username, "password": PASSWORD})
    assert response.status_code == 302
    assert client.get(reverse("home")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("home")).status_code == 302, "logged out: sent to the login page"


# --- A session ended while Redis was down stays ended when Redis returns ----------------


def _session_cookie(client: Client) -> str:
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


def _replay(cookie: str) -> Client:
    """A second browser holding a copy of the cookie (a stolen one, or another tab)."""
    thief = Client()
    thief.cookies[django_settings.SESSION_COOKIE_NAME] = cookie
    return thief


def _signed_in(client: Client) -> bool:
    return client.get(reverse("home")).status_code == 200


@pytest.fixture
def cached_sessions(settings, empty_cache):
    settings.SESSION_ENGINE = "console.sessions"
    return settings


def test_a_logout_while_redis_is_down_still_holds_once_redis_returns(cached_sessions, reviewer):
    client = Client()
    assert client.login(username=reviewer.username, password=PASSWORD)
    assert _signed_in(client)  # the session is now cached in Redis
    cookie = _session_cookie(client)
    live_caches = cached_sessions.CACHES

    cached_sessions.CACHES = DEAD_REDIS
    client.post(reverse("logout"))
    cached_sessions.CACHES = live_caches  # Redis is back, with the session's old copy

    key = SessionStore.cache_key_prefix + cookie
    assert caches["default"].get(key) is not None, "the stale copy is still in the cache"
    assert not _signed_in(_replay(cookie))
    assert caches["default"].get(key) is None, "refusing it dropped the stale copy"


def test_a_stale_copy_restored_into_redis_is_refused(cached_sessions, reviewer):
    """Redis restarting from an older snapshot brings back sessions deleted since."""
    client = Client()
    assert client.login(username=reviewer.username, password=PASSWORD)
    assert _signed_in(client)
    cookie = _session_cookie(client)
    key = SessionStore.cache_key_prefix + cookie
    snapshot = caches["default"].get(key)

    client.post(reverse("logout"))
    caches["default"].set(key, snapshot, 600)

    assert not _signed_in(_replay(cookie))


def test_an_sso_session_logged_out_while_redis_is_down_stays_out(cached_sessions, reviewer):
    client = Client()
    client.force_login(reviewer, backend="console.sso.TenureOIDCBackend")
    assert _signed_in(client)
    cookie = _session_cookie(client)
    live_caches = cached_sessions.CACHES

    cached_sessions.CACHES = DEAD_REDIS
    client.post(reverse("logout"))
    cached_sessions.CACHES = live_caches

    assert not _signed_in(_replay(cookie))


def test_a_backend_that_does_not_confirm_is_checked_against_the_database(cached_sessions, reviewer):
    cached_sessions.AUTHENTICATION_BACKENDS = [
        *cached_sessions.AUTHENTICATION_BACKENDS,
        "django.contrib.auth.backends.ModelBackend",
    ]
    client = Client()
    client.force_login(reviewer, backend="django.contrib.auth.backends.ModelBackend")
    assert _signed_in(client)
    cookie = _session_cookie(client)
    live_caches = cached_sessions.CACHES

    cached_sessions.CACHES = DEAD_REDIS
    client.post(reverse("logout"))
    cached_sessions.CACHES = live_caches

    assert not _signed_in(_replay(cookie))


def test_a_password_change_while_redis_is_down_ends_the_users_other_sessions(cached_sessions):
    user = UserFactory(username="ada-admin", is_staff=True, is_superuser=True)
    laptop, phone = Client(), Client()
    for device in (laptop, phone):
        assert device.login(username=user.username, password=PASSWORD)
        assert _signed_in(device)  # cached
    laptop_cookie = _session_cookie(laptop)
    live_caches = cached_sessions.CACHES

    cached_sessions.CACHES = DEAD_REDIS
    changed = laptop.post(
        "/admin/password_change/",
        {
            "old_password": PASSWORD,
            "new_password1": "a-new-long-passphrase-42",
            "new_password2": "a-new-long-passphrase-42",
        },
    )
    assert changed.status_code == 302, changed.content[:500]
    cached_sessions.CACHES = live_caches

    assert _signed_in(laptop), "the session that changed the password goes on"
    assert not _signed_in(phone), "every other session of the user ends"
    assert not _signed_in(_replay(laptop_cookie)), "the laptop's key before the change too"


def test_a_cached_session_is_confirmed_in_the_users_own_statement(
    cached_sessions, reviewer, django_assert_num_queries
):
    client = Client()
    assert client.login(username=reviewer.username, password=PASSWORD)
    assert _signed_in(client)
    request = RequestFactory().get("/")
    request.session = SessionStore(_session_cookie(client))

    with django_assert_num_queries(1) as captured:
        user = session_user(request)

    assert user == reviewer
    assert request.session.served_from_cache
    assert "django_session" in captured.captured_queries[0]["sql"]
