"""A plugin may ship its own JSON Schema for its settings: the page, the API, `config set` and the
file watcher all validate against the built-in plugin schema combined with it."""

import json

import pytest
from django.core.management import CommandError, call_command

from config_app import documents, service

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

OWN = {
    "type": "object",
    "properties": {
        "grid_spacing_pips": {
            "type": "number",
            "minimum": 1,
            "maximum": 100,
            "default": 10,
            "description": "Distance between grid orders",
        },
        "session": {"enum": ["london", "new_york", "asia"], "default": "london"},
    },
}


@pytest.fixture
def own_schema(config, settings):
    path = documents.settings_schema_path("combined_v3")
    path.write_text(json.dumps(OWN))
    yield path
    path.unlink(missing_ok=True)


def test_a_plugins_own_settings_are_validated_everywhere(own_schema, operator_client, capsys):
    saved = service.set_value(
        "combined_v3",
        "grid_spacing_pips",
        12,
        base_version=service.current("combined_v3").version,
        author="test",
        via="test",
    )
    assert saved.document["grid_spacing_pips"] == 12
    with pytest.raises(documents.InvalidDocument, match="must be at most 100"):
        service.set_value("combined_v3", "grid_spacing_pips", 500, base_version=saved.version, author="t", via="t")
    with pytest.raises(documents.InvalidDocument, match="unknown setting"):
        service.set_value("combined_v3", "no_such_setting", 1, base_version=saved.version, author="t", via="t")
    with pytest.raises(documents.InvalidDocument, match="max_lot_size"):  # the built-in rules still hold
        service.set_value("combined_v3", "max_lot_size", -1, base_version=saved.version, author="t", via="t")

    page = operator_client.get("/config/combined_v3/").content.decode()
    assert "grid_spacing_pips" in page and "Distance between grid orders" in page
    current = operator_client.get("/api/config/combined_v3").json()
    refused = operator_client.put(
        "/api/config/combined_v3",
        json.dumps({**current["data"], "session": "mars"}),
        content_type="application/json",
        HTTP_IF_MATCH=f'"{current["version"]}"',
    )
    assert refused.status_code == 400 and "session" in refused.content.decode()
    with pytest.raises(CommandError, match="nothing saved"):
        call_command("config", "set", "combined_v3", "session", '"mars"')
    call_command("config", "set", "combined_v3", "session", '"asia"')
    assert service.current("combined_v3").document["session"] == "asia"


def test_a_broken_own_schema_refuses_saves_with_the_reason_and_the_page_still_shows(own_schema, operator_client):
    own_schema.write_text("{not json")
    with pytest.raises(documents.InvalidDocument, match="combined_v3.schema.json cannot be used"):
        service.set_value("combined_v3", "max_lot_size", 0.5, base_version=1, author="t", via="t")
    assert operator_client.get("/config/combined_v3/").status_code == 200
    own_schema.write_text(json.dumps({"type": "object", "properties": {"max_lot_size": {"type": "string"}}}))
    with pytest.raises(documents.InvalidDocument, match="redefines built-in settings: max_lot_size"):
        service.set_value("combined_v3", "max_lot_size", 0.5, base_version=1, author="t", via="t")


def test_without_its_own_schema_a_plugins_settings_stay_closed(config):
    with pytest.raises(documents.InvalidDocument, match="unknown setting"):
        service.set_value("combined_v3", "grid_spacing_pips", 12, base_version=1, author="t", via="t")


def test_an_own_schema_may_refer_within_itself_and_one_that_refers_elsewhere_is_refused(own_schema, operator_client):
    """A plugin's schema that kept its shapes under $defs validated on its own, but not once
    combined with the built-in schema (its $defs were no longer at the root): every save of the
    plugin's settings answered 500. One referring to another file or address did the same."""
    own_schema.write_text(
        json.dumps(
            {
                "type": "object",
                "$defs": {"pips": {"type": "number", "minimum": 1, "maximum": 100}},
                "properties": {"grid_spacing_pips": {"$ref": "#/$defs/pips", "default": 10}},
            }
        )
    )
    current = operator_client.get("/api/config/combined_v3").json()

    def put(value):
        return operator_client.put(
            "/api/config/combined_v3",
            json.dumps({**current["data"], "grid_spacing_pips": value}),
            content_type="application/json",
            HTTP_IF_MATCH=f'"{current["version"]}"',
        )

    refused = put(500)
    assert refused.status_code == 400 and "must be at most 100" in refused.content.decode()
    assert put(12).status_code == 200
    assert service.current("combined_v3").document["grid_spacing_pips"] == 12
    page = operator_client.get("/config/combined_v3/")
    assert page.status_code == 200 and "grid_spacing_pips" in page.content.decode()

    for elsewhere in ("https://example.com/pips.json", "pips.json", "#/$defs/nowhere"):
        own_schema.write_text(json.dumps({"type": "object", "properties": {"grid_spacing_pips": {"$ref": elsewhere}}}))
        current = operator_client.get("/api/config/combined_v3").json()
        refused = put(13)
        assert refused.status_code == 400, elsewhere
        assert f"refers to {elsewhere}" in refused.content.decode()
        assert operator_client.get("/config/combined_v3/").status_code == 200
    assert service.current("combined_v3").document["grid_spacing_pips"] == 12
