from django.db import migrations

from plugins_app.sqlite import IDENTITY_TABLE_SQL, STAMP_IDENTITY_SQL


class Migration(migrations.Migration):
    """Every plugin database carries an identity that a restore or a backup copy changes,
    so the sync can tell a replaced file from the one it synced last (see sync_app.sync)."""

    # The previous migration is this plugin's own app's, known only per instance.
    def __init__(self, name, app_label):
        super().__init__(name, app_label)
        self.dependencies = [(app_label, "0001_initial")]

    operations = [
        migrations.RunSQL(sql=[IDENTITY_TABLE_SQL, STAMP_IDENTITY_SQL], reverse_sql=["DROP TABLE zepix_identity"]),
    ]
