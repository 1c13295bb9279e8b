"""The base of every Zepix management command."""

from django.core.management.base import BaseCommand, CommandError

from zepix_admin.core import audit
from zepix_admin.core.errors import ZepixError


class ZepixCommand(BaseCommand):
    """A refusal (any ``ZepixError``) ends the command with its message and exit status 1, like
    Django's own ``CommandError``, never with a traceback. ``refusal_prefix`` says, before the
    message, what the refusal means for the operator ("Nothing was restored: ")."""

    refusal_prefix = ""

    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except ZepixError as error:
            raise CommandError(f"{self.refusal_prefix}{error}") from None

    def audit(self, action: str, target: str = "", **details):
        """Every change a command makes is audited as the command line's."""
        return audit.record("command", "command", action, target, **details)
