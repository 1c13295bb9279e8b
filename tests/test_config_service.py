"""Every config change is validated, atomic, versioned, conflict-checked and announced."""

import json
import threading

import pytest
from django.db import DatabaseError, close_old_connections, connection, transaction

from config_app import documents, service
from config_app.models import ConfigVersion
from config_app.signals import config_changed
from zepix_admin.core.models import Alert, AuditEntry

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


def save(scope, document, base, author="otto"):
    return service.save(scope, document, base_version=base, author=author, via="test")


def current(scope):
    return service.current(scope)


def test_defaults_are_written_and_recorded_as_version_one(config, settings):
    assert json.loads((settings.CONFIG_DIR / "config.json").read_text())["risk_tiers"]["5000"]["per_trade_cap"] == 50
    assert current("combined_v3").version == 1 and current("combined_v3").document["enabled"] is True


def test_an_invalid_document_is_refused_naming_the_dot_path_and_nothing_changes(config, settings):
    before = (settings.CONFIG_DIR / "config.json").read_text()
    document = json.loads(before)
    document["risk_tiers"]["5000"]["per_trade_cap"] = -5
    with pytest.raises(documents.InvalidDocument) as refused:
        save("global", document, 1)
    assert [(p.path, p.message) for p in refused.value.problems] == [
        ("risk_tiers.5000.per_trade_cap", "must be more than 0")
    ]
    assert (settings.CONFIG_DIR / "config.json").read_text() == before
    assert current("global").version == 1


@pytest.mark.parametrize(
    "document, path",
    [
        ({"enabled": True}, "(document)"),
        ({"enabled": "yes", "max_lot_size": 1}, "enabled"),
        ({"enabled": True, "max_lot_size": 0}, "max_lot_size"),
        ({"enabled": True, "max_lot_size": 1, "mode": "yolo"}, "mode"),
        ({"enabled": True, "max_lot_size": 1, "surprise": 1}, "(document)"),
    ],
)
def test_plugin_documents_are_checked_against_their_schema(config, document, path):
    with pytest.raises(documents.InvalidDocument) as refused:
        save("combined_v3", document, 1)
    assert refused.value.problems[0].path == path


def test_a_save_records_a_version_with_author_diff_and_whole_document(config, settings):
    document = {**current("combined_v3").document, "max_lot_size": 0.5}
    version = save("combined_v3", document, 1)
    assert (version.version, version.author, version.via) == (2, "otto", "test")
    assert version.diff == [{"path": "max_lot_size", "old": 1.0, "new": 0.5, "change": "changed"}]
    assert version.document == document
    assert json.loads((settings.CONFIG_DIR / "plugins" / "combined_v3.json").read_text()) == document
    assert not list((settings.CONFIG_DIR / "plugins").glob(".*.tmp"))
    assert AuditEntry.objects.filter(action="config.save", target="combined_v3", actor="otto").exists()


def test_a_stale_save_is_a_conflict_that_shows_what_changed(config):
    document = current("combined_v3").document
    save("combined_v3", {**document, "max_lot_size": 0.5}, 1, author="alice")
    with pytest.raises(service.ConfigConflict) as conflict:
        save("combined_v3", {**document, "enabled": False}, 1, author="bob")
    assert conflict.value.current.author == "alice"
    assert conflict.value.changes == [{"path": "max_lot_size", "old": 1.0, "new": 0.5, "change": "changed"}]
    assert current("combined_v3").document["enabled"] is True


