"""The central copy on SQLite took a plugin's times as the bot wrote them (2026-11-27T09:00:00,
...Z, ...+00:00): compared as text, they sorted out of time order and a page link skipped
them. The sync now writes them as Django does (plugins_app.schema.DJANGO_TIME_SQL); the copies made
before are rewritten once here. On PostgreSQL the columns are typed: nothing to do."""

from django.db import migrations

from plugins_app.schema import DJANGO_TIME_SQL

TIMES = {
    "aggregated_trades": ("entry_time", "exit_time"),
    "aggregated_chains": ("created_at", "updated_at"),
    "aggregated_chain_levels": ("executed_at",),
    "aggregated_plugin_info": ("last_started", "last_heartbeat"),
}


def times_as_django_writes_them(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    with schema_editor.connection.cursor() as cursor:
        for table, columns in TIMES.items():
            for column in columns:
                written = DJANGO_TIME_SQL.replace("{}", column)
                cursor.execute(f"UPDATE {table} SET {column} = {written} WHERE {column} IS NOT {written}")


class Migration(migrations.Migration):
    dependencies = [
        ("sync_app", "0011_jobstate_relaunched"),
    ]

    operations = [
        migrations.RunPython(times_as_django_writes_them, migrations.RunPython.noop),
    ]
