"""The console's URLs plus the SSO include the lead adds to console/urls.py."""

from __future__ import annotations

from django.urls import include, path

from console.urls import urlpatterns as console_urlpatterns

urlpatterns = [path("oidc/", include("console.sso_urls")), *console_urlpatterns]
