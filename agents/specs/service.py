"""Plan, apply and export a workflow spec.

Before a workflow is live (no work item has arrived, every level at shadow or off),
``spec_apply`` writes the spec at once in one transaction, each change recorded and
audited as an applied ``ConfigChange``. Once it is live, a change goes through
change control exactly as in the console (``config_change_request``): what tightens
applies at once, what loosens (a new tool, a wider cap, a policy or model change)
waits for green regression suites and a second manager. Levels never move here:
every new workflow and tool starts in shadow, and only the promotion gate raises them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from guardian.shortcuts import assign_perm, remove_perm

from agents.credentials import credential_fingerprint, credential_set
from agents.models import ConnectorCredential, ToolDefinition, WorkItem
from agents.specs.schema import SpecError, WorkflowSpec
from agents.specs.state import (
    GATE,
    policy_of,
    settings_of,
    state_from_db,
    state_from_spec,
    state_yaml,
)
from governance.audit import audit_append
from governance.change_control import (
    caps_widen,
    config_change_record_applied,
    config_change_request,
    settings_clean,
    settings_current,
    settings_widen,
)
from governance.models import AutonomyLevel, ConfigChange, ToolGrant, Workflow
from governance.permissions import MANAGE, OBJECT_ROLE_PERMS, Role, is_admin
from governance.services import workflow_details_update

ERR_NOT_ADMIN_CREATE = "Only an admin creates a workflow from a spec."
ERR_NOT_ADMIN_TEMPLATES = "Only an admin writes query templates; ask one to apply this spec."
ERR_NOT_MANAGER = "You do not manage workflow {slug!r}."
ERR_NO_USER = "Name the user who applies the spec."
ERR_NO_WORKFLOW = "There is no workflow called {slug!r}."
ERR_ENV_UNSET = "credentials.{name}: the environment variable {env} is not set (or is empty)."
ERR_FILE_UNREADABLE = "credentials.{name}: cannot read the secret file {path}: {error}"
ERR_CONTRACT_LIVE = (
    "tools: {name}'s contract ({fields}) cannot change while the workflow is live and the "
    "tool is granted: remove it (it applies at once), then add it back (a change request)."
)
REASON_DIRECT = "Applied from a workflow spec before the workflow is live."
REASON_LIVE = "Requested from a workflow spec."
CONTRACT_FIELDS = ("description", "risk", "parameters", "endpoint", "credential",
                   "untrusted_output")  # fmt: skip
SETTING_NOTE_WIDEN = "loosens: a change request, waits for a second manager"
SETTING_NOTE_NARROW = "tightens: applies at once"


@dataclass(frozen=True)
class PlannedChange:
    symbol: str  # "+" added, "-" removed, "~" changed
    what: str
    before: Any = None
    after: Any = None
    note: str = ""

    def line(self) -> str:
        if self.symbol == "~" and self.before is None and self.after is None:
            text = f"~ {self.what}"
        elif self.symbol == "~":
            text = f"~ {self.what}: {_show(self.before)} -> {_show(self.after)}"
        elif self.symbol == "+":
            text = f"+ {self.what}" + (f": {_show(self.after)}" if self.after is not None else "")
        else:
            text = f"- {self.what}"
        return f"{text}  ({self.note})" if self.note else text


@dataclass
class Plan:
    slug: str
    exists: bool
    live: bool
    changes: list[PlannedChange] = field(default_factory=list)
    target: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        if not self.exists:
            head = f"Workflow {self.slug}: will be created in shadow mode."
        elif self.live:
            head = (
                f"Workflow {self.slug} is live: tightening applies at once, loosening "
                "becomes a change request."
            )
        else:
            head = f"Workflow {self.slug} is not live yet: every change applies at once."
        if self.exists and not self.changes:
            return f"{head}\nNo changes."
        return "\n".join([head, *(change.line() for change in self.changes)])


def _show(value: Any) -> str:
    if isinstance(value, str):
        if "\n" in value or len(value) > 60:
            return f"<text, {len(value.splitlines()) or 1} lines>"
        return repr(value)
    if value is None:
        return "none"
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 100 else text[:97] + "..."


# --- live or not ----------------------------------------------------------------------


def workflow_is_live(workflow: Workflow) -> bool:
    """A workflow is live once work has arrived or anything of it is above shadow."""
    shadow = AutonomyLevel.rank(AutonomyLevel.SHADOW)
    if AutonomyLevel.rank(workflow.autonomy_level) > shadow:
        return True
    levels = ToolGrant.objects.filter(workflow=workflow).values_list("autonomy_level", flat=True)
    if any(AutonomyLevel.rank(level) > shadow for level in levels):
        return True
    return WorkItem.objects.filter(workflow=workflow).exists()


# --- the diff -------------------------------------------------------------------------


def blank_state(slug: str, name: str) -> dict[str, Any]:
    """The state of a workflow that does not exist yet: every setting at its default."""
    blank = WorkflowSpec(slug=slug, name=name)
    return state_from_spec(blank)


def _settings_changes(before: dict, after: dict, live: bool) -> list[PlannedChange]:
    old, new = settings_of(before), settings_of(after)
    changes = []
    for name in old:
        if name == "policy" or old[name] == new[name]:
            continue
        note = ""
        if live:
            widen = settings_widen({name: old[name]}, {name: new[name]})
            note = SETTING_NOTE_WIDEN if widen else SETTING_NOTE_NARROW
        changes.append(PlannedChange("~", f"setting {name}", old[name], new[name], note))
    old_policy, new_policy = policy_of(before), policy_of(after)
    # Each tool's limits, roles and templates are shown with the tool; the rest here.
    for key in sorted(set(old_policy) | set(new_policy)):
        if key in ("limits", "tools", "query_templates", "credentials", "mcp_servers"):
            continue
        if old_policy.get(key) != new_policy.get(key):
            note = SETTING_NOTE_WIDEN if live else ""
            changes.append(
                PlannedChange("~", f"policy {key}", old_policy.get(key), new_policy.get(key), note)
            )
    return changes


def _tool_changes(before: dict, after: dict, live: bool) -> list[PlannedChange]:
    old = {tool["name"]: tool for tool in before["tools"]}
    new = {tool["name"]: tool for tool in after["tools"]}
    changes = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            changes.append(
                PlannedChange("-", f"tool {name}", note="applies at once" if live else "")
            )
            continue
        tool = new[name]
        if name not in old:
            summary = {"kind": tool["kind"], "risk": tool.get("risk")}
            if tool.get("caps"):
                summary["caps"] = tool["caps"]
            note = "a change request: suites and a second manager" if live else "starts in shadow"
            changes.append(PlannedChange("+", f"tool {name}", after=summary, note=note))
            continue
        for key in sorted(set(old[name]) | set(tool)):
            if old[name].get(key) != tool.get(key):
                note = ""
                if live and key in CONTRACT_FIELDS:
                    note = "refused while live: remove, then add back"
                elif live and key == "caps":
                    widen = caps_widen(old[name].get(key) or {}, tool.get(key) or {})
                    note = SETTING_NOTE_WIDEN if widen else SETTING_NOTE_NARROW
                elif live:
                    note = SETTING_NOTE_WIDEN  # limits and argument roles are policy
                changes.append(
                    PlannedChange(
                        "~", f"tool {name} {key}", old[name].get(key), tool.get(key), note
                    )
                )
    return changes


def _other_changes(before: dict, after: dict) -> list[PlannedChange]:
    changes = []
    for key in ("name", "owner", "instructions"):
        if before.get(key) != after.get(key):
            changes.append(PlannedChange("~", key, before.get(key), after.get(key)))
    for role in ("reviewers", "managers"):
        if before["access"][role] != after["access"][role]:
            changes.append(
                PlannedChange("~", f"access {role}", before["access"][role], after["access"][role])
            )
    for key in ("credentials", "mcp_servers"):
        for name in sorted(set(before[key]) | set(after[key])):
            if name not in after[key]:
                changes.append(PlannedChange("-", f"{key} {name}"))
            elif before[key].get(name) != after[key][name]:
                symbol = "~" if name in before[key] else "+"
                changes.append(
                    PlannedChange(symbol, f"{key} {name}", before[key].get(name), after[key][name])
                )
    return changes


def _diff(before: dict, after: dict, live: bool) -> list[PlannedChange]:
    return [
        *_other_changes(before, after),
        *_settings_changes(before, after, live),
        *_tool_changes(before, after, live),
    ]


# --- credentials ----------------------------------------------------------------------


def _secret(name: str, ref: dict[str, str]) -> str:
    if "env" in ref:
        value = os.environ.get(ref["env"], "")
        if not value:
            raise SpecError(ERR_ENV_UNSET.format(name=name, env=ref["env"]))
        return value
    try:
        value = Path(ref["file"]).read_text().strip()
    except OSError as error:
        message = ERR_FILE_UNREADABLE.format(name=name, path=ref["file"], error=error.strerror)
        raise SpecError(message) from None
    if not value:
        raise SpecError(ERR_FILE_UNREADABLE.format(name=name, path=ref["file"], error="empty"))
    return value


def _rotations(workflow: Workflow | None, secrets: dict[str, str]) -> list[str]:
    stored = {}
    if workflow is not None:
        stored = dict(
            ConnectorCredential.objects.filter(workflow=workflow).values_list("name", "fingerprint")
        )
    return [
        name
        for name, secret in secrets.items()
        if stored.get(name) != credential_fingerprint(secret)
    ]


# --- plan -----------------------------------------------------------------------------


def spec_plan(spec: WorkflowSpec) -> Plan:
    """What applying the spec would change, without writing anything."""
    target = state_from_spec(spec)
    workflow = Workflow.objects.filter(slug=spec.slug).first()
    current = state_from_db(workflow) if workflow else blank_state(spec.slug, spec.name)
    live = workflow is not None and workflow_is_live(workflow)
    plan = Plan(slug=spec.slug, exists=workflow is not None, live=live, target=target)
    plan.changes = _diff(current, target, live)
    for name, ref in target["credentials"].items():
        try:
            secret = _secret(name, ref)
        except SpecError as error:
            plan.changes.append(PlannedChange("~", f"credential {name}", note=f"refused: {error}"))
            continue
        if name in _rotations(workflow, {name: secret}):
            stored = (
                workflow is not None
                and ConnectorCredential.objects.filter(workflow=workflow, name=name).exists()
            )
            note = "rotated: stored encrypted" if stored else "stored encrypted"
            plan.changes.append(PlannedChange("~", f"credential {name} secret", note=note))
    return plan


# --- apply ----------------------------------------------------------------------------


@dataclass
class ApplyResult:
    workflow: Workflow
    created: bool
    live: bool
    lines: list[str] = field(default_factory=list)
    refused: int = 0

    def text(self) -> str:
        return "\n".join(self.lines) or "No changes."


def _may_apply(actor: AbstractBaseUser | None, workflow: Workflow | None, target: dict,
               current: dict) -> None:  # fmt: skip
    if actor is None or not getattr(actor, "is_active", False):
        raise PermissionDenied(ERR_NO_USER)
    if workflow is None:
        if not is_admin(actor):
            raise PermissionDenied(ERR_NOT_ADMIN_CREATE)
    elif not (is_admin(actor) or actor.has_perm(MANAGE, workflow)):
        raise PermissionDenied(ERR_NOT_MANAGER.format(slug=workflow.slug))
    templates = policy_of(target).get("query_templates")
    if templates != policy_of(current).get("query_templates") and not is_admin(actor):
        raise PermissionDenied(ERR_NOT_ADMIN_TEMPLATES)


def _model_values(settings: dict[str, Any]) -> dict[str, Any]:
    values = {}
    for name, value in settings.items():
        field_ = Workflow._meta.get_field(name)
        values[name] = Decimal(value) if getattr(field_, "decimal_places", None) else value
    return values


def _owner(state: dict) -> AbstractBaseUser | None:
    from django.contrib.auth import get_user_model

    User = get_user_model()
    name = state.get("owner")
    return User.objects.get(**{User.USERNAME_FIELD: name}) if name else None


def _definition_save(workflow: Workflow, tool: dict[str, Any], actor: Any) -> bool:
    """Save an HTTP tool's definition (audited); False when it is already as declared."""
    name = tool["name"]
    values = {
        "description": tool.get("description", ""),
        "parameters": tool.get("parameters") or {},
        "risk_class": tool["risk"],
        "endpoint_url": tool["endpoint"],
        "credential_name": tool.get("credential", ""),
        "untrusted_output": bool(tool.get("untrusted_output")),
    }
    current = ToolDefinition.objects.filter(workflow=workflow, name=name).first()
    if current is not None and all(getattr(current, k) == v for k, v in values.items()):
        return False
    ToolDefinition.objects.update_or_create(workflow=workflow, name=name, defaults=values)
    audit_append(
        action="tool_definition.saved",
        actor=actor,
        workflow=workflow,
        data={"name": name, "risk_class": tool["risk"], "endpoint": tool["endpoint"]},
    )
    return True


