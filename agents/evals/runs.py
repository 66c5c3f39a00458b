"""Running a suite, the result the promotion gate reads, and the check change
control runs against a new configuration."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from agents import prompts
from agents.evals.cases import _actor_label
from agents.evals.replay import (
    CURRENT_VERSION,
    AgentVariant,
    Recording,
    agent_replay,
    agent_variant,
)
from agents.evals.scoring import case_score
from agents.models import (
    EvalCase,
    EvalCaseResult,
    EvalRun,
    EvalSuite,
)
from agents.tools import canonical_json, registry_for
from governance import privacy
from governance.audit import audit_append
from governance.models import Workflow

ERR_NO_CASES = "The suite {suite} has no cases."
NO_SUITE = "No regression suite has run for this workflow's current agent version."
NOT_RUN = "Suite “{suite}” has not run for {version}."


def _previous_results(suite: EvalSuite, before: EvalRun) -> tuple[int | None, dict[int, bool]]:
    """The suite's last finished run before this one (any agent version) and which
    cases passed in it."""
    previous = (
        EvalRun.objects.filter(suite=suite, finished_at__isnull=False, pk__lt=before.pk)
        .order_by("-pk")
        .first()
    )
    if previous is None:
        return None, {}
    return previous.pk, dict(
        previous.results.filter(case__isnull=False).values_list("case_id", "passed")
    )


def _expected_view(case: EvalCase) -> dict[str, Any]:
    return {
        "outcome": case.expected_outcome,
        "actions": case.expected_actions,
        "forbidden": case.forbidden_actions,
    }


def _pct(value: Decimal | float) -> str:
    return f"{float(value) * 100:.0f}%"


def eval_suite_run(
    *, suite: EvalSuite, agent_version: str | None = None, actor: Any = "evals"
) -> EvalRun:
    """Replay every case of the suite with one agent version and score it.

    A run fails when agreement is under the suite's threshold or when a case that
    passed in the suite's previous run fails now (a regression)."""
    variant = agent_variant(agent_version)
    cases = list(suite.cases.order_by("pk"))
    if not cases:
        raise ValidationError(ERR_NO_CASES.format(suite=suite), code="no_cases")
    eval_run = EvalRun.objects.create(
        suite=suite,
        agent_version=variant.version,
        prompt_version=variant.prompt_version,
        started_at=timezone.now(),
        threshold=suite.threshold,
        created_by=_actor_label(actor),
    )
    try:
        return _suite_run_cases(suite=suite, eval_run=eval_run, cases=cases, variant=variant,
                                actor=actor)  # fmt: skip
    except Exception as exc:
        # Never leave a run "running": record why it stopped, then let the caller see it.
        EvalRun.objects.filter(pk=eval_run.pk).update(
            status=EvalRun.Status.FAILED,
            finished_at=timezone.now(),
            report={"error": f"{type(exc).__name__}: {exc}"[:2000]},
        )
        raise


def config_fingerprint(workflow: Workflow) -> str:
    """What a replay depends on besides the agent: grants, caps, policy and models. Change
    control can compare it with the one a green run was made under."""
    grants = sorted(
        (g.tool, g.enabled, canonical_json(g.caps)) for g in workflow.grants.order_by("tool")
    )
    config = [grants, workflow.policy, workflow.model_small, workflow.model_large]
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


def _suite_run_cases(
    *,
    suite: EvalSuite,
    eval_run: EvalRun,
    cases: list[EvalCase],
    variant: AgentVariant,
    actor: Any,
) -> EvalRun:
    workflow = suite.workflow
    previous_run, previous = _previous_results(suite, eval_run)
    registry = registry_for(workflow)
    results: list[EvalCaseResult] = []
    models: set[str] = set()
    for case in cases:
        # A case from a declared workflow holds its subject's tokens: it is replayed and
        # scored on the values, and its result stored with the tokens again.
        vault = privacy.vault_for(case.payload)
        expected_view = _expected_view(case)
        scored = case
        if vault.tokens:
            scored = copy.copy(case)
            scored.expected_actions = privacy.reveal(case.expected_actions)
            scored.forbidden_actions = privacy.reveal(case.forbidden_actions)
        replay = agent_replay(
            workflow=workflow,
            external_id=case.external_id,
            title=case.title,
            payload=case.payload,
            variant=variant,
            recording=Recording(privacy.reveal(case.recorded_outputs)),
        )
        if replay.model:
            models.add(replay.model)
        passed, diff = case_score(scored, replay, registry=registry)
        results.append(
            EvalCaseResult(
                run=eval_run,
                case=case,
                case_name=case.name,
                passed=passed,
                regressed=not passed and previous.get(case.pk) is True,
                expected=expected_view,
                actual=vault.protect(replay.as_dict()),
                diff=vault.protect(diff),
                error=vault.protect(replay.error),
            )
        )
    n_passed = sum(r.passed for r in results)
    agreement = (Decimal(n_passed) / Decimal(len(results))).quantize(Decimal("0.001"))
    regressions = [r.case_name for r in results if r.regressed]
    reasons = []
    if agreement < suite.threshold:
        reasons.append(
            f"agreement {_pct(agreement)} is under the threshold {_pct(suite.threshold)}"
        )
    if regressions:
        reasons.append(f"{len(regressions)} case(s) passed in the previous run and fail now")
    with transaction.atomic():
        EvalCaseResult.objects.bulk_create(results)
        eval_run.cases, eval_run.passed, eval_run.agreement = len(results), n_passed, agreement
        eval_run.status = EvalRun.Status.FAILED if reasons else EvalRun.Status.PASSED
        eval_run.model = ", ".join(sorted(models))[:100]
        eval_run.finished_at = timezone.now()
        eval_run.report = {
            "suite": suite.name,
            "workflow": workflow.slug,
            "agent_version": variant.version,
            "prompt_version": variant.prompt_version,
            "model": eval_run.model,
            "cases": len(results),
            "passed": n_passed,
            "agreement": str(agreement),
            "threshold": str(suite.threshold),
            "config": config_fingerprint(workflow),
            "status": eval_run.status,
            "summary": run_summary(eval_run),
            "reasons": reasons,
            "regressions": regressions,
            "previous_run": previous_run,
            "failures": [
                {
                    "case": r.case_name,
                    "case_id": r.case_id,
                    "regressed": r.regressed,
                    "expected": r.expected,
                    "actual": {
                        "outcome": r.actual["outcome"],
                        "actions": r.actual["actions"],
                        "escalation": r.actual["escalation"],
                    },
                    "diff": r.diff,
                }
                for r in results
                if not r.passed
            ],  # fmt: skip
        }
        eval_run.save()
        audit_append(
            action="eval.run.finished",
            actor=actor,
            workflow=workflow,
            obj=eval_run,
            data={
                "suite": suite.name,
                "agent_version": variant.version,
                "status": eval_run.status,
                "agreement": str(agreement),
                "regressions": regressions[:50],
            },
        )
    return eval_run


