"""Agent-side writes: work items in (``work_items``), plans dispatched in order
(``plans``), actions executed exactly once (``execution``), and stranded work sent
again (``sweeper``). The names below are the service layer's public API."""

from __future__ import annotations

from agents.services.execution import (
    ERR_HASH_MISMATCH,
    ExecutionRefused,
    auto_daily_usage,
    execution_key,
    proposal_execute,
)
from agents.services.plans import (
    EXECUTABLE_STATUSES,
    RULE_HELD_AFTER_REJECTION,
    PlanDispatch,
    held_work_restart,
    plan_dispatch,
    plan_dispatch_ready,
    plans_redispatch,
    proposals_auto_execute,
    resume_dispatch,
)
from agents.services.sweeper import STRANDED_AFTER, stranded_redispatch
from agents.services.work_items import (
    ERR_PAYLOAD_NOT_OBJECT,
    ERR_PAYLOAD_TEXT,
    ERR_PAYLOAD_TOO_BIG,
    MAX_PAYLOAD_BYTES,
    NewWorkItem,
    PayloadLimits,
    payload_check,
    payload_limits,
    run_for_work_item,
    work_item_create,
    work_item_dispatch,
    work_item_retry,
    work_items_create_bulk,
    work_items_dispatch_received,
    work_items_waiting,
)

__all__ = [
    "ERR_HASH_MISMATCH",
    "ERR_PAYLOAD_NOT_OBJECT",
    "ERR_PAYLOAD_TEXT",
    "ERR_PAYLOAD_TOO_BIG",
    "EXECUTABLE_STATUSES",
    "MAX_PAYLOAD_BYTES",
    "RULE_HELD_AFTER_REJECTION",
    "STRANDED_AFTER",
    "ExecutionRefused",
    "NewWorkItem",
    "PayloadLimits",
    "PlanDispatch",
    "auto_daily_usage",
    "execution_key",
    "held_work_restart",
    "payload_check",
    "payload_limits",
    "plan_dispatch",
    "plan_dispatch_ready",
    "plans_redispatch",
    "proposal_execute",
    "proposals_auto_execute",
    "resume_dispatch",
    "run_for_work_item",
    "stranded_redispatch",
    "work_item_create",
    "work_item_dispatch",
    "work_item_retry",
    "work_items_create_bulk",
    "work_items_dispatch_received",
    "work_items_waiting",
]
