"""The world every route-walking security test requests its routes in."""

from __future__ import annotations

import pytest

from tests.security.routes import World, world_build


@pytest.fixture
def world(roles, monkeypatch) -> World:
    return world_build(roles, monkeypatch)
