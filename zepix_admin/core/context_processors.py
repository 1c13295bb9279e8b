from django.utils.functional import SimpleLazyObject

from zepix_admin.core import worker
from zepix_admin.core.access import ADMIN, OPERATOR, has_role, role_of
from zepix_admin.core.alerts import open_alerts


def navigation(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "role": role_of(user),
        "can_operate": has_role(user, OPERATOR),
        "is_admin_role": has_role(user, ADMIN),
        "open_alert_count": open_alerts().count(),
        # Read only by the pages that show it (the task queue asked, and the heartbeat).
        "worker": SimpleLazyObject(worker.state),
    }