def run_summary(run: EvalRun) -> str:
    return (
        f"{run.passed}/{run.cases} cases agree ({_pct(run.agreement)}), "
        f"threshold {_pct(run.threshold)}"
    )


# --- The gate's view -----------------------------------------------------------------------


@dataclass(frozen=True)
class SuiteStatus:
    passed: bool | None
    detail: str


def suite_status(workflow: Workflow) -> SuiteStatus:
    """The latest finished run of each of the workflow's suites for the current agent
    and prompt version: green when every suite's latest run passed, None when a
    suite (or every suite) has not run for this version."""
    suites = list(workflow.eval_suites.order_by("name"))
    if not suites:
        return SuiteStatus(passed=None, detail=NO_SUITE)
    parts: list[str] = []
    verdicts: list[bool | None] = []
    for suite in suites:
        latest = (
            suite.runs.filter(
                agent_version=CURRENT_VERSION,
                prompt_version=prompts.PROMPT_VERSION,
                finished_at__isnull=False,
            )
            .order_by("-finished_at", "-pk")
            .first()
        )
        if latest is None:
            verdicts.append(None)
            parts.append(NOT_RUN.format(suite=suite.name, version=CURRENT_VERSION))
            continue
        verdicts.append(latest.status == EvalRun.Status.PASSED)
        regressions = latest.report.get("regressions") or []
        text = run_summary(latest) + (f", {len(regressions)} regressed" if regressions else "")
        parts.append(text if len(suites) == 1 else f"{suite.name}: {text}")
    if any(v is False for v in verdicts):
        passed: bool | None = False
    elif any(v is None for v in verdicts):
        passed = None
    else:
        passed = True
    return SuiteStatus(passed=passed, detail="; ".join(parts))


ERR_NO_CHANGE_SUITE = (
    "{workflow} has no regression suite: a tool or a wider cap or allowlist cannot be "
    "checked, so it cannot be added. Create a suite first (Evals)."
)


def suite_check(*, workflow: Workflow, apply: Callable[[], None]) -> dict[str, Any]:
    """Run every regression suite of the workflow against the configuration ``apply``
    produces, inside a savepoint that is always rolled back. Must run inside a
    transaction. Raises when the workflow has no suite. Registered with governance
    (``governance.hooks`` "suite_check") for change control."""
    suites = list(workflow.eval_suites.order_by("name"))
    if not suites:
        raise ValidationError(ERR_NO_CHANGE_SUITE.format(workflow=workflow.name), code="no_suite")
    results: list[dict[str, Any]] = []
    savepoint = transaction.savepoint_create()
    try:
        apply()
        for suite in suites:
            try:
                run = eval_suite_run(suite=suite, actor="system:change-control")
            except ValidationError as exc:  # e.g. a suite with no cases
                results.append({"suite": suite.name, "passed": False, "summary": exc.messages[0]})
                continue
            results.append(
                {
                    "suite": suite.name,
                    "passed": run.status == EvalRun.Status.PASSED,
                    "status": run.status,
                    "cases": run.cases,
                    "agreed": run.passed,
                    "agreement": str(run.agreement),
                    "threshold": str(run.threshold),
                    "agent_version": run.agent_version,
                    "summary": run_summary(run),
                }
            )
    finally:
        # The replay ran against the new configuration; nothing of it stays.
        transaction.savepoint_rollback(savepoint)
    return {
        "passed": all(r["passed"] for r in results),
        "suites": results,
        "checked_at": timezone.now().isoformat(),
    }
