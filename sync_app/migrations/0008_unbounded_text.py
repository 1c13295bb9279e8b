"""Text the bot writes without a length limit (symbols, chain ids, close reasons, versions) is
kept without one centrally: PostgreSQL enforced the old max_length and a trade with a long
symbol stopped its plugin's sync. SQLite enforces no length: its tables stay as they are
(altering them would copy every trade)."""

from django.db import migrations, models

COLUMNS = [
    ("aggregated_chains", "chain_id"),
    ("aggregated_chain_levels", "chain_id"),
    ("aggregated_plugin_info", "version"),
    ("aggregated_trades", "close_reason"),
    ("aggregated_trades", "symbol"),
    ("trade_totals", "symbol"),
]


def to_text_on_postgresql(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, column in COLUMNS:  # varchar to text: no rewrite of the table, its indexes kept
        schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE text")


class Migration(migrations.Migration):
    dependencies = [
        ("sync_app", "0007_trade_totals_empty_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(to_text_on_postgresql, migrations.RunPython.noop)],
            state_operations=[
                migrations.AlterField(model_name="aggregatedchain", name="chain_id", field=models.TextField()),
                migrations.AlterField(
                    model_name="aggregatedchainlevel", name="chain_id", field=models.TextField(null=True)
                ),
                migrations.AlterField(
                    model_name="aggregatedplugininfo", name="version", field=models.TextField(null=True)
                ),
                migrations.AlterField(
                    model_name="aggregatedtrade", name="close_reason", field=models.TextField(null=True)
                ),
                migrations.AlterField(model_name="aggregatedtrade", name="symbol", field=models.TextField()),
                migrations.AlterField(model_name="tradetotals", name="symbol", field=models.TextField()),
            ],
        ),
    ]
