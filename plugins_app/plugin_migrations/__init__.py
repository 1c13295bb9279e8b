"""Migrations shared by every plugin app (MIGRATION_MODULES points each one here).

Django instantiates each migration once per plugin app with that app's label, so
relations are written without an app label ("profitchain") and a later migration
depends on its predecessor in its own app through ``dependencies_in_same_app``.
"""
