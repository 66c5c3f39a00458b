"""Autonomy, grants, caps, policy and thresholds change only with their change row.

For every role but the tables' owner (the app runs as a role that owns no table), the
database refuses: a tool grant or its caps changed, added or removed outside a
transaction that names the ConfigChange applying it; a level changed outside a
transaction that names the AutonomyChange applying it; a workflow's policy, trusted
fields, gate thresholds or budgets changed outside a named ConfigChange; a workflow
or grant created above shadow. The services name their change row
(``governance.sql.change_mark``); the admin site, a shell or a script do not, and are
refused. PostgreSQL only (the embedded SQLite default keeps the rule in the services).
"""

from django.db import migrations

FORWARD = """
-- Autonomy, grants, caps, policy and thresholds change only with their change row:
-- the app's role (which owns no table) writes them only inside a transaction that
-- names the AutonomyChange or ConfigChange it is applying (set_config
-- 'tenure.autonomy_change' / 'tenure.config_change', governance.sql.change_mark).
-- The owner (migrations, fixtures) is exempt: it could drop these triggers anyway.
CREATE OR REPLACE FUNCTION tenure_is_owner(tbl text) RETURNS boolean AS $$
    SELECT pg_has_role(current_user, (SELECT tableowner FROM pg_tables
                                      WHERE schemaname = current_schema()
                                      AND tablename = tbl), 'MEMBER');
$$ LANGUAGE sql STABLE;

CREATE OR REPLACE FUNCTION tenure_marked(name text) RETURNS bigint AS $$
    SELECT NULLIF(current_setting(name, true), '')::bigint;
$$ LANGUAGE sql STABLE;

CREATE OR REPLACE FUNCTION console_toolgrant_guarded() RETURNS trigger AS $$
BEGIN
    IF tenure_is_owner(TG_TABLE_NAME) THEN
        RETURN COALESCE(NEW, OLD);
    END IF;
    IF TG_OP = 'DELETE' THEN
        IF NOT EXISTS (SELECT 1 FROM console_configchange c
                       WHERE c.id = tenure_marked('tenure.config_change')
                       AND c.workflow_id = OLD.workflow_id AND c.tool = OLD.tool) THEN
            RAISE EXCEPTION 'a tool grant is removed only through change control';
        END IF;
        RETURN OLD;
    END IF;
    IF TG_OP = 'INSERT' OR NEW.caps IS DISTINCT FROM OLD.caps
        OR NEW.enabled IS DISTINCT FROM OLD.enabled OR NEW.tool IS DISTINCT FROM OLD.tool
        OR NEW.workflow_id IS DISTINCT FROM OLD.workflow_id THEN
        IF NOT EXISTS (SELECT 1 FROM console_configchange c
                       WHERE c.id = tenure_marked('tenure.config_change')
                       AND c.workflow_id = NEW.workflow_id AND c.tool = NEW.tool) THEN
            RAISE EXCEPTION 'a tool grant and its caps change only through change control';
        END IF;
    END IF;
    IF TG_OP = 'INSERT' AND NEW.autonomy_level NOT IN ('off', 'shadow') THEN
        RAISE EXCEPTION 'a new tool grant starts in shadow mode (it asked for %%)', NEW.autonomy_level;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.autonomy_level IS DISTINCT FROM OLD.autonomy_level THEN
        IF NOT EXISTS (SELECT 1 FROM console_autonomychange a
                       WHERE a.id = tenure_marked('tenure.autonomy_change')
                       AND a.grant_id = NEW.id AND a.to_level = NEW.autonomy_level
                       AND a.status IN ('requested', 'applied')) THEN
            RAISE EXCEPTION 'a tool''s level changes only through an autonomy change';
        END IF;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS console_toolgrant_guarded ON console_toolgrant;
CREATE TRIGGER console_toolgrant_guarded
    BEFORE INSERT OR UPDATE OR DELETE ON console_toolgrant
    FOR EACH ROW EXECUTE FUNCTION console_toolgrant_guarded();

CREATE OR REPLACE FUNCTION console_workflow_guarded() RETURNS trigger AS $$
BEGIN
    IF tenure_is_owner(TG_TABLE_NAME) THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF NEW.autonomy_level NOT IN ('off', 'shadow') THEN
            RAISE EXCEPTION 'a new workflow starts in shadow mode (it asked for %%)', NEW.autonomy_level;
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.autonomy_level IS DISTINCT FROM OLD.autonomy_level THEN
        IF NOT EXISTS (SELECT 1 FROM console_autonomychange a
                       WHERE a.id = tenure_marked('tenure.autonomy_change')
                       AND a.workflow_id = NEW.id AND a.grant_id IS NULL
                       AND a.to_level = NEW.autonomy_level
                       AND a.status IN ('requested', 'applied')) THEN
            RAISE EXCEPTION 'a workflow''s level changes only through an autonomy change';
        END IF;
    END IF;
    IF (NEW.policy, NEW.trusted_fields, NEW.gate_min_decisions, NEW.gate_min_agreement,
        NEW.gate_min_item_agreement, NEW.gate_min_coverage, NEW.gate_window_days,
        NEW.gate_critical_lookback, NEW.gate_counts_imported, NEW.gate_min_supervised_decisions,
        NEW.agreement_floor, NEW.tool_error_budget, NEW.sample_rate, NEW.max_tool_calls,
        NEW.max_tokens, NEW.max_seconds, NEW.max_cost_usd, NEW.loop_threshold,
        NEW.daily_budget_usd, NEW.cost_target_usd, NEW.model_small, NEW.model_large)
       IS DISTINCT FROM
       (OLD.policy, OLD.trusted_fields, OLD.gate_min_decisions, OLD.gate_min_agreement,
        OLD.gate_min_item_agreement, OLD.gate_min_coverage, OLD.gate_window_days,
        OLD.gate_critical_lookback, OLD.gate_counts_imported, OLD.gate_min_supervised_decisions,
        OLD.agreement_floor, OLD.tool_error_budget, OLD.sample_rate, OLD.max_tool_calls,
        OLD.max_tokens, OLD.max_seconds, OLD.max_cost_usd, OLD.loop_threshold,
        OLD.daily_budget_usd, OLD.cost_target_usd, OLD.model_small, OLD.model_large) THEN
        IF NOT EXISTS (SELECT 1 FROM console_configchange c
                       WHERE c.id = tenure_marked('tenure.config_change')
                       AND c.workflow_id = NEW.id) THEN
            RAISE EXCEPTION 'a workflow''s policy, thresholds and budgets change only through change control';
        END IF;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS console_workflow_guarded ON console_workflow;
CREATE TRIGGER console_workflow_guarded
    BEFORE INSERT OR UPDATE ON console_workflow
    FOR EACH ROW EXECUTE FUNCTION console_workflow_guarded();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS console_toolgrant_guarded ON console_toolgrant;
DROP FUNCTION IF EXISTS console_toolgrant_guarded();
DROP TRIGGER IF EXISTS console_workflow_guarded ON console_workflow;
DROP FUNCTION IF EXISTS console_workflow_guarded();
DROP FUNCTION IF EXISTS tenure_marked(text);
DROP FUNCTION IF EXISTS tenure_is_owner(text);
"""


def forward(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("governance", "0003_audit_keyed_chain_and_triggers")]

    operations = [migrations.RunPython(forward, backward)]
