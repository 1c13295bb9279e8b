"""The SQLite backend of every plugin database alias.

Django's own SQLite backend with three differences, so that one broken plugin database
fails alone and is never made behind the operator's back:

- It never creates a missing file (``mode=rw``): a missing database is reported as
  missing, where Django would silently make an empty one ("no such table: trades").
  Only ``setup`` on a new install and ``startplugin`` create plugin databases
  (``plugins_app.sqlite.create``).
- Nothing at start-up connects: Django's system checks ask every alias whether it
  supports JSON by running a query, so one corrupt plugin file stopped every command.
  The answer is fixed, as for the central database (``DatabaseFeatures``).
- Every database error says which plugin it came from (``error.plugin_id``), so a page or
  command can name the broken plugin instead of answering 500.
"""

import sqlite3
from pathlib import Path

from django.db.backends.sqlite3 import base, creation
from django.db.utils import DatabaseError, DatabaseErrorWrapper

from plugins_app import registry
from plugins_app.sqlite import create, writable_uri
from zepix_admin.core.sqlite_backend.base import DatabaseFeatures


class DatabaseCreation(creation.DatabaseCreation):
    def _create_test_db(self, verbosity, autoclobber, keepdb=False):
        name = super()._create_test_db(verbosity, autoclobber, keepdb)  # type: ignore[misc]  # private: not in the stubs
        if not self.is_in_memory_db(name):
            create(name)
        return name


class PluginErrorWrapper(DatabaseErrorWrapper):
    def __exit__(self, exc_type, exc_value, traceback):
        try:
            super().__exit__(exc_type, exc_value, traceback)
        except DatabaseError as error:
            # What every plugin database error carries (plugins_app.middleware, health, commands read it).
            error.plugin_id = registry.plugin_id_for_alias(self.wrapper.alias)  # type: ignore[attr-defined]
            raise


class DatabaseWrapper(base.DatabaseWrapper):
    features_class = DatabaseFeatures
    creation_class = DatabaseCreation

    @property
    def wrap_database_errors(self):
        return PluginErrorWrapper(self)

    def get_connection_params(self):
        params = super().get_connection_params()
        if not self.is_in_memory_db():
            params["database"] = writable_uri(params["database"])
        return params

    def get_new_connection(self, conn_params):
        path = Path(self.settings_dict["NAME"])
        if not self.is_in_memory_db() and not path.exists():
            raise sqlite3.OperationalError(f"the database file is missing ({path.name})")
        return super().get_new_connection(conn_params)
