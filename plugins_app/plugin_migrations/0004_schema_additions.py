from django.db import migrations

from plugins_app import schema


def add_what_is_missing(apps, schema_editor):
    """The console's additions as they stand now (plugins_app.schema.ADDITIONS: idempotent)."""
    connection = schema_editor.connection.connection
    connection.execute("DROP INDEX IF EXISTS profit_chains_status_idx")  # replaced by (status, created_at)
    schema.upgrade(connection)


class Migration(migrations.Migration):
    # The previous migration is this plugin's own app's, known only per instance.
    def __init__(self, name, app_label):
        super().__init__(name, app_label)
        self.dependencies = [(app_label, "0003_seed_schema")]

    operations = [migrations.RunPython(add_what_is_missing, migrations.RunPython.noop)]
