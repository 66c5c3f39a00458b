"""The inbound endpoint for chat buttons (``reviews.chat``): Slack's block actions."""

from __future__ import annotations

import json
import logging

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from reviews.chat import (
    ERR_BAD_PAYLOAD,
    ERR_NOT_CONFIGURED,
    SlackRequestRefused,
    chat_action_handle,
    reply_dispatch,
    signing_secret,
    slack_verify,
)

logger = logging.getLogger(__name__)


@csrf_exempt  # Slack cannot send a CSRF token: the request signature stands for it
@login_not_required  # the signature says it is Slack; the linked account says who
@require_POST
def slack_actions(request: HttpRequest) -> HttpResponse:
    secret = signing_secret()
    if not secret:
        return JsonResponse({"error": ERR_NOT_CONFIGURED}, status=404)
    try:
        slack_verify(
            body=request.body,
            timestamp=request.headers.get("X-Slack-Request-Timestamp", ""),
            signature=request.headers.get("X-Slack-Signature", ""),
            secret=secret,
        )
    except SlackRequestRefused as exc:
        logger.warning("slack action refused: %s", exc)
        return JsonResponse({"error": str(exc)}, status=401)
    try:
        payload = json.loads(request.POST.get("payload", ""))
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        return JsonResponse({"error": ERR_BAD_PAYLOAD}, status=400)
    reply = chat_action_handle(payload=payload)
    reply_dispatch(payload=payload, reply=reply)
    return JsonResponse(reply.message)