def test_two_concurrent_saves_on_the_same_base_give_one_success_and_one_conflict(config):
    document = current("combined_v3").document
    barrier, outcomes = threading.Barrier(2), []

    def operator(lot):
        close_old_connections()
        barrier.wait()
        try:
            save("combined_v3", {**document, "max_lot_size": lot}, 1)
            outcomes.append("saved")
        except service.ConfigConflict:
            outcomes.append("conflict")
        finally:
            close_old_connections()

    threads = [threading.Thread(target=operator, args=(lot,)) for lot in (0.3, 0.4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict", "saved"]
    assert ConfigVersion.objects.filter(scope="combined_v3").count() == 2


def test_a_save_that_fails_inside_a_callers_transaction_lets_the_next_saver_in(config):
    """The caller's transaction failed under the config lock (on PostgreSQL its connection then
    refuses every statement until the rollback, its lock's release included): the next save,
    made on another connection, is not held up."""
    document = current("combined_v3").document
    with pytest.raises(DatabaseError), transaction.atomic(), service.config_lock(), connection.cursor() as cursor:
        cursor.execute("SELECT no_such_column FROM config_app_configversion")
    saved = []

    def other_operator():
        close_old_connections()
        try:
            saved.append(save("combined_v3", {**document, "max_lot_size": 0.7}, 1).version)
        finally:
            close_old_connections()

    thread = threading.Thread(target=other_operator, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert saved == [2]


def test_rollback_writes_a_new_version_with_the_old_content(config):
    original = current("combined_v3").document
    save("combined_v3", {**original, "max_lot_size": 0.5}, 1)
    save("combined_v3", {**original, "max_lot_size": 0.6, "enabled": False}, 2)
    rolled = service.rollback("combined_v3", 1, author="otto", via="test")
    assert rolled.version == 4 and rolled.document == original
    assert {c["path"] for c in rolled.diff} == {"enabled", "max_lot_size"}
    with pytest.raises(LookupError):
        service.rollback("combined_v3", 99, author="otto", via="test")


def test_the_signal_carries_scope_version_and_diff(config):
    received = []

    def listener(sender, **kwargs):
        received.append((kwargs["scope"], kwargs["version"], kwargs["diff"]))

    config_changed.connect(listener)
    try:
        save("global", {**current("global").document, "trading_enabled": False}, 1)
    finally:
        config_changed.disconnect(listener)
    assert received == [("global", 2, [{"path": "trading_enabled", "old": True, "new": False, "change": "changed"}])]


def test_an_outside_edit_is_validated_recorded_by_file(config, settings):
    path = settings.CONFIG_DIR / "plugins" / "price_action_v6.json"
    document = {**json.loads(path.read_text()), "max_lot_size": 2.5}
    path.write_text(json.dumps(document))
    version = service.ingest_file("price_action_v6")
    assert (version.version, version.author, version.via) == (2, "file", "file")
    assert version.diff == [{"path": "max_lot_size", "old": 1.0, "new": 2.5, "change": "changed"}]
    assert service.ingest_file("price_action_v6") is None  # nothing new the second time


@pytest.mark.parametrize("text", ['{"enabled": true, "max_lot_size": -1}', "{not json", ""])
def test_an_invalid_outside_edit_changes_nothing_active_and_alerts(config, settings, text):
    path = settings.CONFIG_DIR / "plugins" / "price_action_v6.json"
    path.write_text(text)
    assert service.ingest_file("price_action_v6") is None
    assert current("price_action_v6").version == 1
    assert service.active_document("price_action_v6")["max_lot_size"] == 1.0
    assert path.read_text() == text  # left as the operator wrote it, for them to fix
    alert = Alert.objects.get(source="config", subject="price_action_v6")
    assert "Rejected edit of price_action_v6.json" in alert.message


def test_a_file_left_behind_by_an_interrupted_save_is_repaired(config, settings):
    path = settings.CONFIG_DIR / "plugins" / "combined_v3.json"
    old_text = path.read_text()
    save("combined_v3", {**current("combined_v3").document, "max_lot_size": 0.2}, 1)
    path.write_text(old_text)  # as if the process died between the commit and the file write
    import os

    os.utime(path, (0, 0))
    assert service.ingest_file("combined_v3") is None
    assert json.loads(path.read_text())["max_lot_size"] == 0.2
    assert current("combined_v3").version == 2


def test_a_deleted_file_is_written_back_from_the_active_version(config, settings):
    path = settings.CONFIG_DIR / "config.json"
    path.unlink()
    service.ingest_file("global")
    assert json.loads(path.read_text()) == current("global").document


def test_unknown_scopes_are_refused(config):
    with pytest.raises(documents.UnknownScope):
        save("../etc/passwd", {}, 0)
    with pytest.raises(documents.UnknownScope):
        service.active_document("nosuch")


def test_taking_in_an_outside_edit_leaves_the_operators_file_untouched(config, settings):
    path = settings.CONFIG_DIR / "plugins" / "combined_v3.json"
    text = '{"enabled": false,   "max_lot_size": 0.9}'  # the operator's own formatting
    path.write_text(text)
    assert service.ingest_file("combined_v3").version == 2
    assert path.read_text() == text


@pytest.mark.django_db(databases="__all__")
def test_an_edit_based_on_a_version_whose_document_was_pruned_is_a_conflict_and_saves_nothing(operator_client, config):
    config("combined_v3", "max_lot_size", 0.5)
    ConfigVersion.objects.filter(scope="combined_v3", version=1).update(document=None)  # pruned by age
    response = operator_client.post(
        "/config/combined_v3/row",
        {"path": "max_lot_size", "value": "0.7", "base_version": "1"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert "changed" in response.content.decode().lower()
    assert service.current("combined_v3").version == 2


@pytest.mark.django_db(databases="__all__")
def test_a_scope_without_a_saved_version_answers_404_not_a_server_error(operator_client, config):
    document = service.current("combined_v3").document
    ConfigVersion.objects.filter(scope="combined_v3").delete()
    response = operator_client.get("/api/config/combined_v3")
    assert response.status_code == 404 and "no saved version yet" in response.json()["error"]
    response = operator_client.put(
        "/api/config/combined_v3", json.dumps(document), content_type="application/json", HTTP_IF_MATCH='"3"'
    )
    assert response.status_code == 404, response.content
