"""On PostgreSQL, a trigger NOTIFYs workers of queued runs and waiters of finished ones.

The notification goes out when the row's transaction commits, with no extra round trip for
the writer, and every writer is covered: the API, the pages, the admin, the worker's recovery.
Other databases have no such channel (see executions/notify.py).
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION integr8s_notify() RETURNS trigger AS $$
BEGIN
    IF NEW.status = 'queued' THEN
        PERFORM pg_notify('integr8s_queued', NEW.execution_id::text);
    ELSIF NEW.status IN ('completed', 'failed', 'timeout', 'cancelled') THEN
        PERFORM pg_notify('integr8s_finished', NEW.execution_id::text);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER integr8s_notify_insert AFTER INSERT ON executions_execution
    FOR EACH ROW EXECUTE FUNCTION integr8s_notify();
CREATE TRIGGER integr8s_notify_update AFTER UPDATE OF status ON executions_execution
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION integr8s_notify();
"""

DROP = """
DROP TRIGGER IF EXISTS integr8s_notify_update ON executions_execution;
DROP TRIGGER IF EXISTS integr8s_notify_insert ON executions_execution;
DROP FUNCTION IF EXISTS integr8s_notify();
"""


def run_on_postgresql(sql):
    def operation(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return operation


class Migration(migrations.Migration):
    dependencies = [("executions", "0003_anonymous_idempotency")]

    operations = [migrations.RunPython(run_on_postgresql(CREATE), run_on_postgresql(DROP))]
