"""The soak's URLconf: the product's URLs plus the floor view (bench/floor_views.py)."""

from __future__ import annotations

from django.urls import include, path

from bench import floor_views

urlpatterns = [
    path("bench/floor/<int:pk>/", floor_views.floor, name="bench-floor"),
    path("", include("console.urls")),
]
