"""The declared plugins as the running Django project sees them."""

from pathlib import Path

from django.conf import settings

from plugins_app import registry


class UnknownPlugin(LookupError):
    pass


def plugin_ids() -> list[str]:
    return list(settings.PLUGIN_IDS)


def check_declared(plugin_id) -> str:
    registry.check_plugin_id(plugin_id)
    if plugin_id not in settings.PLUGIN_IDS:
        raise UnknownPlugin(f"Unknown plugin {plugin_id!r}; declared plugins: {', '.join(settings.PLUGIN_IDS)}.")
    return plugin_id


def database_path(plugin_id: str) -> Path:
    """The plugin's SQLite file, as its database alias has it (the test database under tests)."""
    return Path(settings.DATABASES[registry.alias_for(check_declared(plugin_id))]["NAME"])
