from django.apps import AppConfig


class ZepixAdminConfig(AppConfig):
    name = "zepix_admin"
    verbose_name = "Zepix Admin"
