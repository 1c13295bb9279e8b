"""Differences between two JSON documents as dot-paths with old and new values."""

import copy

MISSING = None


def flatten(document, prefix: str = "") -> dict:
    """{"a": {"b": 1}, "c": [1, 2]} -> {"a.b": 1, "c": [1, 2]}. Lists are values, not paths."""
    if isinstance(document, dict) and document:
        flat = {}
        for key, value in document.items():
            flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: document} if prefix else {}


def diff_documents(old: dict | None, new: dict) -> list[dict]:
    before, after = flatten(old or {}), flatten(new)
    changes = []
    for path in sorted(before.keys() | after.keys()):
        if path not in after:
            changes.append({"path": path, "old": before[path], "new": MISSING, "change": "removed"})
        elif path not in before:
            changes.append({"path": path, "old": MISSING, "new": after[path], "change": "added"})
        elif before[path] != after[path] or type(before[path]) is not type(after[path]):
            changes.append({"path": path, "old": before[path], "new": after[path], "change": "changed"})
    return changes


def get_path(document: dict, path: str):
    node = document
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            raise KeyError(path)
        node = node[key]
    return node


def set_path(document: dict, path: str, value) -> dict:
    """A copy of the document with the value at the dot-path replaced (parents created)."""
    result = copy.deepcopy(document)
    node = result
    keys = path.split(".")
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[keys[-1]] = value
    return result
