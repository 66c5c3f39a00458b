from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path

from console import promotion_views, views
from console.api import api

urlpatterns = [
    path("", views.home, name="home"),
    path("nav/counts/", views.nav_counts, name="nav-counts"),
    path(
        "login/",
        login_not_required(auth_views.LoginView.as_view(redirect_authenticated_user=True)),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("oidc/", include("console.sso_urls")),
    path("pause-all/", views.workflow_pause_all, name="workflow-pause-all"),
    path("w/<slug:slug>/", views.workflow_detail, name="workflow-detail"),
    path("w/<slug:slug>/promote/", promotion_views.promotion_page, name="workflow-promote"),
    path("w/<slug:slug>/changes/", views.config_changes, name="workflow-changes"),
    path(
        "w/<slug:slug>/changes/<int:change_id>/decide/",
        views.config_change_decide,
        name="config-change-decide",
    ),
    path("w/<slug:slug>/pause/", views.workflow_pause, name="workflow-pause"),
    path("w/<slug:slug>/resume/", views.workflow_resume, name="workflow-resume"),
    path("w/<slug:slug>/autonomy/", views.workflow_change_level, name="workflow-change-level"),
    path(
        "w/<slug:slug>/autonomy/<int:change_id>/approve/",
        views.autonomy_change_approve,
        name="autonomy-change-approve",
    ),
    path("", include("console.evidence_urls")),
    path("", include("reviews.urls")),
    path("", include("agents.urls")),
    path("api/v1/", api.urls),
    path("", include("console.api.ui_urls")),
    path("admin/", admin.site.urls),
]
handler404 = "console.views.page_not_found"