def _definitions_sync(workflow: Workflow, target: dict, actor: Any) -> list[str]:
    """Every HTTP tool's definition as declared; the others' deleted (not live only)."""
    lines = []
    wanted = {tool["name"]: tool for tool in target["tools"] if tool["kind"] == "http"}
    for name, tool in sorted(wanted.items()):
        if _definition_save(workflow, tool, actor):
            lines.append(f"applied: tool {name}'s definition saved")
    for definition in ToolDefinition.objects.filter(workflow=workflow).exclude(name__in=wanted):
        definition.delete()
        audit_append(
            action="tool_definition.deleted",
            actor=actor,
            workflow=workflow,
            data={"name": definition.name},
        )
        lines.append(f"applied: tool {definition.name}'s definition deleted")
    return lines


def _access_sync(workflow: Workflow, target: dict, current: dict, actor: Any) -> list[str]:
    if target["access"] == current["access"]:
        return []
    wanted: dict[str, set[str]] = {}
    for role, key in ((Role.REVIEWER, "reviewers"), (Role.MANAGER, "managers")):
        for group in target["access"][key]:
            wanted.setdefault(group, set()).update(OBJECT_ROLE_PERMS[role])
    every = set(OBJECT_ROLE_PERMS[Role.REVIEWER]) | set(OBJECT_ROLE_PERMS[Role.MANAGER])
    held = set(current["access"]["reviewers"]) | set(current["access"]["managers"])
    for name in sorted(held | set(wanted)):
        group = Group.objects.get(name=name)
        for perm in sorted(every):
            if perm in wanted.get(name, set()):
                assign_perm(perm, group, workflow)
            else:
                remove_perm(perm, group, workflow)
    audit_append(
        action="workflow.access_changed",
        actor=actor,
        workflow=workflow,
        obj=workflow,
        data={"before": current["access"], "after": target["access"]},
    )
    return [f"applied: access {target['access']}"]


