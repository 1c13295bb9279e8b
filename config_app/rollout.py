"""Acknowledged rollout: which running subscribers have which version of a scope."""

from datetime import timedelta

from django.utils import timezone

from config_app.models import Subscriber
from config_app.stream import KEEPALIVE_SECONDS

GONE_AFTER = timedelta(seconds=3 * KEEPALIVE_SECONDS)


def record_ack(scope: str, name: str, version: int, ok: bool, error: str = "") -> Subscriber:
    """A subscriber applied a version (ok) or failed to; when it failed it keeps running the
    version it last applied, so that one stays recorded."""
    now = timezone.now()
    subscriber, _ = Subscriber.objects.get_or_create(name=name[:100], scope=scope, defaults={"last_seen_at": now})
    subscriber.last_seen_at = now
    if ok:
        subscriber.applied_version, subscriber.status, subscriber.error = version, Subscriber.Status.OK, ""
    else:
        subscriber.status, subscriber.error = Subscriber.Status.ERROR, f"version {version}: {error}"[:2000]
    # Not `connected`: the subscriber's stream marks that, maybe between this read and this write
    # (a report and a stream opened at once; the whole row saved put `connected` back to False).
    subscriber.save(update_fields=["last_seen_at", "applied_version", "status", "error"])
    return subscriber


def rollout(scope: str, latest_version: int) -> list[dict]:
    now = timezone.now()
    entries = []
    for subscriber in Subscriber.objects.filter(scope__in=[scope, "*"]).order_by("name"):
        connected = subscriber.connected and now - subscriber.last_seen_at < GONE_AFTER
        if subscriber.status == Subscriber.Status.ERROR:
            state = "failed"
        elif subscriber.applied_version == latest_version:
            state = "current"
        elif subscriber.applied_version is None:
            state = "pending"
        else:
            state = "behind"
        entries.append(
            {
                "name": subscriber.name,
                "scope": subscriber.scope,
                "connected": connected,
                "applied_version": subscriber.applied_version,
                "state": state,
                "error": subscriber.error,
                "last_seen_at": subscriber.last_seen_at.isoformat(),
            }
        )
    return entries
