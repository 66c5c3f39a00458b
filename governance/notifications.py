"""Outbound notifications: signed, Slack-compatible JSON webhooks.

Escalations, approval requests (with approve / reject buttons, answered through
``reviews.chat``), demotions, pauses, resumes and approvals waiting past their SLA
are posted to the workflow's chat channel (``ChatChannel``, admin-managed) or else
to the global webhook (``TENURE_WEBHOOK_URL``). Each request is signed like Slack's own
requests: ``X-Tenure-Signature: v1=<hex hmac-sha256 of "v1:<timestamp>:<body>">``
with ``TENURE_WEBHOOK_SECRET``, plus ``X-Tenure-Timestamp`` so a receiver can
refuse replays, and an ``Idempotency-Key`` so a retried delivery is recognised.

Callers use the ``notify_*`` functions inside the transaction that makes the
change; the Celery task is sent only after that transaction commits. Transient
failures (network errors, 429 and 5xx) are retried with exponential backoff;
other 4xx answers are dropped and logged, since retrying cannot fix them.
With no webhook URL configured, nothing is sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from typing import Any

import httpx
from celery import shared_task
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from governance.models import AutonomyChange, ChatChannel, Workflow

logger = logging.getLogger(__name__)

SIGNATURE_VERSION = "v1"
TIMEOUT_SECONDS = 10
MAX_RETRIES = 6


class Event:
    ESCALATION = "escalation.created"
    DEMOTION = "autonomy.demoted"
    PAUSE = "workflow.paused"
    RESUME = "workflow.resumed"
    APPROVAL_REQUEST = "approval.requested"
    SLA_BREACH = "approval.sla_breached"


class RetryableDeliveryError(Exception):
    """The receiver may accept the same request later (network error, 429, 5xx)."""


class PermanentDeliveryError(Exception):
    """The receiver refused the request; sending it again will not help."""


def _setting(name: str, default: str = "") -> str:
    # Read from settings when the project defines it, else straight from the environment.
    return str(getattr(settings, name, os.environ.get(name, default)) or "")


def webhook_url(workflow: Workflow | None = None) -> str:
    """The workflow's own chat channel when it has one, else the global webhook."""
    if workflow is not None:
        channel = ChatChannel.objects.filter(workflow_id=workflow.pk).only("webhook_url").first()
        if channel is not None and channel.webhook_url:
            return channel.webhook_url
    return _setting("TENURE_WEBHOOK_URL")


def webhook_secret() -> str:
    return _setting("TENURE_WEBHOOK_SECRET")


def base_url() -> str:
    return _setting("TENURE_BASE_URL").rstrip("/")


# --- Signing ------------------------------------------------------------------------


def sign(body: bytes, timestamp: str, secret: str) -> str:
    message = f"{SIGNATURE_VERSION}:{timestamp}:".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def verify_signature(
    body: bytes, timestamp: str, signature: str, secret: str, *, tolerance: int = 300
) -> bool:
    """What a receiver does (and what the tests check): constant-time compare, fresh stamp."""
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(body, timestamp, secret), signature)


# --- Payloads ------------------------------------------------------------------------


def _absolute(path: str) -> str:
    return f"{base_url()}{path}"


def build_payload(
    *, event: str, event_id: str, workflow: Workflow, title: str, lines: list[str], path: str
) -> dict[str, Any]:
    """Slack-compatible: ``text`` for simple receivers and notifications, ``blocks``
    for Slack, and a ``tenure`` object with the machine-readable facts."""
    link = _absolute(path)
    text = f"{title} — {workflow.name}"
    owner = workflow.owner.get_username() if workflow.owner_id else ""
    if owner:
        # The accountable owner is named in every incident notice.
        lines = [*lines, f"Owner: {escape(owner)}"]
    body = "\n".join([f"*{title}*", *(line for line in lines if line), f"<{link}|Open in Tenure>"])
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": body}},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"{workflow.slug} · {event}"}],
            },
        ],
        "tenure": {
            "event": event,
            "id": event_id,
            "workflow": workflow.slug,
            "owner": owner,
            "url": link,
            "at": timezone.now().isoformat(),
        },
    }


