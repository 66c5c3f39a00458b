"""Policy: per-workflow rules evaluated on validated arguments.

A verdict is allow / needs_approval / deny, always with the rule text that
produced it (reviewers and escalation packets show it).

Rules come from ``Workflow.policy`` (JSON) and the tool grant's ``caps``::

    {
      "caps": {"create_refund": {"amount": 200}, "merge_contacts": {"records": 3}},
      "limits": {"create_refund": {"amount": 400}},      # above a limit: deny
      "allowlists": {"groups": ["vpn-users"], "email_domains": ["example.com"],
                     "arguments": {"send_payout": {"$.account": ["ACC-1", "ACC-2"]}}},
      "roles": {"book_trip": {"money": ["$.items[*].price"], "recipient": ["$.to"]}},
      "subject": {"field": "customer_id", "owner_key": "customer_id"},
      "always_approve": ["money_above_cap", "access", "external_message", "delete"],
      "checks": ["myteam.guardrails.PiiGuardrail"]        # extra pluggable checks
    }

Argument roles (``agents.roles``; declared on the tool, overridable per workflow in
``"roles"``) say which arguments are money: a money cap bounds the SUM of every
value the money paths reach, and money must be finite and above zero. A money
tool that declares no amount never runs without a human. ``allowlists.arguments``
pins one argument of one tool (by its path) to listed values ("@domain" for an
email domain); a value off the list is denied.

A grant's caps (``{"amount": 100}``) tighten the workflow's caps for that tool;
the lower of the two applies. A grant's per-day caps (``{"count": 20, "total": 500}``)
bound what executes without a human in one UTC day.

**Adding a check.** A check is any callable taking a ``PolicyContext`` and
returning a ``CheckResult`` (or ``None`` when it has nothing to say). Register it
for every workflow in settings (``TENURE_POLICY_CHECKS = ["dotted.path"]``) or for
one workflow in its policy JSON (``"checks": [...]``). An external guardrail
service (content or PII API) is one more check: see ``HttpGuardrailCheck``, which
POSTs the call and fails closed (needs approval) when the service is unreachable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings
from django.utils.module_loading import import_string

from agents.models import HIGH_IMPACT_RISKS, Proposal, RiskClass
from agents.provenance import argument_allowlist, value_allowed
from agents.roles import ArgRoles, money_problems, money_total, path_values, roles_for
from governance.models import AutonomyLevel

if TYPE_CHECKING:
    from pydantic import BaseModel

    from agents.tools.base import Tool
    from governance.models import ToolGrant, Workflow

Verdict = Proposal.Verdict

RULE_WITHIN_POLICY = "Within policy: granted tool, inside its caps and allowlists."
RULE_READ = "Read-only tool: may run at any level."
RULE_SHADOW = "Shadow mode: nothing executes; the reviewer records what they really did."
RULE_SUPERVISED = "Supervised: every action executes only after a reviewer approves it."
RULE_OFF = "The tool is off: nothing runs."
RULE_HIGH_IMPACT = "{label} actions always need a human approval, whatever the autonomy level."
RULE_CAP = "{tool}: {fact} {value} is above the cap of {cap}; above the cap a human approves."
RULE_LIMIT = "{tool}: {fact} {value} is above the hard limit of {limit}; denied."
RULE_NO_CAP_AT_LIMITED = (
    "Limited autonomy only auto-executes inside caps, and {tool} has no {fact} cap; "
    "a human approves."
)
RULE_DAILY_COUNT = "{tool} already ran {done} times today (daily cap {cap}); a human approves."
RULE_DAILY_TOTAL = (
    "{tool} would bring today's total to {total} (daily cap {cap}); a human approves."
)
RULE_GROUP_NOT_ALLOWED = "Group “{group}” is not on the workflow's grantable-groups allowlist."
RULE_DOMAIN_NOT_ALLOWED = "Email domain “{domain}” is not on the workflow's allowlist."
RULE_MONEY_INVALID = "{tool}: {problem} Denied."
RULE_NO_DECLARED_AMOUNT = (
    "{tool} moves money but declares no amount argument (or the call has none): at "
    "{level} it only runs with a human's approval. Declare the money path on the tool "
    "or in the workflow's policy roles."
)
RULE_ARG_NOT_ALLOWED = "{tool}: {path} = “{value}” is not on the workflow's allowlist for it."
RULE_CHECK_FAILED = "Policy check {name} failed ({error}); failing closed: a human approves."

# Money above a cap is checked in check_caps; these classes are always approved.
DEFAULT_ALWAYS_APPROVE = ("money_above_cap", "access", "external_message", "delete")
# Facts a cap may bound, and how each is described.
CAP_FACTS = ("amount", "records")
_ORDER = {Verdict.ALLOW: 0, Verdict.NEEDS_APPROVAL: 1, Verdict.DENY: 2}


@dataclass(frozen=True)
class CheckResult:
    verdict: str
    rule: str


@dataclass(frozen=True)
class PolicyContext:
    workflow: Workflow
    tool: Tool
    args: BaseModel
    arguments: dict[str, Any]
    facts: dict[str, Any]
    grant: ToolGrant | None
    level: str  # the tool's effective autonomy level
    roles: ArgRoles | None = None  # the tool's argument roles, with the workflow's override

    @property
    def policy(self) -> dict[str, Any]:
        return self.workflow.policy if isinstance(self.workflow.policy, dict) else {}


@dataclass(frozen=True)
class PolicyVerdict:
    verdict: str
    rule: str
    rules: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def allowed(self) -> bool:
        return self.verdict == Verdict.ALLOW

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "rule": self.rule, "rules": [list(r) for r in self.rules]}


PolicyCheck = Callable[[PolicyContext], CheckResult | None]


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        return None


def effective_caps(ctx: PolicyContext) -> dict[str, Decimal]:
    """The lower of the workflow's cap and the grant's cap, per fact."""
    return caps_for(
        policy=ctx.policy,
        tool=ctx.tool.name,
        grant_caps=ctx.grant.caps if ctx.grant is not None else None,
    )


def caps_for(
    *, policy: dict[str, Any], tool: str, grant_caps: dict[str, Any] | None
) -> dict[str, Decimal]:
    """Per-action caps of one tool: the lower of the workflow's and the grant's."""
    caps: dict[str, Decimal] = {}
    workflow_caps = ((policy or {}).get("caps") or {}).get(tool) or {}
    grant_caps = grant_caps or {}
    for fact in CAP_FACTS:
        values = [
            v for v in (_decimal(workflow_caps.get(fact)), _decimal(grant_caps.get(fact))) if v
        ]
        if values:
            caps[fact] = min(values)
    return caps


def check_allowlists(ctx: PolicyContext) -> CheckResult | None:
    allowlists = ctx.policy.get("allowlists") or {}
    group = ctx.facts.get("group")
    groups = allowlists.get("groups")
    if group is not None and groups is not None and group not in groups:
        return CheckResult(Verdict.DENY, RULE_GROUP_NOT_ALLOWED.format(group=group))
    domain = ctx.facts.get("email_domain")
    domains = allowlists.get("email_domains")
    if domain is not None and domains is not None:
        allowed = {d.lower().lstrip("@") for d in domains}
        if domain not in allowed:
            return CheckResult(Verdict.DENY, RULE_DOMAIN_NOT_ALLOWED.format(domain=domain))
    return None


def check_argument_allowlists(ctx: PolicyContext) -> CheckResult | None:
    """``allowlists.arguments.<tool>.<path>``: the argument must be a listed value."""
    lists = ((ctx.policy.get("allowlists") or {}).get("arguments") or {}).get(ctx.tool.name)
    if not isinstance(lists, dict):
        return None
    for path in lists:
        for where, value in path_values(ctx.arguments, str(path)):
            entries = argument_allowlist(ctx.policy, ctx.tool.name, where) or []
            values = value if isinstance(value, list) else [value]
            for one in values:
                if not value_allowed(one, entries):
                    return CheckResult(
                        Verdict.DENY,
                        RULE_ARG_NOT_ALLOWED.format(tool=ctx.tool.name, path=where, value=one),
                    )
    return None


def check_money(ctx: PolicyContext) -> CheckResult | None:
    """Money is finite and above zero (unless the tool says it may be signed); a money
    tool with no declared amount never runs without a human at limited or above."""
    roles = ctx.roles or ArgRoles()
    if roles.money:
        problems = money_problems(roles, ctx.arguments)
        if problems:
            return CheckResult(
                Verdict.DENY, RULE_MONEY_INVALID.format(tool=ctx.tool.name, problem=problems[0][1])
            )
    elif ctx.tool.risk_class == RiskClass.MONEY:
        amount = _decimal(ctx.facts.get("amount"))
        if amount is not None and (not amount.is_finite() or amount <= 0):
            return CheckResult(
                Verdict.DENY,
                RULE_MONEY_INVALID.format(
                    tool=ctx.tool.name,
                    problem=f"an amount of money must be a finite number above zero, not {amount}.",
                ),
            )
    at_limited = AutonomyLevel.rank(ctx.level) >= AutonomyLevel.rank(AutonomyLevel.LIMITED)
    undeclared = not roles.money or _decimal(ctx.facts.get("amount")) is None
    if ctx.tool.risk_class == RiskClass.MONEY and at_limited and undeclared:
        return CheckResult(
            Verdict.NEEDS_APPROVAL,
            RULE_NO_DECLARED_AMOUNT.format(tool=ctx.tool.name, level=ctx.level),
        )
    return None


def check_limits(ctx: PolicyContext) -> CheckResult | None:
    limits = (ctx.policy.get("limits") or {}).get(ctx.tool.name) or {}
    for fact in CAP_FACTS:
        limit, value = _decimal(limits.get(fact)), _decimal(ctx.facts.get(fact))
        if limit is not None and value is not None and not value <= limit:
            return CheckResult(
                Verdict.DENY,
                RULE_LIMIT.format(tool=ctx.tool.name, fact=fact, value=value, limit=limit),
            )
    return None


def check_caps(ctx: PolicyContext) -> CheckResult | None:
    caps = effective_caps(ctx)
    for fact, cap in caps.items():
        value = _decimal(ctx.facts.get(fact))
        # "not <=": a value that does not compare (NaN) is outside the cap too.
        if value is not None and (not value.is_finite() or not value <= cap):
            return CheckResult(
                Verdict.NEEDS_APPROVAL,
                RULE_CAP.format(tool=ctx.tool.name, fact=fact, value=value, cap=cap),
            )
    # At limited, money and bulk writes only auto-run inside an explicit cap.
    if ctx.level == AutonomyLevel.LIMITED:
        if ctx.tool.risk_class == RiskClass.MONEY and "amount" not in caps:
            return CheckResult(
                Verdict.NEEDS_APPROVAL,
                RULE_NO_CAP_AT_LIMITED.format(tool=ctx.tool.name, fact="amount"),
            )
        if "records" in ctx.facts and "records" not in caps:
            return CheckResult(
                Verdict.NEEDS_APPROVAL,
                RULE_NO_CAP_AT_LIMITED.format(tool=ctx.tool.name, fact="records"),
            )
    return None


def check_daily_caps(ctx: PolicyContext) -> CheckResult | None:
    """A grant's per-day caps ({"count": 20, "total": 500}) bound what runs without a
    human in one UTC day; above them, actions wait for approval."""
    if AutonomyLevel.rank(ctx.level) < AutonomyLevel.rank(AutonomyLevel.LIMITED):
        return None  # below limited a human approves everything anyway
    caps = (ctx.grant.caps if ctx.grant is not None else {}) or {}
    count_cap, total_cap = _decimal(caps.get("count")), _decimal(caps.get("total"))
    if count_cap is None and total_cap is None:
        return None
    from django.utils import timezone

    from agents.models import Execution

    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    done = Execution.objects.filter(
        proposal__workflow=ctx.workflow,
        proposal__tool=ctx.tool.name,
        status=Execution.Status.SUCCEEDED,
        finished_at__gte=today,
    )
    if count_cap is not None:
        count = done.count()
        if count + 1 > count_cap:
            return CheckResult(
                Verdict.NEEDS_APPROVAL,
                RULE_DAILY_COUNT.format(tool=ctx.tool.name, done=count, cap=count_cap),
            )
    amount = _decimal(ctx.facts.get("amount"))
    if total_cap is not None and amount is not None:
        roles = ctx.roles or ArgRoles()

        def spent_in(arguments: Any) -> Decimal:
            if roles.money:
                return money_total(roles, arguments) or Decimal(0)
            return _decimal((arguments or {}).get("amount")) or Decimal(0)

        spent = sum((spent_in(a) for a in done.values_list("arguments", flat=True)), Decimal(0))
        if spent + amount > total_cap:
            return CheckResult(
                Verdict.NEEDS_APPROVAL,
                RULE_DAILY_TOTAL.format(tool=ctx.tool.name, total=spent + amount, cap=total_cap),
            )
    return None


def check_high_impact(ctx: PolicyContext) -> CheckResult | None:
    always = ctx.policy.get("always_approve", DEFAULT_ALWAYS_APPROVE)
    # Access, external messages and deletions are high impact by definition: a
    # workflow's JSON cannot take them off the list.
    classes = set(always) | {str(r) for r in HIGH_IMPACT_RISKS}
    if ctx.tool.risk_class in classes and ctx.tool.risk_class != RiskClass.MONEY:
        label = RiskClass(ctx.tool.risk_class).label
        return CheckResult(Verdict.NEEDS_APPROVAL, RULE_HIGH_IMPACT.format(label=label))
    return None


def check_level(ctx: PolicyContext) -> CheckResult | None:
    if ctx.level == AutonomyLevel.OFF:
        return CheckResult(Verdict.DENY, RULE_OFF)
    if ctx.level == AutonomyLevel.SHADOW:
        return CheckResult(Verdict.NEEDS_APPROVAL, RULE_SHADOW)
    if ctx.level == AutonomyLevel.SUPERVISED:
        return CheckResult(Verdict.NEEDS_APPROVAL, RULE_SUPERVISED)
    return None


DEFAULT_CHECKS: tuple[PolicyCheck, ...] = (
    check_allowlists,
    check_argument_allowlists,
    check_money,
    check_limits,
    check_caps,
    check_daily_caps,
    check_high_impact,
    check_level,
)


class HttpGuardrailCheck:
    """An external guardrail service as a policy step.

    POSTs ``{"workflow", "tool", "risk_class", "arguments"}`` to ``url`` and reads
    ``{"verdict": "allow"|"needs_approval"|"deny", "reason": "..."}``. Any error
    fails closed to needs_approval. Subclass with a fixed URL and list the class
    in ``TENURE_POLICY_CHECKS`` or a workflow's ``policy["checks"]``.
    """

    url: str = ""
    timeout: float = 2.0

    def __init__(self, url: str | None = None, timeout: float | None = None) -> None:
        self.url = url or self.url
        self.timeout = timeout or self.timeout

    def __call__(self, ctx: PolicyContext) -> CheckResult | None:
        payload = {
            "workflow": ctx.workflow.slug,
            "tool": ctx.tool.name,
            "risk_class": ctx.tool.risk_class,
            "arguments": ctx.arguments,
        }
        try:
            response = httpx.post(self.url, json=payload, timeout=self.timeout)
            response.raise_for_status()
            body = response.json()
            verdict = body.get("verdict", Verdict.NEEDS_APPROVAL)
            if verdict not in _ORDER:
                raise ValueError(f"unknown verdict {verdict!r}")
        except (httpx.HTTPError, ValueError) as exc:
            return CheckResult(
                Verdict.NEEDS_APPROVAL,
                RULE_CHECK_FAILED.format(name=type(self).__name__, error=type(exc).__name__),
            )
        if verdict == Verdict.ALLOW:
            return None
        return CheckResult(verdict, str(body.get("reason") or f"Guardrail {self.url}: {verdict}"))


def _load(path: str) -> PolicyCheck:
    obj = import_string(path)
    return obj() if isinstance(obj, type) else obj


def checks_for(workflow: Workflow) -> list[PolicyCheck]:
    paths = list(getattr(settings, "TENURE_POLICY_CHECKS", []))
    policy = workflow.policy if isinstance(workflow.policy, dict) else {}
    paths += list(policy.get("checks") or [])
    return [*DEFAULT_CHECKS, *(_load(p) for p in paths)]


def grant_level(workflow: Workflow, grant: ToolGrant | None) -> str:
    if grant is None or not grant.enabled:
        return AutonomyLevel.OFF
    return min(grant.autonomy_level, workflow.autonomy_level, key=AutonomyLevel.rank)


def policy_evaluate(
    *,
    workflow: Workflow,
    tool: Tool,
    args: BaseModel,
    grant: ToolGrant | None,
    checks: Iterable[PolicyCheck] | None = None,
) -> PolicyVerdict:
    """Run every check; the strictest verdict wins and carries its rule text."""
    level = grant_level(workflow, grant)
    if tool.is_read and level != AutonomyLevel.OFF:
        return PolicyVerdict(Verdict.ALLOW, RULE_READ, ((Verdict.ALLOW, RULE_READ),))
    arguments = args.model_dump(mode="json")
    policy = workflow.policy if isinstance(workflow.policy, dict) else {}
    try:
        roles = roles_for(tool, policy)
    except ValueError as exc:  # a bad role path in the policy: fail closed
        rule = RULE_CHECK_FAILED.format(name="roles", error=exc)
        return PolicyVerdict(Verdict.NEEDS_APPROVAL, rule, ((Verdict.NEEDS_APPROVAL, rule),))
    ctx = PolicyContext(
        workflow=workflow,
        tool=tool,
        args=args,
        arguments=arguments,
        facts=tool.policy_facts(args, roles),
        grant=grant,
        level=level,
        roles=roles,
    )
    results: list[CheckResult] = []
    for check in checks if checks is not None else checks_for(workflow):
        try:
            result = check(ctx)
        except Exception as exc:  # noqa: BLE001 - a broken check must fail closed, not crash
            name = getattr(check, "__name__", type(check).__name__)
            result = CheckResult(
                Verdict.NEEDS_APPROVAL, RULE_CHECK_FAILED.format(name=name, error=exc)
            )
        if result is not None:
            results.append(result)
    if not results:
        return PolicyVerdict(
            Verdict.ALLOW, RULE_WITHIN_POLICY, ((Verdict.ALLOW, RULE_WITHIN_POLICY),)
        )
    worst = max(_ORDER[r.verdict] for r in results)
    deciding = [r for r in results if _ORDER[r.verdict] == worst]
    return PolicyVerdict(
        verdict=deciding[0].verdict,
        rule=" ".join(r.rule for r in deciding),
        rules=tuple((r.verdict, r.rule) for r in results),
    )