def _credentials_sync(workflow: Workflow, secrets: dict[str, str], actor: Any) -> list[str]:
    lines = []
    for name in _rotations(workflow, secrets):
        credential_set(workflow=workflow, name=name, secret=secrets[name], actor=actor)
        lines.append(f"applied: credential {name} stored encrypted")
    return lines


def _granted_by_spec(target: dict) -> dict[str, dict[str, Any]]:
    """The tools whose grants the spec holds. An MCP tool's grant is the gateway's: it
    grants what it imports from the server, and a spec neither adds nor removes it."""
    return {t["name"]: t for t in target["tools"] if t["kind"] != "mcp"}


def _mcp(target: dict) -> set[str]:
    return {t["name"] for t in target["tools"] if t["kind"] == "mcp"}


def _grant_state(workflow: Workflow) -> dict[str, ToolGrant]:
    return {g.tool: g for g in ToolGrant.objects.select_for_update().filter(workflow=workflow)}


def _apply_direct(workflow: Workflow | None, target: dict, current: dict, actor: Any,
                  secrets: dict[str, str]) -> ApplyResult:  # fmt: skip
    lines: list[str] = []
    created = workflow is None
    with transaction.atomic():
        owner = _owner(target)
        if workflow is None:
            workflow = Workflow.objects.create(
                slug=target["slug"],
                name=target["name"],
                description=target["instructions"],
                owner=owner,
                autonomy_level=AutonomyLevel.SHADOW,
                **_model_values(settings_of(target)),
            )
            audit_append(
                action="workflow.created",
                actor=actor,
                workflow=workflow,
                obj=workflow,
                data={"source": "spec", "spec_sha256": _state_hash(target)},
            )
            lines.append(f"applied: workflow {workflow.slug} created in shadow mode")
        else:
            workflow = Workflow.objects.select_for_update(no_key=True).get(pk=workflow.pk)
            workflow_details_update(
                workflow=workflow,
                actor=actor,
                name=target["name"],
                description=target["instructions"],
                owner=owner,
            )
            workflow.refresh_from_db()
            wanted = settings_clean(workflow, settings_of(target))
            now = settings_current(workflow, wanted)
            changed = {k: v for k, v in wanted.items() if v != now[k]}
            if changed:
                before = {k: now[k] for k in changed}
                widen = settings_widen(before, changed)
                kind = (ConfigChange.Kind.WIDEN_SETTINGS if widen
                        else ConfigChange.Kind.NARROW_SETTINGS)  # fmt: skip
                config_change_record_applied(
                    workflow=workflow,
                    kind=kind,
                    actor=actor,
                    before={"settings": before},
                    after={"settings": changed},
                    reason=REASON_DIRECT,
                )
                for name, value in _model_values(changed).items():
                    setattr(workflow, name, value)
                workflow.save(update_fields=[*changed, "updated_at"])
                lines.append(f"applied: settings {', '.join(sorted(changed))}")
        lines += _definitions_sync(workflow, target, actor)
        grants = _grant_state(workflow)
        wanted_tools = _granted_by_spec(target)
        for name, tool in sorted(wanted_tools.items()):
            grant, caps = grants.get(name), tool.get("caps", {})
            if grant is None or not grant.enabled:
                config_change_record_applied(
                    workflow=workflow,
                    kind=ConfigChange.Kind.ADD_TOOL,
                    tool=name,
                    actor=actor,
                    before={} if grant is None else {"caps": grant.caps, "enabled": False},
                    after={"tool": name, "caps": caps},
                    reason=REASON_DIRECT,
                )
                if grant is None:
                    ToolGrant.objects.create(
                        workflow=workflow, tool=name, autonomy_level=AutonomyLevel.SHADOW, caps=caps
                    )
                else:
                    grant.enabled, grant.caps = True, caps
                    grant.save(update_fields=["enabled", "caps", "updated_at"])
                lines.append(f"applied: tool {name} granted in shadow mode")
            elif grant.caps != caps:
                widen = caps_widen(grant.caps, caps)
                config_change_record_applied(
                    workflow=workflow,
                    kind=ConfigChange.Kind.WIDEN_CAP if widen else ConfigChange.Kind.NARROW_CAP,
                    tool=name,
                    actor=actor,
                    before={"caps": grant.caps},
                    after={"tool": name, "caps": caps},
                    reason=REASON_DIRECT,
                )
                grant.caps = caps
                grant.save(update_fields=["caps", "updated_at"])
                lines.append(f"applied: tool {name} caps {_show(caps)}")
        for name, grant in sorted(grants.items()):
            if grant.enabled and name not in wanted_tools and name not in _mcp(target):
                config_change_record_applied(
                    workflow=workflow,
                    kind=ConfigChange.Kind.REMOVE_TOOL,
                    tool=name,
                    actor=actor,
                    before={"caps": grant.caps},
                    reason=REASON_DIRECT,
                )
                grant.enabled = False
                grant.save(update_fields=["enabled", "updated_at"])
                lines.append(f"applied: tool {name} removed")
        lines += _access_sync(workflow, target, current, actor)
        lines += _credentials_sync(workflow, secrets, actor)
    return ApplyResult(workflow=workflow, created=created, live=False, lines=lines)


