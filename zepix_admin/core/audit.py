"""The audit log: every change made through the dashboard, the API, a command or a task."""

import logging

from zepix_admin.core.access import actor_name
from zepix_admin.core.models import AuditEntry

logger = logging.getLogger("zepix.audit")


def record(actor: str, via: str, action: str, target: str = "", **details) -> AuditEntry:
    entry = AuditEntry.objects.create(actor=actor, via=via, action=action, target=target, details=details)
    logger.info("%s via %s: %s %s", actor, via, action, target)
    return entry


def record_request(request, action: str, target: str = "", **details) -> AuditEntry:
    """What the request's user did, via the API (a token) or the web (a session)."""
    via = "api" if getattr(request, "authenticated_by_token", False) else "web"
    return record(actor_name(request.user), via, action, target, **details)
