"""The central copy on SQLite took a plugin's times as the bot wrote them (2026-11-27T09:00:00,
...Z, ...+00:00): compared as text, they sorted out of time order and a page link skipped
them. The sync now writes them as Django does (sync_app.sync.SQLITE_TIME); the copies made
before are rewritten once here. On PostgreSQL the columns are typed: nothing to do."""

from django.db import migrations

# sync_app.sync.SQLITE_TIME as it was written with this migration (a migration keeps its own).
TIME_TEXT = (
    "(CASE WHEN {} IS NULL THEN NULL "
    "WHEN length({}) = 19 THEN CASE substr({}, 11, 1) WHEN ' ' THEN {} "
    "ELSE substr({}, 1, 10) || ' ' || substr({}, 12) END "
    "WHEN length({}) = 26 AND substr({}, 11, 1) = ' ' AND substr({}, 26) BETWEEN '0' AND '9' "
    "AND substr({}, 21) != '000000' THEN {} "
    "WHEN length({}) = 23 AND substr({}, 11, 1) = ' ' AND substr({}, 23) BETWEEN '0' AND '9' "
    "THEN CASE substr({}, 21) WHEN '000' THEN substr({}, 1, 19) ELSE {} || '000' END "
    "ELSE substr({}, 1, 10) || ' ' || CASE WHEN substr({}, 17, 1) = ':' THEN substr({}, 12, 8) "
    "ELSE substr({}, 12, 5) || ':00' END || CASE WHEN substr({}, 20, 1) = '.' THEN coalesce(nullif('.' || substr("
    "rtrim(replace(replace(substr({}, 21), '+00:00', ''), '-00:00', ''), 'Z') || '000000', 1, 6), '.000000'), '') "
    "ELSE '' END END)"
)
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
                written = TIME_TEXT.replace("{}", column)
                cursor.execute(f"UPDATE {table} SET {column} = {written} WHERE {column} IS NOT {written}")


class Migration(migrations.Migration):
    dependencies = [
        ("sync_app", "0011_jobstate_relaunched"),
    ]

    operations = [
        migrations.RunPython(times_as_django_writes_them, migrations.RunPython.noop),
    ]
