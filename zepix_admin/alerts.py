"""Alerts for operators: stored, logged, and posted to a webhook when one is configured."""

import json
import logging
import urllib.request

from django.db import transaction
from django.utils import timezone

from zepix_admin.models import Alert

logger = logging.getLogger("zepix.alerts")


def raise_alert(source: str, subject: str, message: str, level: str = Alert.Level.WARNING,
                webhook_url: str = "") -> Alert:
    """Store an alert and post it to the webhook, unless one about the same subject is still
    open: that one then carries the latest message, and nobody is paged twice."""
    existing = Alert.objects.filter(source=source, subject=subject, acknowledged_at__isnull=True).first()
    if existing:
        if existing.message != message:
            existing.message = message
            existing.save(update_fields=["message"])
        return existing
    alert = Alert.objects.create(source=source, subject=subject, message=message, level=level)
    logger.warning("ALERT [%s] %s/%s: %s", level, source, subject, message)
    if webhook_url:
        transaction.on_commit(lambda: post_webhook(webhook_url, alert))
    return alert


def post_webhook(url: str, alert: Alert) -> bool:
    body = json.dumps({
        "source": alert.source, "subject": alert.subject, "level": alert.level,
        "message": alert.message, "created_at": alert.created_at.isoformat(),
    }).encode()  # fmt: skip
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return 200 <= response.status < 300
    except OSError as error:
        logger.error("Could not post alert to webhook %s: %s", url, error)
        return False


def acknowledge(alert: Alert, actor: str) -> None:
    if alert.acknowledged_at is None:
        alert.acknowledged_at = timezone.now()
        alert.acknowledged_by = actor
        alert.save(update_fields=["acknowledged_at", "acknowledged_by"])


def open_alerts():
    return Alert.objects.filter(acknowledged_at__isnull=True)
