"""Decisions from chat: the other half of the approval requests posted to Slack.

An approval request (``agents.notifications``) carries approve / reject buttons whose
value names the proposal and the hash of the arguments the message showed. Slack
posts the click to ``POST /integrations/slack/actions``; this module checks the
request is Slack's (the ``v0`` HMAC-SHA256 signature of ``v0:{timestamp}:{body}``
with the app's signing secret, inside a five-minute window), finds the Tenure user
the Slack account is linked to (``ChatIdentity``, managed by admins), and records
the decision through ``reviews.services.proposal_decide``: the same claim, the same
hash binding (a message whose arguments changed since is refused), the same four
eyes (a first approval waits for a different reviewer), the same Decision and audit
event as in the console (the audit event adds ``"via": "slack"``).

The answer is the updated message: the buttons give way to who decided. It is the
HTTP response, and it is also posted to the click's ``response_url`` (after commit,
retried) when that URL is Slack's (``TENURE_SLACK_RESPONSE_URL_PREFIXES``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404
from django.utils import timezone

from agents.models import Proposal
from agents.notifications import ACTION_APPROVE, ACTION_REJECT
from governance.models import ChatIdentity
from governance.notifications import enqueue, escape
from governance.permissions import REVIEW, access_workflow
from reviews import claims
from reviews.models import Approval, Decision, RejectReason
from reviews.services import DecisionRefused, proposal_decide

logger = logging.getLogger(__name__)

SIGNATURE_VERSION = "v0"
REPLAY_WINDOW_SECONDS = 5 * 60
VIA = "slack"
# A rejection from a button has no reason picker: it is recorded as "other", with this.
CHAT_REJECT_REASON = RejectReason.OTHER
CHAT_REJECT_TEXT = "Rejected from Slack."

ERR_NOT_CONFIGURED = "Slack actions are not configured (TENURE_SLACK_SIGNING_SECRET)."
ERR_BAD_SIGNATURE = "The request is not signed by Slack (bad or missing signature)."
ERR_STALE = "The request timestamp is missing or more than five minutes away: refused."
ERR_BAD_PAYLOAD = "The request carries no Slack block action."
MSG_UNKNOWN_ACTION = "This button is not one Tenure answers; nothing was recorded."
MSG_UNMAPPED = (
    "Your Slack account is not linked to a Tenure user, so nothing was recorded. "
    "Ask a Tenure admin to link it (Admin → Chat identities), or decide in Tenure."
)
MSG_NOT_ALLOWED = "You may not review this workflow in Tenure; nothing was recorded."
MSG_NO_SUCH_PROPOSAL = "This proposal no longer exists in Tenure; nothing was recorded."
MSG_HELD_BY_OTHER = "Another reviewer has this proposal open in Tenure; nothing was recorded."
MSG_NOT_CLAIMABLE = "This proposal is not waiting for a decision any more; nothing was recorded."
MSG_REFUSED = "Nothing was recorded: {reason}"
MSG_APPROVED = "Approved by {who} in Slack (decision #{id})."
MSG_EDITED = "Approved with edits by {who} in Slack (decision #{id})."
MSG_REJECTED = "Rejected by {who} in Slack (decision #{id})."
MSG_FIRST_APPROVAL = (
    "First approval by {who} in Slack: a different reviewer must approve before it runs."
)


class SlackRequestRefused(Exception):
    """The request is not a fresh one from Slack (401)."""


@dataclass(frozen=True)
class ChatReply:
    """The message to answer with; ``final`` when the buttons are done with."""

    message: dict[str, Any]
    final: bool


# --- The request is Slack's ------------------------------------------------------------


def signing_secret() -> str:
    return str(getattr(settings, "TENURE_SLACK_SIGNING_SECRET", "") or "")


def slack_signature(body: bytes, timestamp: str, secret: str) -> str:
    message = f"{SIGNATURE_VERSION}:{timestamp}:".encode() + body
    return f"{SIGNATURE_VERSION}=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def slack_verify(
    *, body: bytes, timestamp: str, signature: str, secret: str, now: float | None = None
) -> None:
    """Raise SlackRequestRefused unless the body is signed with the secret, recently."""
    now = time.time() if now is None else now
    if not timestamp.isdigit() or abs(now - int(timestamp)) > REPLAY_WINDOW_SECONDS:
        raise SlackRequestRefused(ERR_STALE)
    if not hmac.compare_digest(slack_signature(body, timestamp, secret), signature or ""):
        raise SlackRequestRefused(ERR_BAD_SIGNATURE)


# --- Answers -----------------------------------------------------------------------------


def _ephemeral(text: str) -> ChatReply:
    """A note to the one who clicked; the message and its buttons stay as they were."""
    return ChatReply(
        message={"response_type": "ephemeral", "replace_original": False, "text": text},
        final=False,
    )


def _updated(payload: dict[str, Any], *, text: str, final: bool) -> ChatReply:
    """The original message with a line saying what happened; without its buttons when
    the decision is made (a first of two approvals keeps them, for the second)."""
    original = payload.get("message") or {}
    blocks = [b for b in original.get("blocks") or [] if isinstance(b, dict)]
    if final:
        blocks = [
            b
            for b in blocks
            if not (b.get("type") == "actions" and str(b.get("block_id", "")).startswith("tenure"))
        ]
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": text}]})
    return ChatReply(
        message={
            "replace_original": True,
            "text": f"{original.get('text') or 'Tenure'} — {text}",
            "blocks": blocks,
        },
        final=final,
    )


def _who(identity: ChatIdentity) -> str:
    return f"<@{escape(identity.external_user_id)}> ({escape(identity.user.get_username())})"


def _seconds_spent(payload: dict[str, Any]) -> int | None:
    """From the message being posted to the click (the service caps it), else unknown."""
    container = payload.get("container") or {}
    posted = container.get("message_ts") or (payload.get("message") or {}).get("ts")
    try:
        return max(0, int(time.time() - float(posted)))
    except (TypeError, ValueError):
        return None


# --- The decision --------------------------------------------------------------------------


def _action(payload: dict[str, Any]) -> tuple[str, int, str] | None:
    """(action id, proposal id, arguments hash) of the click, or None if it is not ours."""
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        return None
    action = actions[0]
    action_id = action.get("action_id")
    if action_id not in (ACTION_APPROVE, ACTION_REJECT):
        return None
    try:
        value = json.loads(action.get("value") or "")
        return action_id, int(value["proposal"]), str(value["hash"])
    except (ValueError, TypeError, KeyError):
        return None


def chat_action_handle(*, payload: dict[str, Any]) -> ChatReply:
    """Record the decision a verified Slack click asks for, under the console's rules."""
    parsed = _action(payload)
    if parsed is None:
        return _ephemeral(MSG_UNKNOWN_ACTION)
    action_id, proposal_id, shown_hash = parsed
    user_id = str((payload.get("user") or {}).get("id") or "")
    identity = (
        ChatIdentity.objects.select_related("user")
        .filter(platform=ChatIdentity.Platform.SLACK, external_user_id=user_id)
        .first()
        if user_id
        else None
    )
    if identity is None or not identity.user.is_active:
        return _ephemeral(MSG_UNMAPPED)
    reviewer = identity.user
    proposal = Proposal.objects.select_related("workflow").filter(pk=proposal_id).first()
    if proposal is None:
        return _ephemeral(MSG_NO_SUCH_PROPOSAL)
    try:
        workflow = access_workflow(
            user=reviewer, slug=proposal.workflow.slug, perm=REVIEW, what="review"
        )
    except (Http404, PermissionDenied):
        return _ephemeral(MSG_NOT_ALLOWED)

    approve = action_id == ACTION_APPROVE
    try:
        # One transaction: a refused decision gives the claim back as it was.
        with transaction.atomic():
            claim = claims.claim_proposal(reviewer=reviewer, proposal=proposal, keep_others=True)
            if claim is None:
                held = claims.claims_held_by_others(
                    proposal_ids=[proposal.pk], reviewer_id=reviewer.pk
                )
                return _ephemeral(MSG_HELD_BY_OTHER if held else MSG_NOT_CLAIMABLE)
            result = proposal_decide(
                proposal_id=proposal.pk,
                reviewer=reviewer,
                claim_token=claim.token,
                verdict=Decision.Verdict.ACCEPT if approve else Decision.Verdict.REJECT,
                reason="" if approve else CHAT_REJECT_REASON,
                reason_text="" if approve else CHAT_REJECT_TEXT,
                seconds_spent=_seconds_spent(payload),
                workflow=workflow,
                shown_proposal_id=proposal_id,
                shown_arguments_hash=shown_hash,
                via=VIA,
            )
    except DecisionRefused as exc:
        return _ephemeral(MSG_REFUSED.format(reason=exc.messages[0]))
    except ValidationError as exc:
        return _ephemeral(MSG_REFUSED.format(reason=" ".join(exc.messages)))
    who = _who(identity)
    if isinstance(result, Approval):
        return _updated(payload, text=MSG_FIRST_APPROVAL.format(who=who), final=False)
    template = {
        Decision.Verdict.ACCEPT: MSG_APPROVED,
        Decision.Verdict.EDIT: MSG_EDITED,
        Decision.Verdict.REJECT: MSG_REJECTED,
    }[result.verdict]
    return _updated(payload, text=template.format(who=who, id=result.pk), final=True)


# --- Answering through the response URL ---------------------------------------------------


def response_url_allowed(url: str) -> bool:
    prefixes = getattr(
        settings, "TENURE_SLACK_RESPONSE_URL_PREFIXES", ("https://hooks.slack.com/",)
    )
    return bool(url) and any(url.startswith(prefix) for prefix in prefixes if prefix)


def reply_dispatch(*, payload: dict[str, Any], reply: ChatReply) -> bool:
    """Post the reply to the click's response URL after commit (retried), when it is
    Slack's: a signed body still names the URL, and Tenure posts only where it should."""
    url = str(payload.get("response_url") or "")
    if not response_url_allowed(url):
        return False
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S%f")
    user_id = str((payload.get("user") or {}).get("id") or "")
    return enqueue(reply.message, f"chat-reply-{user_id}-{stamp}", url=url)
