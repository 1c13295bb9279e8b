from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The operations kernel: accounts and roles, tokens, audit, alerts, the worker's heartbeat.

    Its label stays ``zepix_admin``: its tables (``zepix_admin_alert``, ``zepix_admin_heartbeat``...)
    and migration history were made under that name before the kernel had its own package."""

    name = "zepix_admin.core"
    label = "zepix_admin"
    verbose_name = "Zepix Admin"

    def ready(self):
        from zepix_admin.core import signals  # noqa: F401 - connects the audit of logins and admin changes
