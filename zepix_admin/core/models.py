"""What spans every app: the audit log, alerts, API tokens, the consumer's heartbeat and the console's home.
All of it lives in the central database."""

import hashlib

from django.conf import settings
from django.db import models


class AuditEntry(models.Model):
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=150, help_text="Username, token:<name>, file, or system")
    via = models.CharField(max_length=20, help_text="web, api, command or task")
    action = models.CharField(max_length=60, db_index=True)
    target = models.CharField(max_length=200, blank=True, default="")
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target}"


class Alert(models.Model):
    class Level(models.TextChoices):
        WARNING = "WARNING"
        CRITICAL = "CRITICAL"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    last_seen_at = models.DateTimeField(null=True, blank=True, help_text="When the condition was last seen")
    count = models.PositiveIntegerField(default=1, help_text="How many times the condition was seen while open")
    resolved_at = models.DateTimeField(null=True, blank=True, help_text="When the condition cleared by itself")
    source = models.CharField(max_length=40, help_text="sync, config, backup, worker, disk")
    subject = models.CharField(max_length=100, help_text="What it is about: a plugin, a scope, a database")
    level = models.CharField(max_length=10, choices=Level.choices, default=Level.WARNING)
    message = models.TextField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True, default="")
    snoozed_until = models.DateTimeField(null=True, blank=True, help_text="Out of the open list until then")

    class Meta:
        ordering = ["-created_at", "-id"]
        # The navigation badge and the alerts page ask for open alerts on every request.
        indexes = [models.Index(fields=["acknowledged_at", "-created_at"], name="alert_open_idx")]

    def __str__(self):
        return f"[{self.level}] {self.source}/{self.subject}: {self.message[:60]}"

    @property
    def page(self) -> str:
        """The page of what failed."""
        if self.source == "config":
            return f"/config/{self.subject}/" if self.subject else "/config/"
        return {
            "sync": "/sync/",
            "worker": "/sync/",
            "job": "/sync/",
            "backup": "/backups/",
            "restore": "/backups/",
        }.get(self.source, "/healthz")


class ApiToken(models.Model):
    name = models.CharField(max_length=60, unique=True)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_token")
    token_hash = models.CharField(max_length=64, unique=True)
    plugin_ids = models.JSONField(default=list, blank=True, help_text="A plugin-host token's plugins")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return self.name

    @staticmethod
    def hash(raw_token: str) -> str:
        return hashlib.sha256(raw_token.encode()).hexdigest()


class Heartbeat(models.Model):
    """One row per long-running process (the Huey consumer), touched while it is alive."""

    name = models.CharField(max_length=40, unique=True)
    beat_at = models.DateTimeField()
    pid = models.IntegerField(default=0)

    def __str__(self):
        return f"{self.name} @ {self.beat_at}"


class ConsoleHome(models.Model):
    """The folders a central database on PostgreSQL belongs to (one row, written by `setup`): the
    plugin databases, their backups and the config files are there, on one machine. See
    zepix_admin.core.home."""

    folder_id = models.CharField(max_length=64)
    host = models.CharField(max_length=255)
    data_dir = models.TextField()
    recorded_at = models.DateTimeField()

    def __str__(self):
        return f"{self.data_dir} on {self.host}"
