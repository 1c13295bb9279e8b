"""The JSON API: GET /api/config/<scope> and PUT with If-Match, for tokens and browser sessions."""

import json

import pytest
from django.core.management import call_command
from django.test import Client

from config_app import service
from zepix_admin.core.models import ApiToken

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)
URL = "/api/config/combined_v3"


@pytest.fixture
def tokens(config, capsys):
    made = {}
    for role in ("viewer", "operator"):
        call_command("create_token", f"{role}-bot", "--role", role)
        made[role] = capsys.readouterr().out.strip().splitlines()[-1]
    return made


def bearer(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def put(client, document, if_match="1", token=None, **extra):
    headers = {"HTTP_IF_MATCH": f'"{if_match}"'} if if_match is not None else {}
    if token:
        headers.update(bearer(token))
    body = document if isinstance(document, str | bytes) else json.dumps(document)
    return client.put(URL, body, content_type="application/json", **headers, **extra)


def test_create_token_prints_the_token_last_and_stores_only_its_hash(tokens):
    stored = ApiToken.objects.get(name="operator-bot")
    assert stored.token_hash == ApiToken.hash(tokens["operator"])
    assert tokens["operator"] not in str(list(ApiToken.objects.values_list()))


def test_get_gives_version_data_and_an_etag(client, tokens):
    response = client.get(URL, **bearer(tokens["viewer"]))
    assert response.status_code == 200
    assert response["ETag"] == '"1"'
    body = response.json()
    assert body["version"] == 1 and body["data"]["enabled"] is True


def test_put_with_the_current_version_saves(client, tokens):
    document = {**service.active_document("combined_v3"), "max_lot_size": 0.4}
    response = put(client, document, token=tokens["operator"])
    assert response.status_code == 200 and response["ETag"] == '"2"'
    assert service.current("combined_v3").author == "token:operator-bot"
    assert service.current("combined_v3").via == "api"


def test_put_on_a_stale_version_is_409_with_what_changed(client, tokens):
    document = service.active_document("combined_v3")
    put(client, {**document, "max_lot_size": 0.4}, token=tokens["operator"])
    response = put(client, {**document, "enabled": False}, token=tokens["operator"])
    assert response.status_code == 409
    assert response.json()["current_version"] == 2
    assert response.json()["changes"][0]["path"] == "max_lot_size"


def test_put_of_an_invalid_document_is_400_with_the_errors(client, tokens):
    response = put(client, {"enabled": "no", "max_lot_size": 0}, token=tokens["operator"])
    assert response.status_code == 400
    assert {e["path"] for e in response.json()["errors"]} == {"enabled", "max_lot_size"}
    assert put(client, "{broken", token=tokens["operator"]).status_code == 400
    assert (
        put(client, service.active_document("combined_v3"), if_match=None, token=tokens["operator"]).status_code == 400
    )
    assert service.current("combined_v3").version == 1


def test_unknown_scope_is_404_and_a_huge_body_413(client, tokens):
    assert client.get("/api/config/nosuch", **bearer(tokens["viewer"])).status_code == 404
    assert client.get("/api/config/..%2Fetc", **bearer(tokens["viewer"])).status_code == 404
    huge = json.dumps({"enabled": True, "max_lot_size": 1, "symbols": ["EURUSD"] * 200_000})
    assert put(client, huge, token=tokens["operator"]).status_code == 413


def test_anonymous_is_401_a_bad_token_401_and_a_viewer_403(client, tokens):
    assert client.get(URL).status_code == 401
    assert client.get(URL, **bearer("zpx_not-a-token")).status_code == 401
    assert put(client, {"enabled": True, "max_lot_size": 1}).status_code == 401
    assert put(client, service.active_document("combined_v3"), token=tokens["viewer"]).status_code == 403
    assert service.current("combined_v3").version == 1


def test_a_browser_session_needs_the_csrf_token_to_put(tokens, operator):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(operator)
    document = {**service.active_document("combined_v3"), "max_lot_size": 0.3}
    assert put(browser, document).status_code == 403
    browser.get("/config/combined_v3/")
    csrf = browser.cookies["csrftoken"].value
    assert put(browser, document, HTTP_X_CSRFTOKEN=csrf).status_code == 200
    assert service.current("combined_v3").author == operator.username


def test_acks_are_recorded_and_listed_with_behind_and_failed_marks(client, tokens):
    def ack(name, version, ok, error=""):
        return client.post(
            f"{URL}/ack",
            json.dumps({"subscriber": name, "version": version, "ok": ok, "error": error}),
            content_type="application/json",
            **bearer(tokens["viewer"]),
        )

    assert ack("live-1", 1, True).status_code == 200
    assert ack("live-2", 1, True).status_code == 200
    put(client, {**service.active_document("combined_v3"), "max_lot_size": 0.4}, token=tokens["operator"])
    ack("live-1", 2, True)
    ack("live-2", 2, False, "ValueError: lot too small")
    listed = client.get(f"{URL}/subscribers", **bearer(tokens["viewer"])).json()
    states = {s["name"]: (s["applied_version"], s["state"]) for s in listed["subscribers"]}
    assert states == {"live-1": (2, "current"), "live-2": (1, "failed")}
    assert (
        client.post(f"{URL}/ack", "nope", content_type="application/json", **bearer(tokens["viewer"])).status_code
        == 400
    )
