"""The API docs page, served entirely from this app.

The console's CSP allows scripts from 'self' only, so ninja's CDN page cannot
load. This page uses the Swagger UI files that ship inside the ninja package,
served by ``docs_asset`` (so it works whether or not ``ninja`` is in
INSTALLED_APPS), and no inline script: the settings travel as a JSON data block.
"""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ninja
from django.http import FileResponse, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import escape
from ninja.openapi.docs import DocsBase

from governance.api import errors

if TYPE_CHECKING:
    from ninja import NinjaAPI

ASSET_DIR = Path(ninja.__file__).resolve().parent / "static" / "ninja"
ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui-init.js", "swagger-ui.css", "favicon.png"})

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{assets}swagger-ui.css">
<link rel="icon" href="{assets}favicon.png">
</head>
<body data-csrf-token="" data-api-csrf="">
<script type="application/json" id="swagger-settings">{settings}</script>
<div id="swagger-ui"></div>
<script src="{assets}swagger-ui-bundle.js"></script>
<script src="{assets}swagger-ui-init.js"></script>
</body>
</html>
"""


class LocalSwagger(DocsBase):
    def render_page(self, request: HttpRequest, api: NinjaAPI, **kwargs: Any) -> HttpResponse:
        settings = {
            "url": self.get_openapi_url(api, kwargs),
            "layout": "BaseLayout",
            "deepLinking": True,
            # The public validator badge would be a cross-origin image the CSP refuses.
            "validatorUrl": None,
        }
        assets = reverse(f"{api.urls_namespace}:docs-asset", kwargs={"name": "x"})[:-1]
        html = PAGE.format(
            title=escape(api.title),
            assets=escape(assets),
            # "</" cannot end the data block early.
            settings=json.dumps(settings).replace("</", "<\\/"),
        )
        return HttpResponse(html)


def docs_asset(request: HttpRequest, name: str) -> HttpResponse:
    if name not in ASSETS:
        return errors.error_response(404, errors.NOT_FOUND, errors.ERR_NOT_FOUND)
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = FileResponse((ASSET_DIR / name).open("rb"), content_type=content_type)
    response["Cache-Control"] = "public, max-age=86400"
    return response