def escape(text: str) -> str:
    """Slack mrkdwn control characters; agent and user text is untrusted."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- Delivery ---------------------------------------------------------------------------


def deliver(
    payload: dict[str, Any],
    *,
    event_id: str,
    client: httpx.Client | None = None,
    url: str | None = None,
) -> int:
    """POST one signed payload. Raises Retryable/PermanentDeliveryError on failure."""
    url, secret = url or webhook_url(), webhook_secret()
    if not url:
        return 0
    body = json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": event_id,
        "X-Tenure-Timestamp": timestamp,
        "User-Agent": "Tenure-Webhook/1",
    }
    if secret:
        headers["X-Tenure-Signature"] = sign(body, timestamp, secret)
    own_client = client is None
    client = client or httpx.Client(timeout=TIMEOUT_SECONDS)
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.TransportError as exc:
        raise RetryableDeliveryError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        if own_client:
            client.close()
    if response.status_code == 429 or response.status_code >= 500:
        raise RetryableDeliveryError(f"HTTP {response.status_code}")
    if response.status_code >= 400:
        raise PermanentDeliveryError(f"HTTP {response.status_code}: {response.text[:200]}")
    return response.status_code


@shared_task(
    name="governance.send_webhook",
    bind=True,
    ignore_result=True,
    acks_late=True,
    max_retries=MAX_RETRIES,
)
def send_webhook(self, payload: dict[str, Any], event_id: str, url: str | None = None) -> int:
    try:
        if url:
            return deliver(payload, event_id=event_id, url=url)
        return deliver(payload, event_id=event_id)
    except RetryableDeliveryError as exc:
        # 10 s, 20 s, 40 s ... capped at 10 minutes.
        countdown = min(10 * 2**self.request.retries, 600)
        logger.warning("webhook %s failed (%s); retry in %ss", event_id, exc, countdown)
        raise self.retry(exc=exc, countdown=countdown) from exc
    except PermanentDeliveryError as exc:
        logger.error("webhook %s refused: %s", event_id, exc)
        return 0


def enqueue(
    payload: dict[str, Any],
    event_id: str,
    *,
    workflow: Workflow | None = None,
    url: str | None = None,
) -> bool:
    """Send the payload once the current transaction commits (to ``url``, else the
    workflow's channel when it has one). False when no webhook is configured."""
    url = url or webhook_url(workflow)
    if not url:
        return False
    # The global URL is read again by the worker (it is a setting); a channel's is passed.
    channel_url = url if url != webhook_url() else None

    def send() -> None:
        try:
            if channel_url:
                send_webhook.delay(payload, event_id, channel_url)
            else:
                send_webhook.delay(payload, event_id)
        except Exception:  # noqa: BLE001 - a broker outage must not fail the change
            logger.warning("broker unavailable: webhook %s not sent", event_id)

    transaction.on_commit(send)
    return True


# --- What to notify -----------------------------------------------------------------------


def notify_demotion(change: AutonomyChange) -> bool:
    workflow = change.workflow
    target = f"tool `{change.grant.tool}`" if change.grant_id else "the workflow"
    who = change.requested_by.get_username() if change.requested_by else "the circuit breaker"
    payload = build_payload(
        event=Event.DEMOTION,
        event_id=f"autonomy-change-{change.pk}",
        workflow=workflow,
        title=f"Demoted {change.from_level} → {change.to_level}",
        lines=[f"{target.capitalize()} by {escape(who)}", escape(change.reason[:300])],
        path=reverse("evidence-pack", args=[workflow.slug]),
    )
    return enqueue(payload, f"autonomy-change-{change.pk}", workflow=workflow)


def notify_pause(workflow: Workflow, *, actor_label: str, reason: str) -> bool:
    stamp = (workflow.paused_at or timezone.now()).strftime("%Y%m%dT%H%M%S")
    event_id = f"pause-{workflow.pk}-{stamp}"
    payload = build_payload(
        event=Event.PAUSE,
        event_id=event_id,
        workflow=workflow,
        title="Paused: no model call or tool execution starts",
        lines=[f"By {escape(actor_label)}", escape(reason[:300])],
        path=reverse("workflow-detail", args=[workflow.slug]),
    )
    return enqueue(payload, event_id, workflow=workflow)


def notify_resume(workflow: Workflow, *, actor_label: str, reason: str) -> bool:
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S%f")
    event_id = f"resume-{workflow.pk}-{stamp}"
    payload = build_payload(
        event=Event.RESUME,
        event_id=event_id,
        workflow=workflow,
        title="Resumed: held work starts again",
        lines=[f"By {escape(actor_label)}", escape(reason[:300])],
        path=reverse("workflow-detail", args=[workflow.slug]),
    )
    return enqueue(payload, event_id, workflow=workflow)
