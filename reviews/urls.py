"""URLs of the queues, cards, escalations and chat actions."""

from __future__ import annotations

from django.urls import path

from reviews import chat_views, views

urlpatterns = [
    path("integrations/slack/actions", chat_views.slack_actions, name="slack-actions"),
    path("queue/", views.queue_all, name="review-queue-all"),
    path("queue/counts/", views.queue_all_counts, name="review-queue-all-counts"),
    path("escalations/", views.escalations_all, name="review-escalations-all"),
    path("w/<slug:slug>/queue/", views.queue, name="review-queue"),
    path("w/<slug:slug>/queue/counts/", views.queue_counts, name="review-queue-counts"),
    path("w/<slug:slug>/queue/<int:proposal_id>/", views.card, name="review-card"),
    path("w/<slug:slug>/queue/<int:proposal_id>/decide/", views.decide, name="review-decide"),
    path(
        "w/<slug:slug>/queue/<int:proposal_id>/reject-rest/",
        views.reject_rest,
        name="review-reject-rest",
    ),
    path(
        "w/<slug:slug>/queue/decisions/<int:decision_id>/undo/",
        views.undo,
        name="review-undo",
    ),
    path("w/<slug:slug>/escalations/", views.escalations, name="review-escalations"),
    path(
        "w/<slug:slug>/escalations/<int:escalation_id>/",
        views.escalation,
        name="review-escalation",
    ),
]
