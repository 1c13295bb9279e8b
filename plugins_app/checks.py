"""Django's model checks, less the clashes one schema in many plugin databases makes on purpose.

Every plugin app has the same tables, index and constraint names (one schema, many files:
the router keeps each in its own database). Django reports those as models.W035, E030 and
E032; they are dropped here only when every model named is a plugin's, so that a real clash
among the central models is still reported (SILENCED_SYSTEM_CHECKS would hide both).
"""

import re

from django.core import checks
from django.core.checks import model_checks

from plugins_app.registry import ALIAS_PREFIX

EXPECTED_FOR_PLUGINS = {"models.W035", "models.E030", "models.E032"}
MODEL_LABEL = re.compile(r"\b(\w+)\.[A-Z]\w*\b")


def _about_plugin_models_only(message: checks.CheckMessage) -> bool:
    app_labels = MODEL_LABEL.findall(message.msg)
    return bool(app_labels) and all(label.startswith(ALIAS_PREFIX) for label in app_labels)


def check_all_models(app_configs=None, **kwargs):
    return [
        message
        for message in model_checks.check_all_models(app_configs, **kwargs)
        if not (message.id in EXPECTED_FOR_PLUGINS and _about_plugin_models_only(message))
    ]


def register() -> None:
    """Stands in for Django's own check (its registry is a set of functions)."""
    checks.registry.registry.registered_checks.discard(model_checks.check_all_models)
    checks.register(check_all_models, checks.Tags.models)
