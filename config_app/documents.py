"""Configuration documents: where they live, their schemas and validation (written with
``zepix_admin.core.files.write_atomic``, removed durably).

Scopes: ``global`` is ``ZEPIX_CONFIG_DIR/config.json``; each plugin id is
``ZEPIX_CONFIG_DIR/plugins/<plugin_id>.json``. Nothing here touches the database; the
versioned save that operators use is ``config_app.service``.
"""

import json
import math
import os
import stat
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from django.conf import settings

from plugins_app import plugins, registry
from zepix_admin.core.errors import Invalid, NotFound
from zepix_admin.core.files import fsync_folder

GLOBAL_SCOPE = "global"
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
MAX_DOCUMENT_BYTES = 1024 * 1024


class UnknownScope(NotFound, LookupError):
    pass


@dataclass(frozen=True)
class ValidationProblem:
    path: str
    message: str

    def __str__(self):
        return f"{self.path}: {self.message}"


class InvalidDocument(Invalid, ValueError):
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
    """The global schema, or a plugin's: the built-in plugin schema, combined with the plugin's own
    settings schema when it ships one (``ZEPIX_CONFIG_DIR/plugins/<id>.schema.json``)."""
    if scope == GLOBAL_SCOPE:
        return _schema("global")
    own, _ = _own_schema(scope)
    return _combined(own) if own else _schema("plugin")


def settings_schema_path(plugin_id: str) -> Path:
    return registry.settings_schema_path(settings.CONFIG_DIR, plugin_id)


def read_settings_schema(path: Path) -> dict:
    """A plugin's own JSON Schema for its settings, checked: an object schema (a valid JSON Schema)
    whose properties add settings and redefine none of the built-in ones."""
    schema = parse(read_file(Path(path)))
    problem = _settings_schema_problem(schema)
    if problem:
        raise InvalidDocument([ValidationProblem("(schema)", f"{Path(path).name}: {problem}")])
    return schema


def own_defaults(plugin_id: str) -> dict:
    """The defaults the plugin's own settings schema gives (its properties' "default")."""
    own, _ = _own_schema(plugin_id)
    properties = own.get("properties", {}) if own else {}
    return {name: spec["default"] for name, spec in properties.items() if isinstance(spec, dict) and "default" in spec}


def _settings_schema_problem(schema) -> str:
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        return "a plugin's settings schema is an object schema"
    if not isinstance(schema.get("properties", {}), dict):
        return "its properties must be an object"
    from jsonschema import Draft202012Validator, SchemaError  # see load_validator

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        return f"not a valid JSON Schema: {error.message}"
    clash = sorted(set(schema.get("properties", {})) & set(_schema("plugin")["properties"]))
    if clash:
        return f"it redefines built-in settings: {', '.join(clash)}"
    for reference in _references(schema):
        if not _points_within(schema, reference):
            return f"it refers to {reference}: a reference must point within the schema (#/$defs/...)"
    return ""