def _pending(workflow: Workflow, *, tool: str, after: dict[str, Any]) -> ConfigChange | None:
    for change in ConfigChange.objects.filter(
        workflow=workflow, tool=tool, status=ConfigChange.Status.REQUESTED
    ):
        if change.after == after:
            return change
    return None


def _request(result: ApplyResult, what: str, *, tool: str = "", after_key: dict | None = None,
             definition: dict[str, Any] | None = None, **kwargs: Any) -> None:  # fmt: skip
    workflow = result.workflow
    if after_key is not None and (waiting := _pending(workflow, tool=tool, after=after_key)):
        result.lines.append(f"waiting: {what} (change #{waiting.pk} already waits for approval)")
        return
    try:
        # A new HTTP tool's definition is kept only with its grant's request.
        with transaction.atomic():
            if definition is not None:
                _definition_save(workflow, definition, kwargs["actor"])
            change = config_change_request(
                workflow=workflow, tool=tool, reason=REASON_LIVE, **kwargs
            )
    except ValidationError as error:
        result.refused += 1
        result.lines.append(f"refused: {what}: {' '.join(error.messages)}")
        return
    if change.status == ConfigChange.Status.APPLIED:
        result.lines.append(f"applied: {what} (change #{change.pk})")
    else:
        result.lines.append(f"requested: {what} (change #{change.pk} waits for a second manager)")


