"""The audit log keyed (each event names the HMAC key that sealed it) and held by the
database: events stay append-only (sealing an unsealed row, its content and key id
unchanged, is the one update allowed); a chain's head only moves forward and is never
deleted; neither table can be truncated. (The app's own database role must not own
these tables, or it could drop the triggers: see docker-compose.yml and
``manage.py db_app_role``.)"""

from django.db import migrations, models

FORWARD = """
CREATE OR REPLACE FUNCTION console_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.seq IS NULL AND NEW.seq IS NOT NULL
        AND NEW.hash <> '' AND NEW.prev_hash <> ''
        AND NEW.id = OLD.id AND NEW.chain = OLD.chain
        AND NEW.workflow_id IS NOT DISTINCT FROM OLD.workflow_id
        AND NEW.actor_id IS NOT DISTINCT FROM OLD.actor_id
        AND NEW.actor_label = OLD.actor_label AND NEW.action = OLD.action
        AND NEW.object_type = OLD.object_type AND NEW.object_id = OLD.object_id
        AND NEW.data = OLD.data AND NEW.created_at = OLD.created_at
        AND (NEW.key_id = OLD.key_id OR OLD.key_id = '') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only (%% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION console_auditchain_forward_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.key = OLD.key AND NEW.seq > OLD.seq
        AND NEW.keyed_from_seq = OLD.keyed_from_seq THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'an audit chain head only moves forward (%% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS console_auditchain_forward_only ON console_auditchain;
CREATE TRIGGER console_auditchain_forward_only
    BEFORE UPDATE OR DELETE ON console_auditchain
    FOR EACH ROW EXECUTE FUNCTION console_auditchain_forward_only();

-- Only the tables' owner may truncate them (it could drop this trigger anyway; test
-- databases are emptied this way). The app's role owns no table: see db_app_role.
CREATE OR REPLACE FUNCTION console_audit_no_truncate() RETURNS trigger AS $$
BEGIN
    IF pg_has_role(current_user, (SELECT tableowner FROM pg_tables
                                  WHERE schemaname = TG_TABLE_SCHEMA
                                  AND tablename = TG_TABLE_NAME), 'MEMBER') THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'the audit log cannot be truncated';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS console_auditevent_no_truncate ON console_auditevent;
CREATE TRIGGER console_auditevent_no_truncate
    BEFORE TRUNCATE ON console_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION console_audit_no_truncate();
DROP TRIGGER IF EXISTS console_auditchain_no_truncate ON console_auditchain;
CREATE TRIGGER console_auditchain_no_truncate
    BEFORE TRUNCATE ON console_auditchain
    FOR EACH STATEMENT EXECUTE FUNCTION console_audit_no_truncate();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS console_auditchain_forward_only ON console_auditchain;
DROP FUNCTION IF EXISTS console_auditchain_forward_only();
DROP TRIGGER IF EXISTS console_auditevent_no_truncate ON console_auditevent;
DROP TRIGGER IF EXISTS console_auditchain_no_truncate ON console_auditchain;
DROP FUNCTION IF EXISTS console_audit_no_truncate();
"""


def forward(apps, schema_editor) -> None:
    # Chains that exist now were sealed unkeyed up to their head: keyed from the next.
    AuditChain = apps.get_model("governance", "AuditChain")
    AuditChain.objects.update(keyed_from_seq=models.F("seq") + 1)
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0002_model_prices_gate_criteria_trusted_fields"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="key_id",
            field=models.CharField(
                blank=True,
                help_text="Which audit key sealed it (HMAC); empty for events sealed before keys.",
                max_length=40,
            ),
        ),
        migrations.AddField(
            model_name="auditchain",
            name="keyed_from_seq",
            field=models.PositiveBigIntegerField(
                default=1,
                help_text="From this event on the chain is keyed (HMAC): an unkeyed event "
                "there is a forgery. Set once; the database refuses to change it.",
            ),
        ),
        migrations.RunPython(forward, backward),
    ]
