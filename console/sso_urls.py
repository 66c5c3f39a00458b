"""The OIDC endpoints, open to anonymous visitors (they are how one signs in).

Include with ``path("oidc/", include("console.sso_urls"))``. The URL names are
mozilla-django-oidc's own, which its views reverse. With SSO unconfigured both
answer 404.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path

from console.sso import SsoCallbackView, SsoStartView, sso_enabled

ERR_SSO_OFF = "Single sign-on is not configured."


def _when_enabled(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not sso_enabled():
            raise Http404(ERR_SSO_OFF)
        return view(request, *args, **kwargs)

    return login_not_required(wrapper)


urlpatterns = [
    path(
        "authenticate/",
        _when_enabled(SsoStartView.as_view()),
        name="oidc_authentication_init",
    ),
    path(
        "callback/",
        _when_enabled(SsoCallbackView.as_view()),
        name="oidc_authentication_callback",
    ),
]
