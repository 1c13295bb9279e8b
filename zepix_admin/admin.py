from django.contrib import admin

from zepix_admin.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are made by `manage.py create_token` (the raw token is shown once); here an
    admin sees them and revokes one by deleting it."""

    list_display = ["name", "user", "created_at", "last_used_at"]
    readonly_fields = ["name", "user", "token_hash", "created_at", "last_used_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
