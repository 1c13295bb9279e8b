"""Alerts for operators: the one path every alert takes, whoever raises it.

An alert is about one condition (a source and a subject: "sync"/"combined_v3"). Raising it
again while it is unresolved counts it and updates its message instead of paging anyone
twice; it resolves itself when the condition clears (``resolve_alert``). Each new alert is
stored, logged and posted to the webhook of the global config (``sync.alert_webhook_url``)
when its level reaches ``alerts.webhook_min_level``, by a thread of the process's own.
"""

import http.client
import ipaddress
import json
import logging
import os
import socket
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from zepix_admin.core.models import Alert

logger = logging.getLogger("zepix.alerts")
LEVELS = (Alert.Level.WARNING, Alert.Level.CRITICAL)


def raise_alert(source: str, subject: str, message: str, level: str = Alert.Level.WARNING) -> Alert:
    now = timezone.now()
    existing = unresolved().filter(source=source, subject=subject).first()
    if existing:
        existing.message, existing.last_seen_at, existing.count = message, now, existing.count + 1
        if LEVELS.index(level) > LEVELS.index(existing.level):
            existing.level = level
        existing.save(update_fields=["message", "last_seen_at", "count", "level"])
        return existing
    alert = Alert.objects.create(source=source, subject=subject, message=message, level=level, last_seen_at=now)
    logger.warning("ALERT [%s] %s/%s: %s", level, source, subject, message)
    url, min_level = webhook_settings()
    if url and LEVELS.index(level) >= LEVELS.index(min_level):
        transaction.on_commit(lambda: _post_soon(url, alert))
    return alert


# Each process posts from one thread of its own, in order, once the alert's transaction has
# committed: a webhook may take its 5 s to answer (and its name's lookup the resolver's own
# limits), and whoever raised the alert (a config save's request, the watcher, a sync) went on
# only after it. The thread starts with the first post and finishes what is queued before its
# process exits (concurrent.futures joins it), so a command's alert is posted before it ends.
def _new_poster() -> None:  # and in a forked child, whose parent's thread is not in it
    global _poster
    _poster = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook")


_poster: ThreadPoolExecutor
_new_poster()
os.register_at_fork(after_in_child=_new_poster)


def _post_soon(url: str, alert: Alert) -> None:
    _poster.submit(post_webhook, url, alert)


def wait_for_posts(timeout: float = 15.0) -> None:
    """Returns once every post queued so far has been made (or has failed)."""
    _poster.submit(lambda: None).result(timeout)


def resolve_alert(source: str, subject: str) -> int:
    """The condition cleared: its unresolved alert (if any) is resolved. Returns how many.
    Called after every successful sync of every plugin: it reads first and writes only when
    there is something to resolve."""
    matching = unresolved().filter(source=source, subject=subject)
    resolved = matching.update(resolved_at=timezone.now()) if matching.exists() else 0
    if resolved:
        logger.warning("RESOLVED %s/%s", source, subject)
    return resolved


# The global config owns the routing (URL, lowest level posted); config_app hands its reader in
# when it loads (config_app.apps), so that the kernel imports no app. Until then: post nothing.
def _no_webhook() -> tuple[str, str]:
    return "", Alert.Level.CRITICAL


_webhook_settings: Callable[[], tuple[str, str]] = _no_webhook


def use_webhook_settings(reader: Callable[[], tuple[str, str]]) -> None:
    global _webhook_settings
    _webhook_settings = reader


def webhook_settings() -> tuple[str, str]:
    return _webhook_settings()


def webhook_refusal(url: str) -> str:
    """Why the console will not post to this URL ('' when it will): an address inside the
    machine or its network (loopback, private, link-local) could reach services that trust
    their neighbours. ZEPIX_WEBHOOK_ALLOW_PRIVATE=1 allows them (an internal relay)."""
    from django.conf import settings

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "it is not an http(s) URL"
    if settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES:
        return ""
    try:
        addresses = {
            info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
        }
    except (OSError, UnicodeError) as error:
        return f"its host does not resolve ({error})"
    for address in addresses:
        refused = _address_refusal(str(address))
        if refused:
            return refused
    return ""


def _address_refusal(address: str) -> str:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast or ip.is_unspecified:
        return f"it points inside the network ({address}); set ZEPIX_WEBHOOK_ALLOW_PRIVATE=1 to allow that"
    return ""


def _checked_connection(address, *args, **kwargs):
    """socket.create_connection, refusing a peer inside the network before a byte is sent: the
    host's name was checked (webhook_refusal), but it may resolve elsewhere the second time
    (a name that answers a public address, then 127.0.0.1)."""
    from django.conf import settings

    sock = socket.create_connection(address, *args, **kwargs)
    refused = "" if settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES else _address_refusal(sock.getpeername()[0])
    if refused:
        sock.close()
        raise ConnectionRefusedError(f"not posted: {refused}")
    return sock


class _PeerChecked:
    """An http.client connection that opens its socket with _checked_connection."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = _checked_connection


class _CheckedHTTPConnection(_PeerChecked, http.client.HTTPConnection):
    pass


class _CheckedHTTPSConnection(_PeerChecked, http.client.HTTPSConnection):
    pass


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_CheckedHTTPConnection, req)


class _CheckedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_CheckedHTTPSConnection, req)  # the default context: certificates verified


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is not followed (it answers as the error it is): it led a checked public URL to
    any address, the cloud's metadata service included."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _opener_for(url: str) -> urllib.request.OpenerDirector:
    """Made for each post, not when the module is imported: an HTTPS handler loads the machine's
    certificates, 60 ms of every process's start. Through the machine's proxy (HTTP_PROXY,
    HTTPS_PROXY) the peer is the proxy: the host's name is checked, and the proxy reaches it."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.getproxies().get(parts.scheme) and not urllib.request.proxy_bypass(parts.hostname or ""):
        return urllib.request.build_opener(_NoRedirect)
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), _CheckedHTTPHandler, _CheckedHTTPSHandler, _NoRedirect
    )


def post_webhook(url: str, alert: Alert) -> bool:
    refusal = webhook_refusal(url)
    if refusal:
        logger.error("Not posting alert to webhook %s: %s", url, refusal)
        return False
    body = json.dumps(
        {
            "source": alert.source,
            "subject": alert.subject,
            "level": alert.level,
            "message": alert.message,
            "created_at": alert.created_at.isoformat(),
        }
    ).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with _opener_for(url).open(request, timeout=5) as response:
            return 200 <= response.status < 300
    except (OSError, ValueError) as error:
        logger.error("Could not post alert to webhook %s: %s", url, error)
        return False


def acknowledge(alert: Alert, actor: str) -> None:
    if alert.acknowledged_at is None:
        alert.acknowledged_at = timezone.now()
        alert.acknowledged_by = actor
        alert.save(update_fields=["acknowledged_at", "acknowledged_by"])


def unresolved():
    return Alert.objects.filter(resolved_at__isnull=True)


def open_alerts():
    """What needs someone: unresolved, not yet acknowledged, not snoozed."""
    return unresolved().filter(acknowledged_at__isnull=True).exclude(snoozed_until__gt=timezone.now())


def snoozed_alerts():
    return unresolved().filter(acknowledged_at__isnull=True, snoozed_until__gt=timezone.now())


SNOOZE_CHOICES = {"1h": 1, "4h": 4, "24h": 24}  # hours


def snooze(alert: Alert, hours: int) -> None:
    alert.snoozed_until = timezone.now() + timedelta(hours=hours)
    alert.save(update_fields=["snoozed_until"])
