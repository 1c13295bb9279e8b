from django.core.management.base import BaseCommand, CommandError

from zepix_admin import audit
from zepix_admin.access import TOKEN_ROLES, create_token


class Command(BaseCommand):
    help = (
        "Make an API token for a machine client (a plugin process). Prints the token alone on its last "
        "line; only its hash is stored, so keep it now."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="Who uses it, e.g. combined_v3-live")
        parser.add_argument("--role", choices=TOKEN_ROLES, default="viewer")

    def handle(self, *args, name, role, **options):
        try:
            raw = create_token(name, role)
        except ValueError as error:
            raise CommandError(str(error)) from None
        audit.record("command", "command", "token.create", name, role=role)
        self.stdout.write(f"Token {name!r} ({role}). Send it as 'Authorization: Bearer <token>':")
        self.stdout.write(raw)
