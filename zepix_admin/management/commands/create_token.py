from plugins_app.registry import check_plugin_id
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
        parser.add_argument(
            "--plugin",
            dest="plugin_ids",
            action="append",
            default=[],
            metavar="ID",
            help="With --role plugin-host: a plugin whose changes it may ship (once or more).",
        )

    def handle(self, *args, name, role, plugin_ids, **options):
        for plugin_id in plugin_ids:
            check_plugin_id(plugin_id)
        raw = create_token(name, role, plugin_ids)
        self.audit("token.create", name, role=role, plugins=plugin_ids)
        self.stdout.write(f"Token {name!r} ({role}). Send it as 'Authorization: Bearer <token>':")
        self.stdout.write(raw)
