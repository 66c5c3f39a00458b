"""The Django project: settings, URLs, the Celery app, middleware, sign-in and SSO."""

from __future__ import annotations

from console.celery import app as celery_app

__all__ = ["celery_app"]
