from zepix_admin.core.access import TOKEN_ROLES, create_token
from zepix_admin.core.commands import ZepixCommand


class Command(ZepixCommand):
    help = (
        "Make an API token for a machine client (a plugin process). Prints the token alone on its last "
        "line; only its hash is stored, so keep it now."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="Who uses it, e.g. combined_v3-live")
        parser.add_argument("--role", choices=TOKEN_ROLES, default="viewer")

    def handle(self, *args, name, role, **options):
        raw = create_token(name, role)
        self.audit("token.create", name, role=role)
        self.stdout.write(f"Token {name!r} ({role}). Send it as 'Authorization: Bearer <token>':")
        self.stdout.write(raw)
