"""Governance writes: autonomy changes and the kill switch."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from governance import hooks, notifications
from governance import sql as governance_sql
from governance.audit import audit_append
from governance.gate import GateEvidence, gate_applies, gate_evaluate
from governance.models import (
    AutonomyChange,
    AutonomyLevel,
    ChatChannel,
    ChatIdentity,
    ToolGrant,
    Workflow,
)
from governance.moot import promotion_moot

ERR_SAME_LEVEL = "The workflow is already at {level}."
ERR_SKIPS_A_STEP = (
    "Promotion goes one step at a time: {frm} can only be promoted to {next}, not {to}."
)
ERR_UNKNOWN_LEVEL = "“{level}” is not an autonomy level."
ERR_GRANT_ABOVE_WORKFLOW = "A tool cannot be above its workflow: the workflow is at {level}."
ERR_FOUR_EYES = "A second manager must approve: you requested this change yourself."
ERR_NOT_REQUESTED = "This change is no longer waiting for approval (it is {status})."
ERR_ALREADY_PAUSED = "The workflow is already paused."
ERR_NOT_PAUSED = "The workflow is not paused."
ERR_GATE_FAILED = "The evidence does not clear the promotion gate: {failed}."
ERR_GATE_TURNED = "The evidence no longer clears the gate at approval time: {failed}."


# Workflow rows are locked FOR NO KEY UPDATE: it serialises changes to the flags
# yet lets concurrent inserts that reference the workflow (audit events, proposals:
# deferred FK checks take KEY SHARE) commit. FOR UPDATE would deadlock a pause
# against a worker holding the audit chain and committing an event.

# Promotions to these levels need a second manager (four eyes).
FOUR_EYES_LEVELS = frozenset({AutonomyLevel.LIMITED, AutonomyLevel.AUTONOMOUS})


def autonomy_transition_check(*, current: str, target: str) -> str:
    """The one place that says which autonomy transitions are legal.

    Up the ladder one step at a time; down by any number of steps. Returns the
    kind of change, or raises ValidationError with a message a user can read.
    """
    if target not in AutonomyLevel.values:
        raise ValidationError(ERR_UNKNOWN_LEVEL.format(level=target), code="unknown_level")
    if target == current:
        raise ValidationError(
            ERR_SAME_LEVEL.format(level=AutonomyLevel(current).label), code="same_level"
        )
    current_rank, target_rank = AutonomyLevel.rank(current), AutonomyLevel.rank(target)
    if target_rank < current_rank:
        return AutonomyChange.Kind.DEMOTION
    if target_rank != current_rank + 1:
        raise ValidationError(
            ERR_SKIPS_A_STEP.format(
                frm=AutonomyLevel(current).label,
                next=AutonomyLevel(AutonomyLevel.ladder()[current_rank + 1]).label,
                to=AutonomyLevel(target).label,
            ),
            code="skips_a_step",
        )
    return AutonomyChange.Kind.PROMOTION


def _failed_list(gate: GateEvidence) -> str:
    return "; ".join(f"{c.label} is {c.value} (needs {c.threshold})" for c in gate.failed)


def _apply_level(change: AutonomyChange) -> None:
    """Move the grant or workflow to the change's level, naming the change to the
    database (which refuses a level change without one). Demoting a workflow caps
    its grants: each capped grant gets a demotion of its own, applied with it."""
    governance_sql.change_mark(autonomy=change.pk)
    if change.grant_id:
        grant = ToolGrant.objects.select_for_update().get(pk=change.grant_id)
        grant.autonomy_level = change.to_level
        grant.save(update_fields=["autonomy_level", "updated_at"])
        return
    workflow = Workflow.objects.select_for_update(no_key=True).get(pk=change.workflow_id)
    workflow.autonomy_level = change.to_level
    workflow.save(update_fields=["autonomy_level", "updated_at"])
    if change.kind != AutonomyChange.Kind.DEMOTION:
        return
    # A tool never exceeds its workflow: demoting the workflow caps its grants.
    over = [
        level
        for level in AutonomyLevel.ladder()
        if AutonomyLevel.rank(level) > AutonomyLevel.rank(change.to_level)
    ]
    for grant in workflow.grants.select_for_update().filter(autonomy_level__in=over).order_by("pk"):
        capped = AutonomyChange.objects.create(
            workflow=workflow,
            grant=grant,
            kind=AutonomyChange.Kind.DEMOTION,
            status=AutonomyChange.Status.APPLIED,
            from_level=grant.autonomy_level,
            to_level=change.to_level,
            requested_by=change.requested_by,
            reason=f"The workflow was demoted to {change.to_level} (change #{change.pk}).",
            decided_at=timezone.now(),
        )
        governance_sql.change_mark(autonomy=capped.pk)
        grant.autonomy_level = change.to_level
        grant.save(update_fields=["autonomy_level", "updated_at"])


def autonomy_change_request(
    *,
    workflow: Workflow,
    to_level: str,
    actor: AbstractBaseUser | None,
    reason: str = "",
    grant: ToolGrant | None = None,
    evidence: dict[str, Any] | None = None,
) -> AutonomyChange:
    """Request (and, where one manager suffices, apply) a change of autonomy.

    Demotions apply at once. Promotions to limited or autonomous wait for a
    second manager's approval (four eyes); lower promotions apply at once.
    """
    with transaction.atomic():
        workflow = Workflow.objects.select_for_update(no_key=True).get(pk=workflow.pk)
        if grant is not None:
            grant = ToolGrant.objects.select_for_update().get(pk=grant.pk, workflow=workflow)
            current = grant.autonomy_level
            above_workflow = to_level in AutonomyLevel.values and AutonomyLevel.rank(
                to_level
            ) > AutonomyLevel.rank(workflow.autonomy_level)
            if above_workflow:
                raise ValidationError(
                    ERR_GRANT_ABOVE_WORKFLOW.format(
                        level=AutonomyLevel(workflow.autonomy_level).label
                    ),
                    code="grant_above_workflow",
                )
        else:
            current = workflow.autonomy_level
        kind = autonomy_transition_check(current=current, target=to_level)
        if kind == AutonomyChange.Kind.PROMOTION and gate_applies(
            from_level=current, to_level=to_level
        ):
            gate = gate_evaluate(
                workflow=workflow,
                tool=grant.tool if grant else "",
                from_level=current,
                to_level=to_level,
            )
            if not gate.passed:
                raise ValidationError(
                    ERR_GATE_FAILED.format(failed=_failed_list(gate)), code="gate_failed"
                )
            # The evidence the manager saw is frozen into the change.
            evidence = {**(evidence or {}), "gate": gate.as_json()}
        if kind == AutonomyChange.Kind.PROMOTION and (
            moot := promotion_moot(workflow=workflow, to_level=to_level, grant=grant)
        ):
            # Said on the promotion page before; the change carries the same words.
            evidence = {**(evidence or {}), "moot": moot}
        change = AutonomyChange.objects.create(
            workflow=workflow,
            grant=grant,
            kind=kind,
            from_level=current,
            to_level=to_level,
            requested_by=actor,
            evidence=evidence or {},
            reason=reason,
        )
        needs_second = kind == AutonomyChange.Kind.PROMOTION and to_level in FOUR_EYES_LEVELS
        audit_append(
            action=f"autonomy.{kind}.requested",
            actor=actor,
            workflow=workflow,
            obj=change,
            data={"from": current, "to": to_level, "tool": grant.tool if grant else None},
        )
        if not needs_second:
            _apply_level(change)
            change.status = AutonomyChange.Status.APPLIED
            change.decided_at = timezone.now()
            change.save(update_fields=["status", "decided_at"])
            if kind == AutonomyChange.Kind.DEMOTION:
                notifications.notify_demotion(change)
            audit_append(
                action=f"autonomy.{kind}.applied",
                actor=actor,
                workflow=workflow,
                obj=change,
                data={"from": current, "to": to_level, "tool": grant.tool if grant else None},
            )
    return change


def autonomy_change_approve(*, change: AutonomyChange, actor: AbstractBaseUser) -> AutonomyChange:
    with transaction.atomic():
        change = AutonomyChange.objects.select_for_update().get(pk=change.pk)
        if change.status != AutonomyChange.Status.REQUESTED:
            raise ValidationError(
                ERR_NOT_REQUESTED.format(status=change.get_status_display().lower()),
                code="not_requested",
            )
        if change.requested_by_id == actor.pk:
            raise ValidationError(ERR_FOUR_EYES, code="four_eyes")
        # Re-check against the current level: the ladder may have moved meanwhile.
        current = (
            ToolGrant.objects.get(pk=change.grant_id).autonomy_level
            if change.grant_id
            else Workflow.objects.get(pk=change.workflow_id).autonomy_level
        )
        autonomy_transition_check(current=current, target=change.to_level)
        if change.kind == AutonomyChange.Kind.PROMOTION and gate_applies(
            from_level=current, to_level=change.to_level
        ):
            gate = gate_evaluate(
                workflow=change.workflow,
                tool=change.grant.tool if change.grant_id else "",
                from_level=current,
                to_level=change.to_level,
            )
            if not gate.passed:
                raise ValidationError(
                    ERR_GATE_TURNED.format(failed=_failed_list(gate)), code="gate_turned"
                )
            change.evidence = {**change.evidence, "gate_at_approval": gate.as_json()}
        _apply_level(change)
        change.status = AutonomyChange.Status.APPLIED
        change.approved_by = actor
        change.decided_at = timezone.now()
        change.save(update_fields=["status", "approved_by", "decided_at", "evidence"])
        audit_append(
            action=f"autonomy.{change.kind}.applied",
            actor=actor,
            workflow=change.workflow,
            obj=change,
            data={"from": change.from_level, "to": change.to_level},
        )
    return change


def workflow_pause(
    *, workflow: Workflow, actor: AbstractBaseUser | str | None, reason: str
) -> Workflow:
    """The kill switch. Once this commits, no model call or tool execution starts:
    the runner and execute_action re-read the flag before each step."""
    with transaction.atomic():
        workflow = Workflow.objects.select_for_update(no_key=True).get(pk=workflow.pk)
        if workflow.paused:
            raise ValidationError(ERR_ALREADY_PAUSED, code="already_paused")
        workflow.paused = True
        workflow.paused_at = timezone.now()
        workflow.paused_reason = reason[:500]
        workflow.save(update_fields=["paused", "paused_at", "paused_reason", "updated_at"])
        audit_append(
            action="workflow.paused",
            actor=actor,
            workflow=workflow,
            obj=workflow,
            data={"reason": reason},
        )
        notifications.notify_pause(workflow, actor_label=_actor_label(actor), reason=reason)
    return workflow


def _actor_label(actor: AbstractBaseUser | str | None) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    return actor.get_username()


def workflow_resume(
    *, workflow: Workflow, actor: AbstractBaseUser | str | None, reason: str = ""
) -> Workflow:
    with transaction.atomic():
        workflow = Workflow.objects.select_for_update(no_key=True).get(pk=workflow.pk)
        if not workflow.paused:
            raise ValidationError(ERR_NOT_PAUSED, code="not_paused")
        workflow.paused = False
        workflow.paused_at = None
        workflow.paused_reason = ""
        workflow.save(update_fields=["paused", "paused_at", "paused_reason", "updated_at"])
        # Work held by the pause starts again once this commits (the agents app
        # registers how).
        workflow_id = workflow.pk
        # Governance does not import the runtime: the agents app registers what a
        # resume restarts (held plans, items that arrived) and hands it to a worker,
        # so the resume answers at once however much the pause held back.
        for hook in hooks.all_of("on_resume"):
            transaction.on_commit(lambda hook=hook: hook(workflow_id=workflow_id))
        audit_append(
            action="workflow.resumed",
            actor=actor,
            workflow=workflow,
            obj=workflow,
            data={"reason": reason},
        )
        notifications.notify_resume(workflow, actor_label=_actor_label(actor), reason=reason)
    return workflow


def workflow_pause_all(*, actor: AbstractBaseUser | str | None, reason: str) -> list[Workflow]:
    """Ops' global stop: pause every running workflow in one transaction."""
    paused = []
    with transaction.atomic():
        for workflow in (
            Workflow.objects.select_for_update(no_key=True).filter(paused=False).order_by("pk")
        ):
            paused.append(workflow_pause(workflow=workflow, actor=actor, reason=reason))
        audit_append(
            action="workflow.paused_all",
            actor=actor,
            data={"reason": reason, "workflows": [w.slug for w in paused]},
        )
    return paused


