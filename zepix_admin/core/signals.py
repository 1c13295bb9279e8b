"""Changes and logins that happen outside our own views, into the audit log: logins, failed
logins and logouts (any login form), and every change made in the Django admin (users,
groups, tokens), from the admin's own record of it."""

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_save
from django.dispatch import receiver

from zepix_admin.core import audit

ADMIN_ACTIONS = {ADDITION: "add", CHANGE: "change", DELETION: "delete"}


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR", "") if request is not None else ""


@receiver(user_logged_in)
def audit_login(sender, request, user, **kwargs):
    audit.record(user.get_username(), "web", "auth.login", user.get_username(), address=client_address(request))


@receiver(user_login_failed)
def audit_failed_login(sender, credentials, request=None, **kwargs):
    username = str(credentials.get("username", ""))[:150]
    audit.record("anonymous", "web", "auth.login_failed", username, address=client_address(request))


@receiver(user_logged_out)
def audit_logout(sender, request, user, **kwargs):
    if user is not None:
        audit.record(user.get_username(), "web", "auth.logout", user.get_username())


@receiver(post_save, sender=LogEntry)
def audit_admin_change(sender, instance: LogEntry, created: bool, **kwargs):
    if created:
        what = f"{instance.content_type.app_label}.{instance.content_type.model}" if instance.content_type else ""
        audit.record(
            instance.user.get_username(),
            "admin",
            f"admin.{ADMIN_ACTIONS.get(instance.action_flag, 'other')}",
            f"{what} {instance.object_repr}"[:200],
            change=instance.get_change_message(),
        )
