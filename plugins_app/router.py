"""Keeps every plugin's rows in that plugin's own SQLite file.

Each plugin is an app labelled ``plugin_<id>`` whose database alias is the same string,
so routing is a lookup, not a table. Everything else lives in ``default`` (central).
Isolation is enforced in three places, each raising ``CrossDatabaseError`` naming both
sides: the router (relations), the plugin querysets (``.using()`` and every query), and
plugin model saves and deletes with an explicit ``using``.
"""

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from django.db import models

from plugins_app.registry import ALIAS_PREFIX


class CrossDatabaseError(Exception):
    pass


def home_alias(model) -> str:
    label = model._meta.app_label
    return label if label.startswith(ALIAS_PREFIX) else "default"


def check_alias(model, alias: str | None) -> None:
    home = home_alias(model)
    if alias is not None and alias != home and (home != "default" or alias.startswith(ALIAS_PREFIX)):
        raise CrossDatabaseError(
            f"{model._meta.label} lives in database {home!r}, not {alias!r}: a plugin's rows stay in its own database."
        )


class PluginDatabaseRouter:
    def db_for_read(self, model, **hints):
        return home_alias(model)

    def db_for_write(self, model, **hints):
        return home_alias(model)

    def allow_relation(self, obj1, obj2, **hints):
        db1, db2 = home_alias(type(obj1)), home_alias(type(obj2))
        if db1 != db2:
            raise CrossDatabaseError(
                f"Cannot relate {type(obj1)._meta.label} (database {db1!r}) "
                f"to {type(obj2)._meta.label} (database {db2!r})."
            )
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        home = app_label if app_label.startswith(ALIAS_PREFIX) else "default"
        return db == home


class PluginQuerySet(models.QuerySet):
    @property
    def db(self):
        alias = super().db
        check_alias(self.model, alias)
        return alias

    def aggregate(self, *args, **kwargs):
        """SQLite answers MIN or MAX of an indexed column with one index lookup only when the
        query asks for that single aggregate; MIN and MAX together scan the whole table (90 ms
        on a million trades, for the admin's date hierarchy). So ask for them one at a time."""
        if not args and len(kwargs) > 1 and all(type(value) in (models.Min, models.Max) for value in kwargs.values()):
            result = {}
            for name, value in kwargs.items():
                result.update(super().aggregate(**{name: value}))
            return result
        return super().aggregate(*args, **kwargs)

    def datetimes(self, field_name, kind, order="ASC", tzinfo=None):
        """The distinct years, months or days of an indexed datetime field, found by seeking
        from one period to the next (a few index lookups) instead of truncating every row.
        The admin's date hierarchy asks for these on tables of a million trades."""
        if kind not in ("year", "month", "day"):
            return super().datetimes(field_name, kind, order, tzinfo)
        unordered = self.order_by()
        found = []
        first = unordered.aggregate(first=models.Min(field_name))["first"]
        while first is not None:
            start = _truncate(first.astimezone(UTC), kind)
            found.append(start)
            first = unordered.filter(**{f"{field_name}__gte": _next_period(start, kind)}).aggregate(
                first=models.Min(field_name)
            )["first"]
        return found if order == "ASC" else found[::-1]


def _truncate(moment: datetime, kind: str) -> datetime:
    if kind == "year":
        return moment.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    if kind == "month":
        return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _next_period(start: datetime, kind: str) -> datetime:
    if kind == "year":
        return start.replace(year=start.year + 1)
    if kind == "month":
        return start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
    return start + timedelta(days=1)


# The mixin's super() is the model's (it is always mixed into a Model, before it).
if TYPE_CHECKING:
    _ModelBase = models.Model
else:
    _ModelBase = object


class PluginModelMixin(_ModelBase):
    def save_base(self, *args, **kwargs):
        check_alias(type(self), kwargs.get("using"))  # Model.save passes it by name
        return super().save_base(*args, **kwargs)

    def delete(self, using=None, keep_parents=False):
        check_alias(type(self), using)
        return super().delete(using=using, keep_parents=keep_parents)
