"""Regression evals from real decisions.

A case is a work item, the read-tool outputs the agent saw, and what a human
did about it (``cases``). ``eval_suite_run`` (``runs``) replays the agent on every
case through the real runner (``replay``), with the recorded outputs served in
place of live read tools, inside a savepoint that is rolled back: no Run, Step,
Proposal, Escalation or audit row survives and nothing executes. Actions are
compared through each tool's pydantic model (``scoring``), so "42" and "42.00"
agree.

Recordings come from the source run's Steps, which are stored redacted. A call
is looked up by its redacted arguments, and placeholders in a recorded output are
filled back from a live read at capture time when the live value redacts to the
same placeholder; values that are not PII stay as recorded.
"""

from __future__ import annotations

from agents.evals.cases import (
    ERR_NOT_DECIDED,
    eval_case_create,
    eval_case_from_decision,
    eval_case_from_escalation,
    eval_cases_by_rule,
    eval_suite_ensure,
)
from agents.evals.export import EVAL_CASE_COLUMNS, eval_case_rows
from agents.evals.replay import (
    CURRENT_VERSION,
    AgentVariant,
    Replay,
    agent_replay,
    agent_variant,
    agent_variant_register,
)
from agents.evals.runs import (
    ERR_NO_CHANGE_SUITE,
    SuiteStatus,
    eval_suite_run,
    run_summary,
    suite_check,
    suite_status,
)
from agents.evals.scoring import actual_text, case_score, expected_text

__all__ = [
    "CURRENT_VERSION",
    "ERR_NOT_DECIDED",
    "ERR_NO_CHANGE_SUITE",
    "EVAL_CASE_COLUMNS",
    "AgentVariant",
    "Replay",
    "SuiteStatus",
    "eval_case_create",
    "actual_text",
    "agent_replay",
    "agent_variant",
    "agent_variant_register",
    "case_score",
    "eval_case_from_decision",
    "eval_case_from_escalation",
    "eval_case_rows",
    "eval_cases_by_rule",
    "eval_suite_ensure",
    "eval_suite_run",
    "expected_text",
    "run_summary",
    "suite_check",
    "suite_status",
]
