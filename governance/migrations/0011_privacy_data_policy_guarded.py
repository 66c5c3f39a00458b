"""A workflow's data policy (what is personal, how long it is kept) changes only with its
ConfigChange, like its other settings (see 0004): a separate trigger, so the policy's
guard does not rewrite the workflow's. PostgreSQL only."""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION console_workflow_data_policy_guarded() RETURNS trigger AS $$
BEGIN
    IF tenure_is_owner(TG_TABLE_NAME) THEN
        RETURN NEW;
    END IF;
    IF NEW.data_policy IS DISTINCT FROM OLD.data_policy THEN
        IF NOT EXISTS (SELECT 1 FROM console_configchange c
                       WHERE c.id = tenure_marked('tenure.config_change')
                       AND c.workflow_id = NEW.id) THEN
            RAISE EXCEPTION 'a workflow''s data policy changes only through change control';
        END IF;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS console_workflow_data_policy_guarded ON console_workflow;
CREATE TRIGGER console_workflow_data_policy_guarded
    BEFORE UPDATE OF data_policy ON console_workflow
    FOR EACH ROW EXECUTE FUNCTION console_workflow_data_policy_guarded();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS console_workflow_data_policy_guarded ON console_workflow;
DROP FUNCTION IF EXISTS console_workflow_data_policy_guarded();
"""


def forward(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("governance", "0010_privacy_data_subjects")]

    operations = [migrations.RunPython(forward, backward)]
