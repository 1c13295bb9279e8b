from django.db import migrations

from plugins_app import schema


def to_seed_schema(apps, schema_editor):
    """The tables rebuilt in the bot's own schema (the seed's DDL, then the console's additions),
    every row kept: see plugins_app.schema.convert_first_shape."""
    schema.convert_first_shape(schema_editor.connection.connection)


class Migration(migrations.Migration):
    """From here on the plugin tables are the bot's: plugins_app.schema makes and upgrades them
    in SQL, and the models read and write them unmanaged."""

    # The previous migration is this plugin's own app's, known only per instance.
    def __init__(self, name, app_label):
        super().__init__(name, app_label)
        self.dependencies = [(app_label, "0002_identity")]

    operations = [
        migrations.RunPython(to_seed_schema, migrations.RunPython.noop),
        migrations.AlterModelOptions(
            name="chainlevel", options={"managed": False, "ordering": ["chain", "level_number"]}
        ),
        migrations.AlterModelOptions(
            name="dailystats", options={"managed": False, "ordering": ["-date"], "verbose_name_plural": "daily stats"}
        ),
        migrations.AlterModelOptions(
            name="plugininfo",
            options={"managed": False, "verbose_name": "plugin info", "verbose_name_plural": "plugin info"},
        ),
        migrations.AlterModelOptions(name="profitchain", options={"managed": False, "ordering": ["-created_at"]}),
        migrations.AlterModelOptions(name="signal", options={"managed": False, "ordering": ["-received_at"]}),
        migrations.AlterModelOptions(name="trade", options={"managed": False, "ordering": ["-entry_time"]}),
    ]
