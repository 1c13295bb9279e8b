from django.db import models
from django.db.models import BooleanField, ExpressionWrapper, Q


class ConfigVersionQuerySet(models.QuerySet):
    def with_document_kept(self):
        """Each version's ``document_kept`` without loading its document (pages of history)."""
        return self.defer("document").annotate(
            document_kept=ExpressionWrapper(Q(document__isnull=False), output_field=BooleanField())
        )


class ConfigVersion(models.Model):
    """One saved state of a configuration document. The newest of a scope is the active one."""

    scope = models.CharField(max_length=40)
    version = models.PositiveIntegerField()
    author = models.CharField(max_length=150)
    via = models.CharField(max_length=20, help_text="web, api, command, file or setup")
    created_at = models.DateTimeField(auto_now_add=True)
    comment = models.CharField(max_length=300, blank=True, default="")
    document = models.JSONField(null=True, help_text="Empty once history retention has pruned it (the diff stays)")
    diff = models.JSONField(default=list, help_text="[{path, old, new}] against the previous version")
    retired = models.BooleanField(
        default=False, help_text="A tombstone: the plugin was archived; its document is kept, its file is gone"
    )

    objects = ConfigVersionQuerySet.as_manager()
    # Not stored: set on a version just saved whose file could not be written (service._write_document).
    file_not_written = ""

    class Meta:
        ordering = ["scope", "-version"]
        constraints = [models.UniqueConstraint(fields=["scope", "version"], name="config_version_unique")]

    def __str__(self):
        return f"{self.scope} v{self.version}"

    def as_event(self) -> dict:
        return {
            "id": self.pk,
            "scope": self.scope,
            "version": self.version,
            "author": self.author,
            "via": self.via,
            "created_at": self.created_at.isoformat(),
            "comment": self.comment,
            "diff": self.diff,
            "data": self.document,
            "retired": self.retired,
        }


class Subscriber(models.Model):
    """A running plugin process that follows a scope's stream and reports what it applied."""

    class Status(models.TextChoices):
        OK = "OK"
        ERROR = "ERROR"
        PENDING = "PENDING"

    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=40)
    connected = models.BooleanField(default=False)
    last_seen_at = models.DateTimeField()
    applied_version = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["scope", "name"]
        constraints = [models.UniqueConstraint(fields=["name", "scope"], name="config_subscriber_unique")]

    def __str__(self):
        return f"{self.name} on {self.scope}"
