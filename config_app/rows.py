"""A configuration document as editable rows: one per leaf setting, with the input that
fits its schema (toggle for booleans, number with bounds, select for enums)."""

import json
import math
from dataclasses import dataclass

from config_app import documents


@dataclass
class Row:
    path: str
    value: object
    kind: str  # boolean, number, integer, enum, string, list (of strings or numbers), json
    item_kind: str = ""  # a list's items: string, number or integer
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    step: str = "any"
    choices: tuple = ()
    # High-risk settings (marked in the schemas): always ("x-risk": "high"), or when set above
    # a threshold ("x-risk-above"). The page asks before saving such a change.
    always_risky: bool = False
    risky_above: float | None = None

    def is_risky(self, new_value) -> bool:
        if self.always_risky:
            return True
        return (
            self.risky_above is not None
            and isinstance(new_value, int | float)
            and not isinstance(new_value, bool)
            and new_value > self.risky_above
        )

    @property
    def input_value(self) -> str:
        if self.kind == "json":
            return json.dumps(self.value)
        if self.kind == "list" and isinstance(self.value, list):
            return ", ".join(str(item) for item in self.value)
        return "" if self.value is None else str(self.value)

    @property
    def dom_id(self) -> str:
        return "row-" + "".join(char if char.isalnum() else "-" for char in self.path)


def rows_for(schema: dict, document: dict, prefix: str = "") -> list[Row]:
    rows = []
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    keys = list(properties) + sorted(key for key in document if key not in properties)
    for key in keys:
        child = properties.get(key) or (extra if isinstance(extra, dict) else {})
        path = f"{prefix}.{key}" if prefix else key
        value = document.get(key)
        if child.get("type") == "object" and isinstance(value, dict):
            rows.extend(rows_for(child, value, path))
        elif key in document or key in properties:
            rows.append(row_for(path, value, child))
    return rows


def row_for(path: str, value, schema: dict) -> Row:
    kind = schema.get("type", "json")
    row = Row(
        path=path,
        value=value,
        kind=kind,
        description=schema.get("description", ""),
        always_risky=schema.get("x-risk") == "high",
        risky_above=schema.get("x-risk-above"),
    )
    if "enum" in schema:
        row.kind, row.choices = "enum", tuple(schema["enum"])
    elif kind in ("number", "integer"):
        row.minimum = schema.get("minimum", schema.get("exclusiveMinimum"))
        row.maximum = schema.get("maximum", schema.get("exclusiveMaximum"))
        row.step = "1" if kind == "integer" else "any"
    elif kind == "array" and schema.get("items", {}).get("type") in ("string", "number", "integer"):
        row.kind, row.item_kind = "list", schema["items"]["type"]
    elif kind not in ("boolean", "string"):
        row.kind = "json"
    return row


def parse_input(row_kind: str, raw: str, item_kind: str = ""):
    """The value a form field sent, as JSON: '3' -> 3, 'true' -> True, 'EURUSD, XAUUSD' (or
    a JSON list) -> a list. Raises ValueError with a message for the operator."""
    raw = raw.strip()
    if row_kind == "boolean":
        return raw.lower() in ("true", "on", "1")
    if row_kind in ("string", "enum"):
        return raw
    if row_kind == "list" and not raw.startswith("["):
        items = [item.strip() for item in raw.replace("\n", ",").split(",") if item.strip()]
        return items if item_kind == "string" else [parse_input(item_kind, item) for item in items]
    if row_kind in ("number", "integer"):
        try:
            number = float(raw)
        except ValueError:
            raise ValueError(f"{json.dumps(raw)} is not a number") from None
        if not math.isfinite(number) or abs(number) > documents.MAX_INTEGER:
            raise ValueError(f"{json.dumps(raw[:20])} is not a number in range")
        return int(number) if number.is_integer() else number
    try:
        return documents.parse(raw)
    except documents.InvalidDocument as error:
        raise ValueError(error.problems[0].message) from None
