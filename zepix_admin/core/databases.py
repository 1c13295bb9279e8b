from pathlib import Path

from django.conf import settings

from zepix_admin.core.errors import NotFound


def database_file(alias: str) -> Path:
    """The SQLite file behind a database alias (the test database's under tests): the one way
    from an alias to its path, for the sync, backups, health and the config stream."""
    if alias not in settings.DATABASES:
        raise NotFound(f"Unknown database {alias!r}.")
    return Path(settings.DATABASES[alias]["NAME"])
