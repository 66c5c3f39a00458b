"""Sessions come from Redis when it is up and from the database when it is not:
a Redis outage must not log anybody out or turn pages into 500s."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.factories import PASSWORD

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
