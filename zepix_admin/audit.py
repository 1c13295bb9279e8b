"""The audit log: every change made through the dashboard, the API, a command or a task."""

import logging

from zepix_admin.models import AuditEntry

logger = logging.getLogger("zepix.audit")


def record(actor: str, via: str, action: str, target: str = "", **details) -> AuditEntry:
    entry = AuditEntry.objects.create(actor=actor, via=via, action=action, target=target, details=details)
    logger.info("%s via %s: %s %s", actor, via, action, target)
    return entry
