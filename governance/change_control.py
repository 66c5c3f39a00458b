"""Change control: what a workflow's agent may do changes only under evidence.

Adding a tool, widening a cap (per action or per day), widening an allowlist, or
loosening a setting (a gate threshold, a budget, the policy, the models, the trusted
fields) is a change like a promotion: the workflow's regression suites must pass for
the NEW configuration when it changes what the agent does (applied inside a
savepoint, replayed, rolled back), and a second manager approves it (four eyes).
Narrowing makes the agent safer: it applies at once. Every change is audited, and
the database refuses these changes from anything that does not name its change row
(governance migration 0004).

A model's price is the console's: only an admin sets it (``model_price_set``); it
applies at once, for the next run, and is audited with its before and after.

The suites are the agents app's (``governance.hooks``): governance never imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from governance import hooks, hygiene, privacy
from governance import sql as governance_sql
from governance.audit import audit_append
from governance.models import (
    AutonomyChange,
    AutonomyLevel,
    ConfigChange,
    ModelPrice,
    ToolGrant,
    Workflow,
)
from governance.permissions import is_admin
from governance.prices import prices_version_bump

ERR_SUITE_RED = "The regression suite does not pass with the new configuration: {detail}."
ERR_UNKNOWN_TOOL = "“{tool}” is not a tool this workflow can be granted."
ERR_ALREADY_GRANTED = "{tool} is already granted to this workflow."
ERR_NOT_GRANTED = "{tool} is not granted to this workflow."
ERR_NOTHING_CHANGES = "The new configuration is the same as the current one."
ERR_BAD_CAP = "Cap “{key}” must be a number at or above zero, not “{value}”."
ERR_UNKNOWN_CAP = "“{key}” is not a cap: use amount, records, count or total."
ERR_BAD_ALLOWLIST = "Allowlist “{key}” must be a list of names, or empty for no restriction."
ERR_BAD_ARGUMENT_ALLOWLIST = (
    'Argument allowlists must read {"tool": {"$.argument": ["value", ...]}}.'
)
ERR_FOUR_EYES = "A second manager must approve: you requested this change yourself."
ERR_NOT_REQUESTED = "This change is no longer waiting for approval (it is {status})."
ERR_STALE = (
    "The workflow's configuration changed since this was requested; request it again "
    "against the current configuration."
)

ERR_UNKNOWN_SETTING = "“{name}” is not a workflow setting change control can change."
ERR_BAD_SETTING = "{label}: {error}"
ERR_UNSTORABLE = "{where}: {problem}"

CAP_KEYS = ("amount", "records", "count", "total")

# The workflow's settings a manager changes under change control, by which way is
# safer. A change that moves any of them the unsafe way is a widening: it waits for a
# second manager (and, when it changes what the agent does, for green suites).
HIGHER_IS_SAFER = (
    "gate_min_decisions",
    "gate_min_agreement",
    "gate_min_item_agreement",
    "gate_min_coverage",
    "gate_critical_lookback",
    "gate_min_supervised_decisions",
    "agreement_floor",
    "sample_rate",
)
LOWER_IS_SAFER = (
    "tool_error_budget",
    "max_tool_calls",
    "max_tokens",
    "max_seconds",
    "max_cost_usd",
    "loop_threshold",
    "daily_budget_usd",
    "cost_target_usd",
)
# Any change to these changes what the agent does or sees: gated, with the suites.
BEHAVIOUR = ("policy", "model_small", "model_large")
# Neither safer nor riskier: applied at once, audited.
NEUTRAL = ("gate_window_days", "review_sla_minutes", "trace_retention_days")
SETTINGS = (
    *HIGHER_IS_SAFER,
    *LOWER_IS_SAFER,
    *BEHAVIOUR,
    "trusted_fields",
    "gate_counts_imported",
    *NEUTRAL,
    # What is personal and how long it is kept (governance.privacy): keeping more, or
    # longer, is a widening.
    "data_policy",
)

ERR_PRICE_NOT_ADMIN = "Only an admin can set a model's price."
ERR_PRICE_MODEL = "Name the model as the endpoint calls it (1 to 100 characters)."
ERR_PRICE_VALUE = (
    "The {which} price must be US dollars per million tokens: a number at or above zero "
    "with at most six decimals and below a million, not “{value}”."
)
ERR_PRICE_CACHED_ABOVE_INPUT = (
    "The cached-input price ({cached}) is above the input price ({input}): did you swap them?"
)
ERR_PRICE_UNCHANGED = "{model} already has this price."

PRICE_FIELDS = (
    ("input", "input_per_mtok"),
    ("cached_input", "cached_input_per_mtok"),
    ("output", "output_per_mtok"),
)
PRICE_LIMIT = Decimal("1000000")  # the column holds 12 digits, 6 after the point
ALLOWLIST_KEYS = ("groups", "email_domains")
# Per-argument allowlists: {"<tool>": {"<argument path>": [values]}} (agents.policy).
ARGUMENT_ALLOWLISTS = "arguments"


# --- what a change is ------------------------------------------------------------------


def _number(key: str, value: Any) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValidationError(ERR_BAD_CAP.format(key=key, value=value), code="bad_cap") from None
    # Finite first: comparing NaN with zero raises InvalidOperation.
    if not number.is_finite() or number < 0:
        raise ValidationError(ERR_BAD_CAP.format(key=key, value=value), code="bad_cap")
    return number


def caps_clean(caps: dict[str, Any] | None) -> dict[str, str]:
    cleaned: dict[str, str] = {}
    for key, value in (caps or {}).items():
        if key not in CAP_KEYS:
            raise ValidationError(ERR_UNKNOWN_CAP.format(key=key), code="unknown_cap")
        if value in (None, ""):
            continue  # no cap
        cleaned[key] = str(_number(key, value))
    return cleaned


def caps_widen(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """True when any cap goes up or goes away (no cap is the widest cap)."""
    for key in set(before) | set(after):
        old, new = before.get(key), after.get(key)
        if old is not None and new is None:
            return True
        if old is not None and new is not None and Decimal(str(new)) > Decimal(str(old)):
            return True
    return False


def allowlists_clean(allowlists: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in allowlists.items():
        if key == ARGUMENT_ALLOWLISTS and value is not None:
            cleaned[key] = _argument_allowlists_clean(value)
            continue
        if key not in ALLOWLIST_KEYS:
            continue
        if value is None:
            continue
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValidationError(ERR_BAD_ALLOWLIST.format(key=key), code="bad_allowlist")
        cleaned[key] = sorted({v.strip() for v in value if v.strip()})
    return cleaned


def _argument_allowlists_clean(value: Any) -> dict[str, dict[str, list[str]]]:
    """``{"<tool>": {"<argument path>": ["value", "@domain"]}}`` (agents.policy)."""
    if not isinstance(value, dict):
        raise ValidationError(ERR_BAD_ARGUMENT_ALLOWLIST, code="bad_allowlist")
    cleaned: dict[str, dict[str, list[str]]] = {}
    for tool, paths in value.items():
        if not isinstance(paths, dict):
            raise ValidationError(ERR_BAD_ARGUMENT_ALLOWLIST, code="bad_allowlist")
        for path, values in paths.items():
            if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
                raise ValidationError(ERR_BAD_ARGUMENT_ALLOWLIST, code="bad_allowlist")
            cleaned.setdefault(str(tool), {})[str(path)] = sorted(
                {v.strip() for v in values if v.strip()}
            )
    return cleaned


def _allowlists_flat(allowlists: dict[str, Any]) -> dict[str, Any]:
    flat = {key: allowlists.get(key) for key in ALLOWLIST_KEYS}
    for tool, paths in (allowlists.get(ARGUMENT_ALLOWLISTS) or {}).items():
        for path, values in (paths or {}).items():
            flat[f"{ARGUMENT_ALLOWLISTS}:{tool}:{path}"] = values
    return flat


def allowlists_widen(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """True when an allowlist gains a name or goes away (no list allows everything)."""
    old_flat, new_flat = _allowlists_flat(before), _allowlists_flat(after)
    for key in set(old_flat) | set(new_flat):
        old, new = old_flat.get(key), new_flat.get(key)
        if old is not None and new is None:
            return True
        if old is not None and new is not None and set(new) - set(old):
            return True
    return False


def settings_clean(workflow: Workflow, settings: dict[str, Any]) -> dict[str, Any]:
    """Each setting validated by its model field (type, range); JSON-ready values."""
    cleaned: dict[str, Any] = {}
    for name, value in settings.items():
        if name not in SETTINGS:
            raise ValidationError(ERR_UNKNOWN_SETTING.format(name=name), code="unknown_setting")
        field = Workflow._meta.get_field(name)
        try:
            python = field.clean(value, workflow)
        except ValidationError as exc:
            label = str(field.verbose_name).capitalize()
            message = ERR_BAD_SETTING.format(label=label, error="; ".join(exc.messages))
            raise ValidationError(message, code="bad_setting") from None
        if name == "trusted_fields":
            if not isinstance(python, list) or not all(isinstance(v, str) for v in python):
                raise ValidationError(
                    ERR_BAD_SETTING.format(label="Trusted fields", error="a list of field names"),
                    code="bad_setting",
                )
            python = sorted({v.strip() for v in python if v.strip()})
        if name == "data_policy":
            python = privacy.policy_clean(python)
        cleaned[name] = str(python) if isinstance(python, Decimal) else python
    return cleaned


def settings_current(workflow: Workflow, names: Any) -> dict[str, Any]:
    values = {}
    for name in names:
        value = getattr(workflow, name)
        values[name] = str(value) if isinstance(value, Decimal) else value
    return values


def _riskier(name: str, old: Any, new: Any) -> bool:
    if name in HIGHER_IS_SAFER:
        return Decimal(str(new)) < Decimal(str(old))
    if name in LOWER_IS_SAFER:
        return Decimal(str(new)) > Decimal(str(old))
    if name == "trusted_fields":  # trusting a field more grounds more arguments
        return bool(set(new) - set(old))
    if name == "gate_counts_imported":
        return bool(new) and not bool(old)
    if name == "data_policy":
        return privacy.policy_widens(old, new)
    if name in BEHAVIOUR:
        return new != old
    return False


def settings_widen(before: dict[str, Any], after: dict[str, Any]) -> bool:
    return any(_riskier(name, before[name], after[name]) for name in after)


def _current_allowlists(workflow: Workflow) -> dict[str, Any]:
    policy = workflow.policy if isinstance(workflow.policy, dict) else {}
    return allowlists_clean(policy.get("allowlists") or {})


def _grant_state(grant: ToolGrant | None) -> dict[str, Any]:
    if grant is None or not grant.enabled:
        return {}
    return {"tool": grant.tool, "caps": dict(grant.caps or {})}


SETTINGS_KINDS = (ConfigChange.Kind.WIDEN_SETTINGS, ConfigChange.Kind.NARROW_SETTINGS)


def _current(workflow: Workflow, change: ConfigChange) -> dict[str, Any]:
    """The part of the configuration the change touches, as it is now."""
    if change.kind in SETTINGS_KINDS:
        return {"settings": settings_current(workflow, change.after["settings"])}
    if change.kind in (ConfigChange.Kind.WIDEN_ALLOWLIST, ConfigChange.Kind.NARROW_ALLOWLIST):
        return {"allowlists": _current_allowlists(workflow)}
    grant = ToolGrant.objects.filter(workflow=workflow, tool=change.tool).first()
    return _grant_state(grant)


def _apply(workflow: Workflow, change: ConfigChange) -> None:
    kind = change.kind
    if kind in SETTINGS_KINDS:
        workflow = Workflow.objects.select_for_update(no_key=True).get(pk=workflow.pk)
        values = change.after["settings"]
        for name, value in values.items():
            setattr(workflow, name, value)
        workflow.save(update_fields=[*values, "updated_at"])
        return
    if kind in (ConfigChange.Kind.WIDEN_ALLOWLIST, ConfigChange.Kind.NARROW_ALLOWLIST):
        workflow = Workflow.objects.select_for_update(no_key=True).get(pk=workflow.pk)
        policy = dict(workflow.policy if isinstance(workflow.policy, dict) else {})
        policy["allowlists"] = change.after["allowlists"]
        workflow.policy = policy
        workflow.save(update_fields=["policy", "updated_at"])
        return
    grant = ToolGrant.objects.select_for_update().filter(workflow=workflow, tool=change.tool)
    grant = grant.order_by().first()
    if kind == ConfigChange.Kind.ADD_TOOL:
        if grant is None:
            # A new tool starts where every tool starts: in shadow mode.
            ToolGrant.objects.create(
                workflow=workflow,
                tool=change.tool,
                autonomy_level=AutonomyLevel.SHADOW,
                caps=change.after.get("caps", {}),
            )
        else:
            if grant.autonomy_level not in (AutonomyLevel.OFF, AutonomyLevel.SHADOW):
                # A tool added back starts over in shadow mode: that is a demotion.
                reset = AutonomyChange.objects.create(
                    workflow=workflow,
                    grant=grant,
                    kind=AutonomyChange.Kind.DEMOTION,
                    status=AutonomyChange.Status.APPLIED,
                    from_level=grant.autonomy_level,
                    to_level=AutonomyLevel.SHADOW,
                    requested_by=change.requested_by,
                    reason=f"Added back to the workflow (change #{change.pk}): starts in shadow.",
                    decided_at=timezone.now(),
                )
                governance_sql.change_mark(autonomy=reset.pk)
            grant.enabled = True
            grant.autonomy_level = AutonomyLevel.SHADOW
            grant.caps = change.after.get("caps", {})
            grant.save(update_fields=["enabled", "autonomy_level", "caps", "updated_at"])
    elif kind == ConfigChange.Kind.REMOVE_TOOL:
        # Disabled, not deleted: its history (autonomy changes, evidence) stays.
        grant.enabled = False
        grant.save(update_fields=["enabled", "updated_at"])
    else:
        grant.caps = change.after.get("caps", {})
        grant.save(update_fields=["caps", "updated_at"])


# --- the suite check ------------------------------------------------------------------------


def suite_check(*, workflow: Workflow, apply: Callable[[], None]) -> dict[str, Any]:
    """Every regression suite of the workflow replayed against the configuration
    ``apply`` produces, inside a savepoint that is always rolled back (the agents app
    answers, ``governance.hooks`` "suite_check"). Must run inside a transaction.
    Raises when the workflow has no suite; with no suite runner installed, nothing
    widens."""
    try:
        check = hooks.get("suite_check")
    except hooks.HookMissing as exc:
        raise ValidationError(str(exc), code="no_suite_runner") from exc
    return check(workflow=workflow, apply=apply)


def _suite_detail(suite: dict[str, Any]) -> str:
    return "; ".join(f"{r['suite']}: {r['summary']}" for r in suite["suites"] if not r["passed"])


def _gate(workflow: Workflow, change: ConfigChange) -> dict[str, Any]:
    if change.kind in SETTINGS_KINDS and not set(change.after["settings"]) & set(BEHAVIOUR):
        # Thresholds and budgets do not change what the agent does: four eyes suffice.
        return {"passed": True, "suites": [], "skipped": "no behaviour changes"}
    result = suite_check(workflow=workflow, apply=lambda: _apply(workflow, change))
    if not result["passed"]:
        raise ValidationError(ERR_SUITE_RED.format(detail=_suite_detail(result)), code="suite_red")
    return result


# --- services ----------------------------------------------------------------------------------


def _classify(
    workflow: Workflow,
    *,
    tool: str,
    caps: dict[str, Any] | None,
    allowlists: dict[str, Any] | None,
    remove: bool,
    settings: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    if settings is not None:
        cleaned = settings_clean(workflow, settings)
        current = settings_current(workflow, cleaned)
        changed = {name: value for name, value in cleaned.items() if value != current[name]}
        if not changed:
            raise ValidationError(ERR_NOTHING_CHANGES, code="nothing_changes")
        before = {"settings": {name: current[name] for name in changed}}
        after = {"settings": changed}
        widen = settings_widen(before["settings"], changed)
        kind = ConfigChange.Kind.WIDEN_SETTINGS if widen else ConfigChange.Kind.NARROW_SETTINGS
        return kind, before, after
    if allowlists is not None:
        before = {"allowlists": _current_allowlists(workflow)}
        after = {"allowlists": allowlists_clean(allowlists)}
        if before == after:
            raise ValidationError(ERR_NOTHING_CHANGES, code="nothing_changes")
        widen = allowlists_widen(before["allowlists"], after["allowlists"])
        kind = ConfigChange.Kind.WIDEN_ALLOWLIST if widen else ConfigChange.Kind.NARROW_ALLOWLIST
        return kind, before, after
    grant = ToolGrant.objects.filter(workflow=workflow, tool=tool).first()
    before = _grant_state(grant)
    if remove:
        if not before:
            raise ValidationError(ERR_NOT_GRANTED.format(tool=tool), code="not_granted")
        return ConfigChange.Kind.REMOVE_TOOL, before, {}
    cleaned = caps_clean(caps)
    if not before:
        if not hooks.get("tool_known")(workflow=workflow, tool=tool):
            raise ValidationError(ERR_UNKNOWN_TOOL.format(tool=tool), code="unknown_tool")
        return ConfigChange.Kind.ADD_TOOL, before, {"tool": tool, "caps": cleaned}
    if caps is None:
        raise ValidationError(ERR_ALREADY_GRANTED.format(tool=tool), code="already_granted")
    after = {"tool": tool, "caps": cleaned}
    if before["caps"] == cleaned:
        raise ValidationError(ERR_NOTHING_CHANGES, code="nothing_changes")
    widen = caps_widen(before["caps"], cleaned)
    return (ConfigChange.Kind.WIDEN_CAP if widen else ConfigChange.Kind.NARROW_CAP), before, after


def _refuse_unstorable(**fields: Any) -> None:
    """A NUL character, a lone surrogate or a non-finite number in anything requested
    is refused with the field it is in, before it reaches a query."""
    problem = hygiene.first_problem(fields)
    if problem is not None:
        where = problem.where.removeprefix("$.")
        where = where[:1].upper() + where[1:]
        raise ValidationError(ERR_UNSTORABLE.format(where=where, problem=problem.message))


def config_change_request(
    *,
    workflow: Workflow,
    actor: AbstractBaseUser | None,
    reason: str = "",
    tool: str = "",
    caps: dict[str, Any] | None = None,
    allowlists: dict[str, Any] | None = None,
    remove: bool = False,
    settings: dict[str, Any] | None = None,
) -> ConfigChange:
    """Request a configuration change: a tool (with its caps) to add or remove, a
    tool's new caps, or the workflow's new allowlists.

    A widening runs the regression suites against the new configuration first and
    is refused when they are red or missing; it then waits for a second manager.
    A narrowing applies at once. Both are audited.
    """
    _refuse_unstorable(
        reason=reason, tool=tool, caps=caps, allowlists=allowlists, settings=settings
    )
    with transaction.atomic():
        workflow = Workflow.objects.select_for_update(no_key=True).get(pk=workflow.pk)
        kind, before, after = _classify(
            workflow,
            tool=tool.strip(),
            caps=caps,
            allowlists=allowlists,
            remove=remove,
            settings=settings,
        )
        # Saved first, so the database can see which change is being applied (the
        # suite check applies it inside a savepoint too); a red suite rolls it back.
        change = ConfigChange.objects.create(
            workflow=workflow,
            kind=kind,
            tool="" if allowlists is not None or settings is not None else tool.strip(),
            before=before,
            after=after,
            requested_by=actor,
            reason=reason.strip(),
        )
        governance_sql.change_mark(config=change.pk)
        if change.gated:
            change.suite = _gate(workflow, change)
            change.save(update_fields=["suite"])
        audit_append(
            action=f"config.{kind}.requested",
            actor=actor,
            workflow=workflow,
            obj=change,
            data={"tool": change.tool, "before": before, "after": after, "suite": change.suite},
        )
        if not change.gated:
            _apply(workflow, change)
            change.status = ConfigChange.Status.APPLIED
            change.decided_at = timezone.now()
            change.save(update_fields=["status", "decided_at"])
            audit_append(
                action=f"config.{kind}.applied",
                actor=actor,
                workflow=workflow,
                obj=change,
                data={"tool": change.tool, "before": before, "after": after},
            )
    return change


def config_change_approve(*, change: ConfigChange, actor: AbstractBaseUser) -> ConfigChange:
    """A second manager applies a requested change, after the suites pass again for
    the configuration as it would be now."""
    with transaction.atomic():
        change = ConfigChange.objects.select_for_update().get(pk=change.pk)
        if change.status != ConfigChange.Status.REQUESTED:
            raise ValidationError(
                ERR_NOT_REQUESTED.format(status=change.get_status_display().lower()),
                code="not_requested",
            )
        if change.requested_by_id == actor.pk:
            raise ValidationError(ERR_FOUR_EYES, code="four_eyes")
        workflow = Workflow.objects.select_for_update(no_key=True).get(pk=change.workflow_id)
        if _current(workflow, change) != change.before:
            raise ValidationError(ERR_STALE, code="stale")
        governance_sql.change_mark(config=change.pk)
        change.suite = {**change.suite, "at_approval": _gate(workflow, change)}
        _apply(workflow, change)
        change.status = ConfigChange.Status.APPLIED
        change.approved_by = actor
        change.decided_at = timezone.now()
        change.save(update_fields=["status", "approved_by", "decided_at", "suite"])
        audit_append(
            action=f"config.{change.kind}.applied",
            actor=actor,
            workflow=workflow,
            obj=change,
            data={"tool": change.tool, "before": change.before, "after": change.after},
        )
    return change


def config_change_decline(
    *, change: ConfigChange, actor: AbstractBaseUser, reason: str = ""
) -> ConfigChange:
    with transaction.atomic():
        change = ConfigChange.objects.select_for_update().get(pk=change.pk)
        if change.status != ConfigChange.Status.REQUESTED:
            raise ValidationError(
                ERR_NOT_REQUESTED.format(status=change.get_status_display().lower()),
                code="not_requested",
            )
        change.status = ConfigChange.Status.DECLINED
        change.decided_at = timezone.now()
        change.save(update_fields=["status", "decided_at"])
        audit_append(
            action=f"config.{change.kind}.declined",
            actor=actor,
            workflow=change.workflow,
            obj=change,
            data={"tool": change.tool, "reason": reason},
        )
    return change


# --- model prices ----------------------------------------------------------------------


def price_clean(which: str, value: Any) -> Decimal:
    """A price per million tokens as the table stores it, or a ValidationError."""
    error = ValidationError(
        ERR_PRICE_VALUE.format(which=which.replace("_", " "), value=value), code="bad_price"
    )
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise error from None
    if not number.is_finite() or number < 0 or number >= PRICE_LIMIT:
        raise error
    if number.as_tuple().exponent < -6:  # refuse, never round a price silently
        raise error
    return number.quantize(Decimal("0.000001"))


def _price_state(row: ModelPrice | None) -> dict[str, str]:
    if row is None:
        return {}
    return {name: str(getattr(row, column)) for name, column in PRICE_FIELDS}


def model_price_set(
    *,
    model: str,
    input: Decimal | str,  # shadows the builtin on purpose: the price's own name
    cached_input: Decimal | str,
    output: Decimal | str,
    actor: AbstractBaseUser,
    reason: str = "",
) -> ConfigChange:
    """Set (or add) a model's price, in USD per million tokens: input, cached input
    and output. Admins only. A ``SET_PRICE`` change records the price before and
    after; it applies at once and is audited, and every process reads the new table
    before its next run (``governance.prices``)."""
    if not is_admin(actor):
        raise PermissionDenied(ERR_PRICE_NOT_ADMIN)
    model = (model or "").strip()
    if not model or len(model) > ModelPrice._meta.get_field("model").max_length:
        raise ValidationError(ERR_PRICE_MODEL, code="bad_model")
    values = {"input": input, "cached_input": cached_input, "output": output}
    after = {name: str(price_clean(name, values[name])) for name, _ in PRICE_FIELDS}
    if Decimal(after["cached_input"]) > Decimal(after["input"]):
        raise ValidationError(
            ERR_PRICE_CACHED_ABOVE_INPUT.format(cached=after["cached_input"], input=after["input"]),
            code="cached_above_input",
        )
    with transaction.atomic():
        row = ModelPrice.objects.select_for_update().filter(model=model).first()
        before = _price_state(row)
        if before == after:
            raise ValidationError(ERR_PRICE_UNCHANGED.format(model=model), code="nothing_changes")
        fields = {column: Decimal(after[name]) for name, column in PRICE_FIELDS}
        if row is None:
            ModelPrice.objects.create(model=model, **fields)
        else:
            for column, value in fields.items():
                setattr(row, column, value)
            row.save(update_fields=[*fields, "updated_at"])
        now = timezone.now()
        change = ConfigChange.objects.create(
            workflow=None,
            kind=ConfigChange.Kind.SET_PRICE,
            status=ConfigChange.Status.APPLIED,
            before={"model": model, **before} if before else {},
            after={"model": model, **after},
            requested_by=actor,
            reason=(reason or "").strip(),
            decided_at=now,
        )
        audit_append(
            action=f"config.{ConfigChange.Kind.SET_PRICE}.applied",
            actor=actor,
            obj=change,
            data={"model": model, "before": before, "after": after, "reason": change.reason},
        )
        transaction.on_commit(prices_version_bump)
    return change


# --- before a workflow is live ---------------------------------------------------------


def config_change_record_applied(
    *,
    workflow: Workflow,
    kind: str,
    actor: AbstractBaseUser | None,
    tool: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str = "",
) -> ConfigChange:
    """Record, audit and name (for the database's guard) a change applied at once to a
    workflow that is not live yet: no work item has arrived and nothing is above
    shadow, so nothing it changes can act. The caller writes the change in the same
    transaction. A live workflow's changes go through ``config_change_request``."""
    change = ConfigChange.objects.create(
        workflow=workflow,
        kind=kind,
        status=ConfigChange.Status.APPLIED,
        tool=tool,
        before=before or {},
        after=after or {},
        requested_by=actor,
        reason=reason,
        decided_at=timezone.now(),
    )
    governance_sql.change_mark(config=change.pk)
    audit_append(
        action=f"config.{kind}.applied",
        actor=actor,
        workflow=workflow,
        obj=change,
        data={"tool": tool, "before": change.before, "after": change.after, "reason": reason},
    )
    return change
