"""The project's URLs: each app's pages, the API, sign-in and the admin."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path

from console.api import api
from console.login import LoginForm

urlpatterns = [
    path(
        "login/",
        login_not_required(
            auth_views.LoginView.as_view(
                authentication_form=LoginForm, redirect_authenticated_user=True
            )
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("oidc/", include("console.sso_urls")),
    path("", include("governance.urls")),
    path("", include("evidence.urls")),
    path("", include("reviews.urls")),
    path("api/v1/", api.urls),
    path("", include("console.ops.urls")),
    path("admin/", admin.site.urls),
]
handler400 = "console.views.bad_request"
handler404 = "console.views.page_not_found"
