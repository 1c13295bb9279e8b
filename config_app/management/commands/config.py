import json
from pathlib import Path

from django.core.management.base import CommandError

from config_app import documents, service
from config_app.diff import get_path
from config_app.models import ConfigVersion
from zepix_admin.core.commands import ZepixCommand


class Command(ZepixCommand):
    help = "Read and change configuration with the same rules as the dashboard: get, set, history, rollback, validate."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        get = actions.add_parser("get", help="Print a value as JSON")
        get.add_argument("scope")
        get.add_argument("path", nargs="?", default="", help="dot.path (default: the whole document)")
        set_ = actions.add_parser("set", help="Set a value (JSON) and save a new version")
        set_.add_argument("scope")
        set_.add_argument("path")
        set_.add_argument("value", help='A JSON value: 0.5, true, "text", [1, 2]')
        set_.add_argument("--comment", default="")
        history = actions.add_parser("history", help="List the versions of a scope")
        history.add_argument("scope")
        rollback = actions.add_parser("rollback", help="Save an earlier version's content as a new version")
        rollback.add_argument("scope")
        rollback.add_argument("version", type=int)
        validate = actions.add_parser("validate", help="Validate a file (default: every config file)")
        validate.add_argument("file", nargs="?", type=Path)
        validate.add_argument("--scope", help="Schema to use (default: global for config.json, else the plugin schema)")

    def handle(self, *args, action, **options):
        getattr(self, f"do_{action}")(**options)

    def do_get(self, scope, path, **options):
        document = service.active_document(scope)
        try:
            value = get_path(document, path) if path else document
        except KeyError:
            raise CommandError(f"{scope} has no setting {path!r}.") from None
        self.stdout.write(json.dumps(value, indent=2 if isinstance(value, dict | list) else None))

    def do_set(self, scope, path, value, comment, **options):
        try:
            parsed = documents.parse(value)
        except documents.InvalidDocument as error:
            message = error.problems[0].message
            raise CommandError(f"The value must be JSON (quote strings: '\"text\"'): {message}") from None
        latest = service.require_current(documents.check_scope(scope))
        try:
            saved = service.set_value(scope, path, parsed, base_version=latest.version, author="command", via="command")
        except documents.InvalidDocument as error:
            raise CommandError(f"Refused, nothing saved: {error}") from None
        if saved.version == latest.version:
            self.stdout.write(f"{scope}: {path} already is {value}; nothing saved.")
        else:
            self.stdout.write(f"{scope}: saved version {saved.version} ({path} = {json.dumps(parsed)}).")

    def do_history(self, scope, **options):
        for version in ConfigVersion.objects.filter(scope=documents.check_scope(scope)).order_by("-version"):
            changes = "; ".join(f"{c['path']}: {json.dumps(c['old'])} -> {json.dumps(c['new'])}" for c in version.diff)
            self.stdout.write(
                f"v{version.version}  {version.created_at:%Y-%m-%d %H:%M:%S}  {version.author} ({version.via})"
                f"  {version.comment}  {changes}"
            )

    def do_rollback(self, scope, version, **options):
        saved = service.rollback(scope, version, author="command", via="command")
        self.stdout.write(f"{scope}: version {saved.version} now has the content of version {version}.")

    def do_validate(self, file, scope, **options):
        if file:
            targets = [(file, scope or (documents.GLOBAL_SCOPE if file.name == "config.json" else file.stem))]
        else:
            targets = [(documents.document_path(s), s) for s in documents.scopes()]
        failed = False
        for path, scope in targets:
            try:
                documents.check_document(scope, documents.parse(documents.read_file(Path(path))))
                self.stdout.write(f"{path}: valid ({scope})")
            except FileNotFoundError:
                failed = True
                self.stderr.write(f"{path}: missing")
            except documents.InvalidDocument as error:
                failed = True
                for problem in error.problems:
                    self.stderr.write(f"{path}: {problem}")
        if failed:
            raise CommandError("Validation failed.")
