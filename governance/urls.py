"""URLs of the governance pages: changes, promotion, prices, audit."""

from __future__ import annotations

from django.urls import path

from governance import views

urlpatterns = [
    path("pause-all/", views.workflow_pause_all, name="workflow-pause-all"),
    path("prices/", views.model_prices, name="model-prices"),
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
]
