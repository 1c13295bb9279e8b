from django.contrib import admin
from django.contrib.admin.apps import AdminConfig

from zepix_admin.core.access import VIEWER, has_role


class ZepixAdminSite(admin.AdminSite):
    """The Django admin, open to every role for inspection (not only to staff accounts)."""

    site_header = "Zepix Admin"
    site_title = "Zepix Admin"
    index_title = "Trade inspection"

    def has_permission(self, request):
        user = request.user
        return user.is_active and (user.is_staff or has_role(user, VIEWER))


class ZepixAdminConfig(AdminConfig):
    default_site = "zepix_admin.core.admin_site.ZepixAdminSite"
