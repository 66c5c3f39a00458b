from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_in(client):
    client.force_login(get_user_model().objects.create_user(username="rita"))
    return client


def test_an_unknown_address_says_so_in_words(client_in):
    response = client_in.get("/no-such-page/")
    assert response.status_code == 404
    body = response.content.decode()
    assert "There is nothing at this address." in body
    assert "Resolver404" not in body


def test_a_reason_given_by_the_view_is_shown(client_in):
    response = client_in.get("/w/no-such-workflow/queue/")
    assert response.status_code == 404
    assert "There is no workflow called “no-such-workflow”." in response.content.decode()
