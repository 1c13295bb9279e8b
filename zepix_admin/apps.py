from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The glue on top: settings, URLs, the dashboard pages and the workflow commands."""

    name = "zepix_admin"
    label = "console"
    verbose_name = "Zepix console"
