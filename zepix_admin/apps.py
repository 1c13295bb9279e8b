from django.apps import AppConfig


class ZepixAdminConfig(AppConfig):
    name = "zepix_admin"
    verbose_name = "Zepix Admin"

    def ready(self):
        from zepix_admin import signals  # noqa: F401 - connects the audit of logins and admin changes
