from django.db import migrations

from plugins_app import schema


def refuse_values_not_held(apps, schema_editor):
    """The triggers that refuse a value the console cannot hold (plugins_app.schema.value_triggers),
    on databases made before them. Rows already there are kept as they are."""
    schema.upgrade(schema_editor.connection.connection)


class Migration(migrations.Migration):
    # The previous migration is this plugin's own app's, known only per instance.
    def __init__(self, name, app_label):
        super().__init__(name, app_label)
        self.dependencies = [(app_label, "0004_schema_additions")]

    operations = [migrations.RunPython(refuse_values_not_held, migrations.RunPython.noop)]