def workflow_details_update(
    *,
    workflow: Workflow,
    actor: AbstractBaseUser | str | None,
    name: str,
    description: str,
    owner: AbstractBaseUser | None,
) -> Workflow:
    """Change what a workflow is called, says and who answers for it: nothing that
    widens what its agent may do. Audited with before and after."""
    with transaction.atomic():
        current = Workflow.objects.select_for_update(no_key=True).get(pk=workflow.pk)
        before = {
            "name": current.name,
            "description": current.description,
            "owner": current.owner_id,
        }
        after = {"name": name, "description": description, "owner": owner.pk if owner else None}
        if before == after:
            return current
        current.name, current.description, current.owner = name, description, owner
        current.save(update_fields=["name", "description", "owner", "updated_at"])
        changed = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
        audit_append(
            action="workflow.details_changed",
            actor=actor,
            workflow=current,
            obj=current,
            data={"changed": changed},
        )
    return current


def chat_identity_save(
    *, identity: ChatIdentity, actor: AbstractBaseUser | str | None
) -> ChatIdentity:
    """Link (or relink) a chat account to a Tenure user: decisions from that account
    become that user's. Audited."""
    with transaction.atomic():
        created = identity.pk is None
        identity.full_clean()
        identity.save()
        audit_append(
            action="chat.identity_linked" if created else "chat.identity_changed",
            actor=actor,
            obj=identity,
            data={
                "platform": identity.platform,
                "external_user_id": identity.external_user_id,
                "user": identity.user_id,
            },
        )
    return identity


def chat_identity_delete(*, identity: ChatIdentity, actor: AbstractBaseUser | str | None) -> None:
    with transaction.atomic():
        audit_append(
            action="chat.identity_unlinked",
            actor=actor,
            obj=identity,
            data={
                "platform": identity.platform,
                "external_user_id": identity.external_user_id,
                "user": identity.user_id,
            },
        )
        identity.delete()


def chat_channel_save(*, channel: ChatChannel, actor: AbstractBaseUser | str | None) -> ChatChannel:
    """Set a workflow's own chat channel. Audited with the URL's host only (an
    incoming-webhook URL is a secret)."""
    with transaction.atomic():
        channel.full_clean()
        channel.save()
        audit_append(
            action="chat.channel_set",
            actor=actor,
            workflow=channel.workflow,
            obj=channel,
            data={"host": urlsplit(channel.webhook_url).hostname or ""},
        )
    return channel


def chat_channel_delete(*, channel: ChatChannel, actor: AbstractBaseUser | str | None) -> None:
    with transaction.atomic():
        audit_append(
            action="chat.channel_removed", actor=actor, workflow=channel.workflow, obj=channel
        )
        channel.delete()
