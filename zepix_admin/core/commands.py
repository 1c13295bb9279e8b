"""The base of every Zepix management command."""

import sqlite3
from typing import Literal

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, InterfaceError

from zepix_admin.core import audit
from zepix_admin.core.databases import outage
from zepix_admin.core.errors import ZepixError
from zepix_admin.core.progress import progress_bar


class ZepixCommand(BaseCommand):
    """A refusal (any ``ZepixError``) ends the command with its message and exit status 1, like
    Django's own ``CommandError``, never with a traceback. ``refusal_prefix`` says, before the
    message, what the refusal means for the operator ("Nothing was restored: ")."""

    refusal_prefix = ""
    # Django's system checks find mistakes in the code (models, URLs, admin), not in an
    # install: `setup` (every install and upgrade, `make run`) and `serve` run them, and
    # `manage.py check`. The everyday commands operators' scripts and cron run skip them: 0.11 s
    # of each one's 1.0 s of CPU (the URL check imports every view).
    requires_system_checks: list[str] | tuple[str, ...] | Literal["__all__"] = []

    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except ZepixError as error:
            raise CommandError(f"{self.refusal_prefix}{error}") from None
        except (DatabaseError, InterfaceError, sqlite3.Error, OSError) as error:
            away = outage(error)
            if away is None:
                raise
            # As the pages say it (a 503), not as a traceback.
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise CommandError(
                f"{self.refusal_prefix}{away.what} ({first_line}): the command stopped. Run it again {away.again}."
            ) from None

    def progress(self, total: int | None, *, unit: str, description: str):
        """A progress bar on the terminal's standard error (see core.progress): ``with
        self.progress(total, unit="rows", description=...) as advance: ... advance(n)``."""
        return progress_bar(total, unit=unit, description=description, stream=self.stderr._out)

    def audit(self, action: str, target: str = "", **details):
        """Every change a command makes is audited as the command line's."""
        return audit.record("command", "command", action, target, **details)
