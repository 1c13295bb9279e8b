"""Users, roles and tokens in the Django admin, where the admin role may manage them, but
never above itself: only superusers grant superuser status or the admin role, and a token's
user never gets the admin role (``access.role_of`` caps it too, whatever group is edited)."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group

from zepix_admin.core.access import ADMIN
from zepix_admin.core.models import ApiToken

User = get_user_model()


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


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class RoleAwareUserAdmin(UserAdmin):
    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            fields += ["is_superuser", "user_permissions"]
        return fields

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False  # an admin-role user cannot edit a superuser (nor take over its account)
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "groups":
            editing = request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
            is_token = editing is not None and ApiToken.objects.filter(user_id=editing).exists()
            if not request.user.is_superuser or is_token:
                kwargs["queryset"] = Group.objects.exclude(name=ADMIN)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


@admin.register(Group)
class RoleAwareGroupAdmin(GroupAdmin):
    def get_readonly_fields(self, request, obj=None):
        if not request.user.is_superuser:
            return ["name", "permissions"]  # what a role may do is decided by superusers only
        return super().get_readonly_fields(request, obj)
