"""One Django app per declared plugin, made from the single schema in ``plugins_app.models``.

``INSTALLED_APPS`` lists ``plugins_app.plugin_apps.<plugin_id>``; the module-level
``__getattr__`` below answers with an AppConfig for that plugin whose label (and database
alias) is ``plugin_<plugin_id>``. Its models are concrete subclasses of the abstract
schema, and its migrations are the shared ones in ``plugins_app.plugin_migrations``.
"""

import copy
import importlib
import sys
import threading
import types
from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.apps import apps as global_apps
from django.conf import settings
from django.db import connections
from django.urls import clear_url_caches

from plugins_app import registry

_configs: dict[str, type[AppConfig]] = {}


class PluginAppConfig(AppConfig):
    plugin_id: str = ""
    default_auto_field = "django.db.models.BigAutoField"
    path = str(Path(__file__).resolve().parent)

    def import_models(self):
        super().import_models()
        assert self.module is not None  # Django imported it before asking for models
        build_models(self.label, self.module)


def build_models(app_label: str, module: types.ModuleType) -> None:
    """Concrete models of the plugin schema in this app, importable as <module>.<ModelName>."""
    from plugins_app.models import PLUGIN_SCHEMA

    for abstract in PLUGIN_SCHEMA:
        name = abstract.__name__
        if hasattr(module, name):
            continue
        meta = type("Meta", (abstract.Meta,), {"app_label": app_label})
        setattr(module, name, type(name, (abstract,), {"__module__": module.__name__, "Meta": meta}))


_joining = threading.RLock()


def add_plugin_app(plugin_id: str) -> None:
    """A plugin declared while this process runs joins it: its database alias, its app and
    models (what settings gives the others at start-up), and its admin pages. No restart."""
    with _joining:
        if plugin_id in settings.PLUGIN_IDS:
            return
        alias = registry.alias_for(plugin_id)
        database = copy.deepcopy(connections.settings["default"])
        database.update(ENGINE="plugins_app.db_backend", NAME=registry.database_path(settings.DATA_DIR, plugin_id))
        database["TEST"] = {**database.get("TEST", {}), "NAME": None}
        connections.settings[alias] = database
        settings.DATABASES.setdefault(alias, database)
        settings.MIGRATION_MODULES[alias] = "plugins_app.plugin_migrations"
        config_class = __getattr__(plugin_id)
        config = config_class(config_class.name, sys.modules[config_class.name])
        config.apps = global_apps
        global_apps.app_configs[config.label] = config
        config.import_models()
        global_apps.clear_cache()
        settings.PLUGIN_IDS.append(plugin_id)
    show_in_admin(plugin_id, True)


def show_in_admin(plugin_id: str, shown: bool) -> None:
    """Register (or unregister: an archived plugin) a plugin's admin pages, and rebuild the URLs
    they are served at (the admin's URL patterns are made when the URLconf is imported)."""
    from django.contrib import admin

    from plugins_app.admin import register_plugin

    with _joining:
        model = models_for(plugin_id)["Trade"]
        if admin.site.is_registered(model) == shown:
            return
        if shown:
            register_plugin(plugin_id)
        else:
            admin.site.unregister([m for m in models_for(plugin_id).values() if admin.site.is_registered(m)])
        importlib.reload(importlib.import_module(settings.ROOT_URLCONF))
        clear_url_caches()


def models_for(plugin_id: str) -> dict[str, Any]:
    """The concrete models of one plugin, by class name: ``models_for(pid)["Trade"]``."""
    config = global_apps.get_app_config(registry.alias_for(plugin_id))
    return {model.__name__: model for model in config.get_models()}


def __getattr__(plugin_id: str) -> type[AppConfig]:
    if not registry.PLUGIN_ID_PATTERN.fullmatch(plugin_id):
        raise AttributeError(f"module {__name__!r} has no attribute {plugin_id!r}")
    if plugin_id not in _configs:
        # Django imports an app's module by name; each plugin app gets an empty one.
        module_name = f"{__name__}.{plugin_id}"
        sys.modules.setdefault(module_name, types.ModuleType(module_name))
        _configs[plugin_id] = type(
            f"PluginAppConfig_{plugin_id}",
            (PluginAppConfig,),
            {
                "name": module_name,
                "label": registry.alias_for(plugin_id),
                "verbose_name": f"Plugin {plugin_id}",
                "plugin_id": plugin_id,
            },
        )
    return _configs[plugin_id]