def _references(node):
    """Every $ref and $dynamicRef in a schema."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef"):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def _points_within(schema: dict, reference) -> bool:
    """Whether a reference is a JSON pointer into the schema's own $defs (or definitions), which
    stay at the root once it is combined with the built-in schema: jsonschema fetches nothing
    here, and a reference to another file or address failed every validation."""
    if not isinstance(reference, str) or not reference.startswith(("#/$defs/", "#/definitions/")):
        return False
    node = schema
    for part in reference.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def _own_schema(plugin_id: str) -> tuple[dict | None, str]:
    """(the plugin's own settings schema or None, what is wrong with its file or '')."""
    path = settings_schema_path(plugin_id)
    try:
        modified = path.stat().st_mtime_ns
    except FileNotFoundError:
        return None, ""
    return _read_own_schema(path, modified)


@lru_cache(maxsize=64)
def _read_own_schema(path: Path, modified: int) -> tuple[dict | None, str]:
    try:
        return read_settings_schema(path), ""
    except (InvalidDocument, OSError) as error:
        return None, f"the plugin's settings schema {path.name} cannot be used ({error}); fix it"


def _combined(own: dict) -> dict:
    """The built-in plugin schema with the plugin's own settings added: still closed to unknown
    keys, the own schema's other rules (ranges, patterns) applied through allOf."""
    base = _schema("plugin")
    rules = {key: value for key, value in own.items() if key not in ("$schema", "$id", "title", "additionalProperties")}
    # Its references point from its own root (#/$defs/...): what they point to stays there.
    shared = {key: {**base.get(key, {}), **own[key]} for key in ("$defs", "definitions") if key in own}
    return {
        **base,
        **shared,
        "properties": {**base["properties"], **own.get("properties", {})},
        "required": sorted({*base.get("required", []), *own.get("required", [])}),
        "allOf": [rules],
    }


def load_validator() -> None:
    """Imports jsonschema now. It is imported where a document is validated, not with this
    module: 0.12 s of CPU at the start of every command, most of which validate nothing. The
    long-running processes call this as they start (the web workers, the consumer's file
    watcher): their first save or edit paid it, beside the others' work (a save's delivery to
    100 subscribers took 74 ms instead of 15 when the watcher met it)."""
    import jsonschema  # noqa: F401


def validate(scope: str, document) -> list[ValidationProblem]:
    if _depth(document) > MAX_DEPTH:
        return [ValidationProblem("(document)", f"nested deeper than {MAX_DEPTH} levels")]
    if scope != GLOBAL_SCOPE and (broken := _own_schema(scope)[1]):
        return [ValidationProblem("(schema)", broken)]
    out_of_range = list(_out_of_range(document))
    if out_of_range:
        return out_of_range
    from jsonschema import Draft202012Validator  # see load_validator

    validator = Draft202012Validator(schema_for(scope))
    problems = [
        ValidationProblem(".".join(str(part) for part in error.absolute_path) or "(document)", in_words(error))
        for error in validator.iter_errors(document)
    ]
    return sorted(problems, key=lambda problem: (problem.path, problem.message))


TYPE_WORDS = {
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "string": "text",
    "array": "a list",
    "object": "a group of settings",
    "null": "empty",
}
BOUND_WORDS = {
    "minimum": "at least",
    "maximum": "at most",
    "exclusiveMinimum": "more than",
    "exclusiveMaximum": "less than",
}


def in_words(error) -> str:
    """A schema error in an operator's words, values as JSON ("must be one of "live", "paper""),
    never a Python repr (['live', 'paper'], True)."""
    kind, expected = error.validator, error.validator_value
    if kind == "enum":
        return "must be one of " + ", ".join(json.dumps(value) for value in expected)
    if kind == "type":
        wanted = [expected] if isinstance(expected, str) else expected
        return "must be " + " or ".join(TYPE_WORDS.get(name, name) for name in wanted)
    if kind in BOUND_WORDS:
        return f"must be {BOUND_WORDS[kind]} {json.dumps(expected)}"
    if kind == "required":
        missing = [name for name in expected if isinstance(error.instance, dict) and name not in error.instance]
        return "missing: " + ", ".join(missing)
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        return "unknown setting: " + ", ".join(sorted(name for name in error.instance if name not in known))
    if kind in ("minItems", "maxItems"):
        return f"must have {'at least' if kind == 'minItems' else 'at most'} {expected} item(s)"
    if kind == "pattern":
        return f"must match the pattern {expected}"
    return error.message


def check_document(scope: str, document) -> None:
    problems = validate(scope, document)
    if problems:
        raise InvalidDocument(problems)


def parse(text: str | bytes):
    """JSON text to a value, strictly: the one way JSON enters the console (files, the API,
    the inline editor, `config set`). Refused with InvalidDocument, in an operator's words:
    NaN and Infinity (the database would refuse them later, as a 500), numbers out of
    range, duplicate keys (the last would silently win), nesting deeper than MAX_DEPTH."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise InvalidDocument([ValidationProblem("(document)", "larger than 1 MB")])
    try:
        value = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        raise _invalid(f"nested deeper than {MAX_DEPTH} levels") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise _invalid(f"not valid JSON ({_where(error)})") from None
    except ValueError as error:
        raise _invalid(str(error)) from None
    if _depth(value) > MAX_DEPTH:
        raise _invalid(f"nested deeper than {MAX_DEPTH} levels")
    return value


MAX_DEPTH = 32
MAX_INTEGER = 2**53  # beyond it JSON readers (JavaScript among them) lose digits


def _invalid(message: str) -> InvalidDocument:
    return InvalidDocument([ValidationProblem("(document)", message)])


def _where(error: ValueError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg.lower()} at line {error.lineno}, column {error.colno}"
    return "it is not UTF-8 text"


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > 17 or abs(int(text)) > MAX_INTEGER:
        raise ValueError(f"{text[:20]}{'…' if len(text) > 20 else ''} is out of range (at most {MAX_INTEGER:,})")
    return int(text)


def _unique_keys(pairs: list) -> dict:
    document = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"the key {key!r} appears twice")
        document[key] = value
    return document


def _out_of_range(value, path: str = ""):
    """Numbers no JSON reader can take, however the document was made (the Python API too)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _out_of_range(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _out_of_range(item, f"{path}.{index}" if path else str(index))
    elif isinstance(value, float) and not math.isfinite(value):
        yield ValidationProblem(path or "(document)", "must be a finite number")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        yield ValidationProblem(path or "(document)", f"must be at most {MAX_INTEGER:,}")


def _depth(value) -> int:
    """How deeply lists and objects nest (iteratively: a hostile value must not exhaust the stack)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        pending.extend((child, level + 1) for child in children)
    return deepest


def read(scope: str) -> dict:
    return parse(read_file(document_path(scope)))


def read_file(path: Path) -> bytes:
    """A document's bytes, from a regular file only: a symbolic link (it could point anywhere),
    a folder, a FIFO (reading it would hang the config lock) or a device is refused, and the
    size is checked before anything is read."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as error:
        kind = "a symbolic link" if path.is_symlink() else "not a readable file"
        raise _invalid(f"{path.name} is {kind} ({error.strerror}); only a regular file is read") from None
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode):
        os.close(descriptor)
        raise _invalid(f"{path.name} is not a regular file (a folder, a pipe or a device); only a regular file is read")
    with os.fdopen(descriptor, "rb") as handle:
        if status.st_size > MAX_DOCUMENT_BYTES:
            raise _invalid("larger than 1 MB")
        return handle.read(MAX_DOCUMENT_BYTES + 1)


def render(document: dict) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def remove(path: Path) -> None:
    """Delete a document durably (the folder is synced, like a write)."""
    path.unlink(missing_ok=True)
    fsync_folder(path.parent)
