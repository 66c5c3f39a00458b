"""Template context every page gets (the signed-in user's roles, the build)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from governance.permissions import user_roles


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_roles": set()}
    return {"nav_roles": user_roles(user)}
