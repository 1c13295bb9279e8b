"""Configuration documents: where they live, their schemas, validation and durable writes.

Scopes: ``global`` is ``ZEPIX_CONFIG_DIR/config.json``; each plugin id is
``ZEPIX_CONFIG_DIR/plugins/<plugin_id>.json``. Nothing here touches the database; the
versioned save that operators use is ``config_app.service``.
"""

import json
import os
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from django.conf import settings
from jsonschema import Draft202012Validator

from plugins_app import plugins, registry
from zepix_admin.files import fsync_folder

GLOBAL_SCOPE = "global"
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
MAX_DOCUMENT_BYTES = 1024 * 1024


class UnknownScope(LookupError):
    pass


@dataclass(frozen=True)
class ValidationProblem:
    path: str
    message: str

    def __str__(self):
        return f"{self.path}: {self.message}"


class InvalidDocument(ValueError):
    def __init__(self, problems: list[ValidationProblem]):
        self.problems = problems
        super().__init__("; ".join(str(problem) for problem in problems))


def scopes() -> list[str]:
    return [GLOBAL_SCOPE, *plugins.plugin_ids()]


def check_scope(scope) -> str:
    if scope not in scopes():
        raise UnknownScope(f"Unknown config scope {scope!r}; known scopes: {', '.join(scopes())}.")
    return scope


def document_path(scope: str) -> Path:
    if scope == GLOBAL_SCOPE:
        return settings.CONFIG_DIR / "config.json"
    return registry.config_path(settings.CONFIG_DIR, scope)


def scope_for_path(path: str | Path) -> str | None:
    path = Path(path)
    if path == settings.CONFIG_DIR / "config.json":
        return GLOBAL_SCOPE
    if path.parent == settings.CONFIG_DIR / "plugins" and path.suffix == ".json":
        return path.stem if path.stem in settings.PLUGIN_IDS else None
    return None


@cache
def _schema(kind: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text())


def schema_for(scope: str) -> dict:
    return _schema("global" if scope == GLOBAL_SCOPE else "plugin")


def validate(scope: str, document) -> list[ValidationProblem]:
    validator = Draft202012Validator(schema_for(scope))
    problems = [
        ValidationProblem(".".join(str(part) for part in error.absolute_path) or "(document)", error.message)
        for error in validator.iter_errors(document)
    ]
    return sorted(problems, key=lambda problem: (problem.path, problem.message))


def check_document(scope: str, document) -> None:
    problems = validate(scope, document)
    if problems:
        raise InvalidDocument(problems)


def parse(text: str | bytes) -> dict:
    """JSON text to a document, or InvalidDocument saying where the text is broken."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise InvalidDocument([ValidationProblem("(document)", "larger than 1 MB")])
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidDocument([ValidationProblem("(document)", f"not valid JSON: {error}")]) from None


def read(scope: str) -> dict:
    return parse(document_path(scope).read_bytes())


def render(document: dict) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def remove(path: Path) -> None:
    """Delete a document durably (the folder is synced, like a write)."""
    path.unlink(missing_ok=True)
    fsync_folder(path.parent)


def write_atomic(path: Path, text: str) -> None:
    """Readers and crashes see the old file or the new one, whole, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)