def _apply_live(workflow: Workflow, target: dict, current: dict, actor: Any,
                secrets: dict[str, str]) -> ApplyResult:  # fmt: skip
    old = {t["name"]: t for t in current["tools"]}
    for tool in target["tools"]:
        before = old.get(tool["name"])
        if before is None or tool["kind"] == "mcp":
            continue
        fields = [k for k in CONTRACT_FIELDS if before.get(k) != tool.get(k)]
        if fields:
            raise SpecError(ERR_CONTRACT_LIVE.format(name=tool["name"], fields=", ".join(fields)))
    result = ApplyResult(workflow=workflow, created=False, live=True)
    workflow_details_update(
        workflow=workflow,
        actor=actor,
        name=target["name"],
        description=target["instructions"],
        owner=_owner(target),
    )
    workflow.refresh_from_db()
    wanted = settings_clean(workflow, settings_of(target))
    now = settings_current(workflow, wanted)
    changed = {k: v for k, v in wanted.items() if v != now[k]}
    if changed:
        _request(
            result,
            f"settings {', '.join(sorted(changed))}",
            after_key={"settings": changed},
            actor=actor,
            settings=changed,
        )
    grants = {g.tool: g for g in ToolGrant.objects.filter(workflow=workflow)}
    wanted_tools = _granted_by_spec(target)
    for name, tool in sorted(wanted_tools.items()):
        grant, caps = grants.get(name), tool.get("caps", {})
        after = {"tool": name, "caps": caps}
        if grant is None or not grant.enabled:
            definition = tool if tool["kind"] == "http" else None
            _request(result, f"add tool {name}", tool=name, after_key=after, actor=actor,
                     caps=caps, definition=definition)  # fmt: skip
        elif grant.caps != caps:
            _request(
                result, f"tool {name} caps", tool=name, after_key=after, actor=actor, caps=caps
            )
    for name, grant in sorted(grants.items()):
        if grant.enabled and name not in wanted_tools and name not in _mcp(target):
            _request(result, f"remove tool {name}", tool=name, actor=actor, remove=True)
    with transaction.atomic():
        result.lines += _access_sync(workflow, target, current, actor)
        result.lines += _credentials_sync(workflow, secrets, actor)
    return result


def _state_hash(state: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def spec_apply(spec: WorkflowSpec, *, actor: AbstractBaseUser | None) -> ApplyResult:
    """Apply the spec (see the module's doc). Raises ``SpecError`` or
    ``PermissionDenied`` before writing anything when the spec cannot be applied."""
    target = state_from_spec(spec)
    workflow = Workflow.objects.filter(slug=spec.slug).first()
    current = state_from_db(workflow) if workflow else blank_state(spec.slug, spec.name)
    _may_apply(actor, workflow, target, current)
    secrets = {name: _secret(name, ref) for name, ref in target["credentials"].items()}
    if workflow is None or not workflow_is_live(workflow):
        return _apply_direct(workflow, target, current, actor, secrets)
    return _apply_live(workflow, target, current, actor, secrets)


def spec_export(slug: str) -> str:
    workflow = Workflow.objects.filter(slug=slug).first()
    if workflow is None:
        raise SpecError(ERR_NO_WORKFLOW.format(slug=slug))
    return state_yaml(state_from_db(workflow))


__all__ = ["GATE", "Plan", "PlannedChange", "spec_apply", "spec_export", "spec_plan"]
