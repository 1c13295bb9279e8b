"""The console as an attacker and as low-privilege users try it: no request stalls the server,
bad input is a 400 with a clear message and never a 500, roles cannot be raised from below,
every change and every login is audited."""

import contextlib
import csv
import http.client
import io
import json
import os
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
import zstandard
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.db import OperationalError, connections
from django.utils import timezone

from config_app import documents
from config_app import service as config_service
from config_app.models import ConfigVersion
from plugins_app import plugins, registry, schema
from plugins_app.store import PluginStore
from sync_app import backup as backups
from sync_app.models import Backup, JobState
from sync_app.tasks import MANUAL_BACKUP, manual_backup_task
from tests.helpers import Server, asked_for_and_still_queued, closed_trade, trade
from tests.test_several_nodes import config_api
from zepix_admin.core import access, alerts
from zepix_admin.core.files import write_atomic
from zepix_admin.core.limits import statement_time_limit, timed_out
from zepix_admin.core.models import AuditEntry

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)
TRADES = "/admin/plugin_combined_v3/trade/"


# 1. No request can stall the server ---------------------------------------------------


@pytest.mark.parametrize(
    "lookup",
    [
        "signal_data__regex=(.*.*)*%24x",
        "signal_data__note__contains=x",
        "symbol__iregex=x",
        "entry_price__gt=1",
        "id__in=1,2",
    ],
)
def test_the_trade_admin_refuses_lookups_its_filters_do_not_make(viewer_client, config, lookup):
    response = viewer_client.get(f"{TRADES}?{lookup}")
    assert response.status_code == 400


def test_the_trade_admin_still_takes_its_own_filters(viewer_client, config):
    with PluginStore(plugins.database_path("combined_v3")) as store:
        store.save_trades([trade(1), closed_trade(2, 5.0)])
    for query in (
        "status__exact=CLOSED",
        "symbol=EURUSD",
        "close_reason__isnull=True",
        "entry_time__year=2026",
        "entry_time__year=2026&entry_time__month=11",
        "q=EUR",
        "o=1",
    ):
        assert viewer_client.get(f"{TRADES}?{query}").status_code == 200, query


def test_a_statement_over_the_time_limit_is_stopped_and_explained(config):
    slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT COUNT(*) FROM n"
    started = time.monotonic()
    with (
        statement_time_limit(0.2),
        pytest.raises(OperationalError) as stopped,
        connections["default"].cursor() as cursor,
    ):
        cursor.execute(slow)
    assert timed_out(stopped.value)  # SQLite's "interrupted", PostgreSQL's statement timeout
    assert time.monotonic() - started < 2
    with connections["default"].cursor() as cursor:  # the limit ends with its block
        cursor.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000) SELECT COUNT(*) FROM n"
        )
        assert cursor.fetchone() == (300000,)


def test_a_connection_lost_as_a_request_sets_its_time_limit_is_said_as_the_database_not_answering(config):
    """On PostgreSQL a request's first query sets its statement_timeout on the raw connection: a
    connection lost there (its server or the network gone after the pool had checked it) raised
    psycopg's own error, which is no outage to Django's handler: a 500 instead of the 503 that
    says the database does not answer."""
    import socket

    from zepix_admin.core.databases import outage

    if connections["default"].vendor != "postgresql":
        pytest.skip("the central database is SQLite in this run: its limit takes no round trip")
    connections["default"].ensure_connection()
    raw = connections["default"].connection
    with closing(socket.socket(fileno=os.dup(raw.pgconn.socket))) as duplicate:
        duplicate.shutdown(socket.SHUT_RDWR)
    try:
        with statement_time_limit(5), pytest.raises(OperationalError) as lost:
            AuditEntry.objects.count()
        away = outage(lost.value)
        assert away is not None and away.what == "The central database (PostgreSQL) does not answer"
    finally:
        connections["default"].close()  # the pool drops it


def test_a_streams_query_waiting_on_a_held_row_is_stopped_at_a_requests_time_limit(config, settings):
    """A stream's queries run after its response began, outside the request's time limit: the
    hub's keepalive (marking its subscribers still there), awaited in the hub's loop, waited as
    long as another transaction held a subscriber's row, and every stream of the node with it."""
    import psycopg

    from config_app.models import Subscriber
    from config_app.stream import mark_still_connected

    if connections["default"].vendor != "postgresql":
        pytest.skip("the central database is SQLite in this run: a held row is a held file, its busy timeout")
    settings.STATEMENT_TIME_LIMIT_SECONDS = 1
    Subscriber.objects.create(name="bot-1", scope="combined_v3", connected=True, last_seen_at=timezone.now())
    params = connections["default"].get_connection_params()
    params.pop("cursor_factory", None)
    with psycopg.connect(**params) as holder:
        holder.execute("SELECT * FROM config_app_subscriber WHERE name = 'bot-1' FOR UPDATE")
        outcome = []

        def keepalive():
            try:
                mark_still_connected([("bot-1", "combined_v3")])
                outcome.append("marked")
            except OperationalError as error:
                outcome.append(timed_out(error))

        marking = threading.Thread(target=keepalive, daemon=True)
        marking.start()
        marking.join(timeout=8)
        assert outcome == [True]  # stopped at its limit, not waiting for the row


def test_a_request_over_the_time_limit_answers_400_with_what_to_do(viewer_client, config, settings):
    settings.STATEMENT_TIME_LIMIT_SECONDS = 0.0001
    with PluginStore(plugins.database_path("combined_v3")) as store:
        store.save_trades([trade(n) for n in range(1, 3000)])
    response = viewer_client.get(f"{TRADES}?o=-6")  # ordered by an unindexed column: a sort of every row
    assert response.status_code == 400
    assert "narrow the filters" in response.content.decode()


@pytest.mark.parametrize("alias", ["default", "plugin_combined_v3"])
def test_a_restore_from_the_page_longer_than_a_requests_time_limit_is_done_and_audited(
    admin_client, config, settings, monkeypatch, alias
):
    """A restore is a long job by nature (a large file checked and decompressed, a PostgreSQL
    dump read back): under a request's time limit, the central database's restore on PostgreSQL
    failed once the limit had passed (its first statement after it was stopped: "Nothing was
    restored"), and a plugin's was done and then answered 400, unaudited."""
    made = backups.backup_database(alias)
    settings.STATEMENT_TIME_LIMIT_SECONDS = 1.2
    checked = backups.check_backup_file

    def large_file(*args, **kwargs):  # as a large backup takes its time
        time.sleep(2.5)
        return checked(*args, **kwargs)

    monkeypatch.setattr(backups, "check_backup_file", large_file)
    answer = admin_client.post(f"/backups/{made.pk}/restore", {"confirm": made.database}, follow=True)
    assert answer.status_code == 200
    assert f"Restored {alias} from backup {made.pk}" in answer.content.decode()
    assert AuditEntry.objects.filter(action="backup.restore", target=alias).exists()


def test_a_hosts_whole_file_longer_to_take_in_than_a_requests_time_limit_is_taken(
    client, config, settings, monkeypatch, tmp_path
):
    """A bot host's first shipping sends its whole file, checked, mirrored and synced in the
    request (200,000 trades: 4-6 s on SQLite): on PostgreSQL its sync was stopped once the
    request's time limit had passed, and the host sent the file again at every interval."""
    from sync_app import shipping
    from sync_app.models import AggregatedTrade

    token = access.create_token("host-a", "plugin-host", ["combined_v3"])
    on_the_host = tmp_path / "combined_v3.sqlite3"
    with (
        closing(sqlite3.connect(plugins.database_path("combined_v3"))) as empty,
        closing(sqlite3.connect(on_the_host)) as copy,
    ):
        empty.backup(copy)
    with PluginStore(on_the_host) as store:
        store.save_trades([trade(n) for n in range(1, 41)])
    settings.STATEMENT_TIME_LIMIT_SECONDS = 1.2
    received = shipping._receive

    def large_file(*args):  # as a large file takes its time to arrive and decompress
        received(*args)
        time.sleep(2.5)

    monkeypatch.setattr(shipping, "_receive", large_file)
    answer = client.post(
        "/api/sync/combined_v3/snapshot",
        data=zstandard.ZstdCompressor().compress(on_the_host.read_bytes()),
        content_type="application/octet-stream",
        HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_CONTENT_ENCODING="zstd",
    )
    assert answer.status_code == 200, answer.content
    assert AggregatedTrade.objects.filter(plugin_id="combined_v3").count() == 40
    assert AuditEntry.objects.filter(action="sync.snapshot", target="combined_v3").exists()


@pytest.mark.slow
def test_healthz_answers_quickly_while_hostile_requests_run(tmp_path):
    server = Server(tmp_path)
    try:
        hostile = f"{server.url}{TRADES}?signal_data__regex=(.*.*)*%24x&signal_data__contains=x"
        answers = []

        def attack():
            request = urllib.request.Request(hostile, headers={"Authorization": f"Bearer {server.viewer_token}"})
            try:
                urllib.request.urlopen(request, timeout=30).close()
            except urllib.error.HTTPError as error:
                answers.append(error.code)

        attackers = [threading.Thread(target=attack) for _ in range(4)]
        for thread in attackers:
            thread.start()
        timings = []
        for _ in range(10):
            started = time.monotonic()
            with contextlib.suppress(urllib.error.HTTPError):  # 503 (no worker in this test) is an answer too
                urllib.request.urlopen(f"{server.url}/healthz", timeout=5).close()
            timings.append(time.monotonic() - started)
        for thread in attackers:
            thread.join(30)
        assert answers == [400] * 4
        # Not queued behind the hostile requests (each runs up to the 5 s statement limit): every
        # health check answers in well under half of it, however loaded this shared machine is.
        assert max(timings) < 2.5, timings
    finally:
        server.stop()


def answer_to_a_body_never_finished(server, method: str, path: str, headers: dict, body: bytes) -> tuple[int, bytes]:
    """Sends a request's head and the first part of its body, never the rest: the status and the
    body of the server's answer, which cannot have waited for (nor stored) the whole body."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
    try:
        connection.putrequest(method, path)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        connection.send(body)
        answer = connection.getresponse()  # a server still waiting for the body: a timeout here
        return answer.status, answer.read()
    finally:
        connection.close()


@pytest.mark.slow
def test_a_body_over_its_limit_is_answered_without_the_server_reading_it_all(tmp_path):
    """Django reads a request's whole body before anything else looks at the request: one
    anonymous upload could fill the central's disk. Past the limit the rest is dropped unread,
    and the request is answered as before: refused for its credentials, or for its size."""
    server = Server(tmp_path)
    try:
        half_a_megabyte = os.urandom(512 * 1024)
        # Anonymous, announcing 200 MB: refused for its credentials, at once.
        snapshot = {"Content-Encoding": "zstd", "Content-Length": str(200 << 20)}
        status, _ = answer_to_a_body_never_finished(
            server, "POST", "/api/sync/combined_v3/snapshot", snapshot, half_a_megabyte
        )
        assert status == 401
        # An operator's config document of 50 MB: the API's own answer, that it is too large.
        operator = {"Authorization": f"Bearer {server.token}"}
        document = {**operator, "If-Match": '"1"', "Content-Type": "application/json", "Content-Length": str(50 << 20)}
        status, answer = answer_to_a_body_never_finished(
            server, "PUT", "/api/config/combined_v3", document, half_a_megabyte
        )
        assert status == 413 and b"larger than 1 MB" in answer
        # A body in chunks without an end, and so without a length: cut once past the limit.
        chunk = b"%x\r\n%s\r\n" % (len(half_a_megabyte), half_a_megabyte)
        chunked = {**operator, "Transfer-Encoding": "chunked"}
        status, _ = answer_to_a_body_never_finished(server, "POST", "/api/config/combined_v3/ack", chunked, chunk * 6)
        assert status == 400
        assert config_api(server.url, server.token)["version"] == 1  # nothing saved, the server answers as before
    finally:
        server.stop()


@pytest.mark.slow
def test_a_bots_reads_do_not_wait_behind_a_long_write_on_the_central_database(tmp_path):
    """A sync holds the central SQLite file's write lock for seconds: a bot reading its config
    with a token must not wait for it (each use of a token was written down, a write)."""
    server = Server(tmp_path)
    url = f"{server.url}/api/config/combined_v3"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {server.viewer_token}"})
    try:
        urllib.request.urlopen(request, timeout=10).close()  # its first use is recorded
        with closing(sqlite3.connect(tmp_path / "data" / "central.sqlite3", isolation_level=None)) as writer:
            writer.execute("BEGIN IMMEDIATE")  # as a sync's transaction does, for as long as it runs
            started = time.monotonic()
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200 and json.load(response)["scope"] == "combined_v3"
            waited = time.monotonic() - started
            writer.execute("ROLLBACK")
        assert waited < 3, waited  # the busy timeout it would wait out is 20 s
    finally:
        server.stop()


# 2. restore_backup restores only a backup of that database -----------------------------


def empty_zstd(path: Path) -> Path:
    import zstandard

    path.write_bytes(zstandard.ZstdCompressor().compress(b""))
    return path


def test_restore_refuses_files_that_are_not_a_backup_of_that_database(config, tmp_path):
    central = backups.backup_database("default")
    bots_own = tmp_path / "bot.sqlite3"  # the seed's shape, as the bot makes it: never declared here
    with closing(sqlite3.connect(bots_own)) as bot:
        bot.executescript(schema.SEED_DDL)
    backups.compress(bots_own, tmp_path / "bot.sqlite3.zst")
    zero = tmp_path / "zero.sqlite3.zst"
    zero.write_bytes(b"")
    before = plugins.database_path("price_action_v6").read_bytes()
    for reference, why in (
        (str(zero), "cannot be decompressed|not a backup"),
        (str(empty_zstd(tmp_path / "empty.sqlite3.zst")), "not a backup of plugin_price_action_v6"),
        (central.path, "is of default, not plugin_price_action_v6"),
        (
            str(tmp_path / "bot.sqlite3.zst"),
            "not a backup of plugin_price_action_v6: it has no table signals .*--adopt",
        ),
        (str(tmp_path), "not a backup file"),
    ):
        with pytest.raises(CommandError, match=f"Nothing was restored: .*({why})"):
            call_command("restore_backup", reference, "--db", "plugin_price_action_v6")
    assert plugins.database_path("price_action_v6").read_bytes() == before


# 3. Reserved names ----------------------------------------------------------------------


@pytest.mark.parametrize("plugin_id", ["global", "default", "admin", "api", "healthz"])
def test_reserved_names_are_never_plugin_ids(config, plugin_id):
    with pytest.raises(CommandError, match="reserved"):
        call_command("startplugin", plugin_id)
    assert not (settings.CONFIG_DIR / "plugins" / f"{plugin_id}.json").exists()
    (settings.CONFIG_DIR / "plugins" / f"{plugin_id}.json").write_text("{}")
    try:
        assert plugin_id not in registry.declared_plugins(settings.CONFIG_DIR)
    finally:
        (settings.CONFIG_DIR / "plugins" / f"{plugin_id}.json").unlink()


# 4. Input that answered 500 ---------------------------------------------------------------


def api_put(client, scope, body: str, version: int):
    return client.put(
        f"/api/config/{scope}", body, content_type="application/json", headers={"If-Match": f'"{version}"'}
    )


@pytest.mark.parametrize(
    "text, said",
    [
        ('{"max_lot_size": NaN}', "NaN is not a number"),
        ('{"max_lot_size": Infinity}', "Infinity is not a number"),
        ('{"max_lot_size": 1e999}', "out of range"),
        ("[" * 100_000 + "]" * 100_000, "nested deeper"),
        ('{"max_open_trades": ' + "9" * 5000 + "}", "out of range"),
        ('{"mode": "paper", "mode": "live"}', "appears twice"),
    ],
)
def test_the_api_refuses_json_that_would_fail_later_with_a_400(operator_client, config, text, said):
    response = api_put(operator_client, "combined_v3", text, 1)
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert said in json.dumps(response.json())
    assert ConfigVersion.objects.filter(scope="combined_v3").count() == 1


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", "1e999", "9" * 5000])
def test_the_inline_editor_refuses_numbers_out_of_range(operator_client, config, value):
    response = operator_client.post(
        "/config/combined_v3/row", {"path": "max_lot_size", "value": value, "base_version": "1"}
    )
    assert "Not saved: " in response.content.decode() and "not a number in range" in response.content.decode()
    assert config_service.current("combined_v3").version == 1


def test_config_set_refuses_nan_clearly(config):
    with pytest.raises(CommandError, match="NaN is not a number"):
        call_command("config", "set", "combined_v3", "max_lot_size", "NaN")


@pytest.mark.parametrize(
    "body",
    [
        {"subscriber": "bot", "version": -5, "ok": True},
        {"subscriber": "bot", "version": 99999999999999999999999, "ok": True},
        {"subscriber": "bot", "version": 1, "ok": "false"},
        {"subscriber": "bot", "version": True, "ok": True},
        {"subscriber": 7, "version": 1, "ok": True},
        [1, 2],
    ],
)
def test_an_ack_takes_only_a_version_number_and_a_boolean(viewer_client, config, body):
    response = viewer_client.post("/api/config/combined_v3/ack", json.dumps(body), content_type="application/json")
    assert response.status_code == 400 and "version" in response.json()["error"]


def test_the_api_answers_json_for_a_missing_trailing_slash_and_unknown_scope(operator_client, config):
    response = operator_client.get("/api/config/nope")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"


# 5. Outside edits ------------------------------------------------------------------------


def rejected(scope):
    return AuditEntry.objects.filter(action="config.rejected", target=scope).count()


@pytest.mark.parametrize(
    "make, said",
    [
        (lambda path: path.write_text('{"max_lot_size": NaN}'), "NaN is not a number"),
        (lambda path: path.write_text("[" * 5000 + "]" * 5000), "nested deeper"),
        (lambda path: (path.unlink(), path.mkdir()), "not a regular file"),
        (lambda path: (path.unlink(), os.mkfifo(path)), "not a regular file"),
        (lambda path: (path.unlink(), path.symlink_to("/etc/passwd")), "symbolic link"),
        (lambda path: path.write_bytes(b" " * (2 * 1024 * 1024)), "larger than 1 MB"),
    ],
)
def test_every_rejected_outside_edit_is_alerted_and_audited_and_nothing_hangs(config, make, said):
    path = documents.document_path("combined_v3")
    make(path)
    try:
        started = time.monotonic()
        assert config_service.ingest_file("combined_v3") is None
        assert time.monotonic() - started < 2
        alert = alerts.open_alerts().get(source="config", subject="combined_v3")
        assert said in alert.message and "/etc/passwd" not in alert.message and "root:" not in alert.message
        assert rejected("combined_v3") == 1
        assert config_service.current("combined_v3").version == 1
    finally:
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink()
        write_atomic(path, documents.render(config_service.current("combined_v3").document))


def test_config_validate_on_a_folder_says_so(config, tmp_path):
    with pytest.raises(CommandError):
        call_command("config", "validate", str(tmp_path))


# 6. Bounded growth ----------------------------------------------------------------------


def test_history_keeps_every_diff_but_old_documents_only_within_retention(config, admin_client, settings):
    from config_app import service

    for lot in (0.2, 0.3, 0.4):
        config("combined_v3", "max_lot_size", lot)
    ConfigVersion.objects.filter(scope="combined_v3").update(created_at=timezone.now() - timedelta(days=200))
    settings_keep = service.HISTORY_KEEP_VERSIONS
    service.HISTORY_KEEP_VERSIONS = 2
    try:
        assert service.prune_history() == 2  # versions 1 and 2; 3 is within the last two, 4 is active
    finally:
        service.HISTORY_KEEP_VERSIONS = settings_keep
    kept = dict(
        ConfigVersion.objects.filter(scope="combined_v3").with_document_kept().values_list("version", "document_kept")
    )
    assert kept == {1: False, 2: False, 3: True, 4: True}
    assert ConfigVersion.objects.get(scope="combined_v3", version=2).diff  # the diff stays
    with pytest.raises(LookupError, match="history keeps whole documents"):
        service.rollback("combined_v3", 2, author="test", via="test")
    page = admin_client.get("/config/combined_v3/history/").content.decode()
    assert "Page 1 of 1" in page


def test_the_audit_entry_of_a_save_names_paths_not_values(config):
    config("combined_v3", "symbols", ["AUDCAD"])
    entry = AuditEntry.objects.filter(action="config.save").latest("id")
    assert entry.details["changed"] and "AUDCAD" not in json.dumps(entry.details)
    assert "AUDCAD" in json.dumps(ConfigVersion.objects.get(scope="combined_v3", version=2).diff)


def test_the_stream_cache_is_bounded_by_bytes():
    from config_app import stream

    hub = stream.Hub()
    big = json.dumps({"blob": "x" * 900_000})
    rows = [(n, "combined_v3", n, "a", "api", "2026-11-25 10:00:00", "", "[]", big, 0) for n in range(1, 41)]
    hub.remember([(stream.event_from_row(row), stream.row_bytes(row), {}) for row in rows])
    assert hub.recent_bytes <= stream.CACHE_BYTES and len(hub.recent) == stream.CACHE_BYTES // 900_002
    assert hub.events_after(1, "combined_v3") is None  # beyond the cache: the database answers
    assert [event["version"] for event in hub.events_after(38, "combined_v3")] == [39, 40]  # oldest first
    assert [event["version"] for event in hub.events_after(38, None)] == [39, 40]
    assert hub.events_after(38, "price_action_v6") == [] and hub.events_after(40, None) == []


def test_a_stream_busy_with_versions_gets_no_keepalive_and_an_idle_one_does(monkeypatch, config):
    """Each keepalive marks the streams' subscribers as still there: between saves those writes
    held the next save back (a hub that ticked every KEEPALIVE_SECONDS whatever happened)."""
    import asyncio

    from asgiref.sync import sync_to_async

    from config_app import stream
    from config_app.models import Subscriber

    monkeypatch.setattr(stream, "KEEPALIVE_SECONDS", 0.6)
    messages: list[bytes] = []

    @stream.gives_the_connection_back  # asgiref's thread keeps no PostgreSQL session past the test
    def subscriber_row():
        return Subscriber.objects.get(name="bot-1")

    async def subscribe() -> list[bytes]:
        async def read():
            async for message in stream.async_events("combined_v3", None, "bot-1"):
                messages.append(message)

        reader = asyncio.create_task(read())
        try:
            await asyncio.sleep(0.3)
            for n in range(8):  # a version every 0.25 s for 2 s: never 0.6 s without one
                await sync_to_async(config)("combined_v3", "max_lot_size", round(0.5 + n / 100, 2))
                await asyncio.sleep(0.25)
            deadline = time.monotonic() + 5  # on a loaded machine the last one may come after the pause
            while sum(b"event: version" in message for message in messages) < 8 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            busy = list(messages)
            seen_busy.append(await sync_to_async(subscriber_row)())
            await asyncio.sleep(1.5)  # then nothing: the hub looks every second, past 0.6 s idle
            seen_idle.append(await sync_to_async(subscriber_row)())
            return busy
        finally:
            reader.cancel()
            stream._hubs.pop(id(asyncio.get_running_loop()), None)

    result: list = []
    seen_busy: list = []
    seen_idle: list = []
    worker = threading.Thread(target=lambda: result.append(asyncio.run(subscribe())))  # a loop of its own
    worker.start()
    worker.join(30)
    [busy] = result
    assert sum(b"event: version" in message for message in busy) == 8
    assert b": keepalive\n\n" not in busy
    assert b": keepalive\n\n" in messages[len(busy) :]
    assert seen_idle[0].connected and seen_idle[0].last_seen_at > seen_busy[0].last_seen_at  # marked by the hub


def test_a_stream_busy_when_versions_came_sends_each_of_its_scope_once_in_order(config):
    """The hub wakes every stream once per look at the versions; a stream busy writing at that
    moment (a slow subscriber), or woken by another scope's version, must neither lose a version
    nor send one twice, nor take another scope's version for a keepalive."""
    import asyncio

    from asgiref.sync import sync_to_async

    from config_app import stream

    async def subscribe() -> tuple[list[bytes], list[bytes]]:
        slow: list[bytes] = []
        other_scope: list[bytes] = []

        async def read(events, into: list[bytes], busy_after_first_version: float):
            async for message in events:
                into.append(message)
                if b"event: version" in message and busy_after_first_version:
                    await asyncio.sleep(busy_after_first_version)  # the next versions come meanwhile
                    busy_after_first_version = 0

        readers = [
            asyncio.create_task(read(stream.async_events("combined_v3", None, ""), slow, 0.8)),
            asyncio.create_task(read(stream.async_events("price_action_v6", None, ""), other_scope, 0)),
        ]
        try:
            await asyncio.sleep(0.3)
            for n in range(3):
                await sync_to_async(config)("combined_v3", "max_lot_size", round(0.6 + n / 100, 2))
                await sync_to_async(config)("price_action_v6", "max_lot_size", round(0.7 + n / 100, 2))
                await asyncio.sleep(0.05)
            await asyncio.sleep(2.5)  # the slow stream catches up; the hub looks twice more meanwhile
            return slow, other_scope
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            stream._hubs.pop(id(asyncio.get_running_loop()), None)

    result: list = []
    worker = threading.Thread(target=lambda: result.append(asyncio.run(subscribe())))  # a loop of its own
    worker.start()
    worker.join(30)
    [(slow, other_scope)] = result
    for messages, scope in ((slow, "combined_v3"), (other_scope, "price_action_v6")):
        assert messages[0] == b"retry: 1000\n\n"
        events = [json.loads(message.split(b"data: ", 1)[1]) for message in messages[1:]]  # no keepalive among them
        assert [(event["scope"], event["version"]) for event in events] == [(scope, 2), (scope, 3), (scope, 4)]


def test_clicks_on_back_up_now_while_one_is_queued_are_coalesced(operator_client, config):
    with asked_for_and_still_queued(MANUAL_BACKUP, manual_backup_task):
        answer = operator_client.post("/backups/start", follow=True).content.decode()
        assert "already queued or running" in answer
        assert Backup.objects.count() == 0
    operator_client.post("/backups/start")
    assert Backup.objects.count() == 3 and not JobState.objects.filter(name=MANUAL_BACKUP).exists()


# 7. Roles that mean something -------------------------------------------------------------


@pytest.fixture
def admin_role_client(client, make_user):
    user = make_user("adele_admin_role", access.ADMIN, staff=True)
    client.force_login(user)
    return client, user


def test_the_admin_role_cannot_make_itself_or_others_superuser(admin_role_client, make_user):
    client, user = admin_role_client
    page = client.get(f"/admin/auth/user/{user.pk}/change/").content.decode()
    assert 'name="is_superuser"' not in page
    other = make_user("omar_operator", access.OPERATOR)
    admin_group = Group.objects.get_or_create(name=access.ADMIN)[0]
    page = client.get(f"/admin/auth/user/{other.pk}/change/").content.decode()
    assert f'value="{admin_group.pk}"' not in page


def test_a_superuser_cannot_be_edited_by_the_admin_role(admin_role_client, django_user_model):
    client, _ = admin_role_client
    boss = django_user_model.objects.create_superuser("boss", password="pw-for-tests-123")
    assert client.get(f"/admin/auth/user/{boss.pk}/change/").status_code in (302, 403)
    assert client.post(f"/admin/auth/user/{boss.pk}/delete/", {"post": "yes"}).status_code in (302, 403)
    assert django_user_model.objects.filter(username="boss").exists()


def test_a_token_is_never_an_admin_whatever_its_groups(config):
    raw = access.create_token("bot", "operator")
    user = access.user_for_token(raw)
    user.groups.add(Group.objects.get_or_create(name=access.ADMIN)[0])
    assert access.role_of(access.user_for_token(raw)) == access.OPERATOR


def test_a_tokens_role_follows_its_groups_and_a_deactivated_tokens_user_is_refused(client, config):
    from django.contrib.auth import get_user_model

    raw = access.create_token("bot", "viewer")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    assert client.get("/api/config/combined_v3", **headers).status_code == 200
    document = client.get("/api/config/combined_v3", **headers).json()["data"]
    put = lambda: client.put(  # noqa: E731
        "/api/config/combined_v3", document, content_type="application/json", HTTP_IF_MATCH='"1"', **headers
    )
    assert put().status_code == 403
    access.set_role(get_user_model().objects.get(username="token:bot"), access.OPERATOR)
    assert put().status_code == 200
    get_user_model().objects.filter(username="token:bot").update(is_active=False)
    assert client.get("/api/config/combined_v3", **headers).status_code == 401
    assert client.get("/api/config/combined_v3", HTTP_AUTHORIZATION="Bearer zpx_not-a-token").status_code == 401


def test_a_tokens_last_use_is_written_at_most_once_a_minute(client, config):
    from datetime import timedelta

    from django.utils import timezone

    from zepix_admin.core.models import ApiToken

    raw = access.create_token("bot", "viewer")
    tokens = ApiToken.objects.filter(name="bot")
    assert tokens.get().last_used_at is None
    client.get("/api/config/combined_v3", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert timezone.now() - tokens.get().last_used_at < timedelta(seconds=10)
    half_a_minute_ago = timezone.now() - timedelta(seconds=30)
    tokens.update(last_used_at=half_a_minute_ago)
    client.get("/api/config/combined_v3", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert tokens.get().last_used_at == half_a_minute_ago  # not written again within the minute
    tokens.update(last_used_at=timezone.now() - timedelta(seconds=61))
    client.get("/api/config/combined_v3", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert timezone.now() - tokens.get().last_used_at < timedelta(seconds=10)


def test_changes_in_the_admin_and_token_deletions_are_audited(admin_client, config):
    access.create_token("bot", "viewer")
    token = __import__("zepix_admin.core.models", fromlist=["ApiToken"]).ApiToken.objects.get(name="bot")
    admin_client.post(f"/admin/zepix_admin/apitoken/{token.pk}/delete/", {"post": "yes"})
    entry = AuditEntry.objects.filter(action="admin.delete").get()
    assert entry.actor == "ada_admin" and "bot" in entry.target


# 8. Logins ---------------------------------------------------------------------------------


def test_repeated_wrong_passwords_lock_the_account_out_and_everything_is_audited(client, operator, config):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/login/", {"username": operator.username, "password": "wrong"})
    locked = client.post("/login/", {"username": operator.username, "password": "pw-for-tests-123"})
    assert locked.status_code == 429 and "locked" in locked.content.decode()
    assert AuditEntry.objects.filter(action="auth.login_failed", target=operator.username).count() >= 5
    assert not AuditEntry.objects.filter(action="auth.login").exists()


def test_the_admin_login_is_locked_out_too(client, operator, config):
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        response = client.post("/admin/login/", {"username": operator.username, "password": "wrong"})
    assert response.status_code == 429


def test_a_login_is_audited_and_an_idle_session_ends(client, operator, config, settings):
    response = client.post("/login/", {"username": operator.username, "password": "pw-for-tests-123"})
    assert response.status_code == 302
    assert AuditEntry.objects.filter(action="auth.login", actor=operator.username).exists()
    assert client.get("/").status_code == 200
    session = client.session
    session["zepix_last_activity"] = int(time.time()) - settings.SESSION_IDLE_SECONDS - 5
    session.save()
    response = client.get("/")
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert "logged out after a period without activity" in client.get("/login/").content.decode()


def test_polling_does_not_keep_an_idle_session_alive(client, operator, config, settings):
    client.force_login(operator)
    session = client.session
    session["zepix_last_activity"] = started = int(time.time()) - 60
    session.save()
    client.get("/?fragment=cards", headers={"HX-Request": "true"})
    assert client.session["zepix_last_activity"] == started


# 9. /healthz tells anonymous callers little (see test_alert_path for the names) ---------------


def test_healthz_shows_no_paths_or_sizes_to_anonymous_callers(client, config):
    body = client.get("/healthz").content.decode()
    assert str(settings.DATA_DIR) not in body and "size_bytes" not in body and "free_bytes" not in body


# 10. The rest ------------------------------------------------------------------------------


def test_csv_exports_neutralise_formulas(viewer_client, config):
    from sync_app.sync import run_sync

    with PluginStore(plugins.database_path("combined_v3")) as store:
        store.save_trade(**trade(1, symbol='=HYPERLINK("http://x")'))
    run_sync(trigger="command")
    body = b"".join(viewer_client.get("/trades/?format=csv").streaming_content).decode()
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[1][2] == '\'=HYPERLINK("http://x")'


def test_a_webhook_url_with_a_space_is_refused_by_the_schema(config):
    with pytest.raises(documents.InvalidDocument):
        config("global", "sync.alert_webhook_url", "http://hooks.example.com/a b")


def test_the_webhook_never_posts_to_loopback_or_private_addresses(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://169.254.169.254/latest", "http://[::1]/x"):
        assert "inside the network" in alerts.webhook_refusal(url), url


@pytest.fixture
def redirecting_webhook():
    """A webhook on loopback that answers every post with a redirect to another server, which
    records what reaches it (any method): (the webhook's url, what the other server got)."""
    import http.server

    reached = []

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{servers[1].server_port}/latest/meta-data/")
            self.end_headers()

        def log_message(self, *args):
            pass

    class Target(Redirect):
        def do_GET(self):
            reached.append((self.command, self.path))
            self.send_response(200)
            self.end_headers()

        do_POST = do_GET

    servers = [http.server.HTTPServer(("127.0.0.1", 0), handler) for handler in (Redirect, Target)]
    for server in servers:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{servers[0].server_port}/hook", reached
    for server in servers:
        server.shutdown()
        server.server_close()


def test_the_webhook_follows_no_redirect(config, redirecting_webhook):
    """A public webhook that redirects would lead the post anywhere (the cloud's metadata
    service): urllib followed a 302 with a GET."""
    url, received = redirecting_webhook
    config("global", "sync.alert_webhook_url", url)
    alert = alerts.raise_alert("disk", "data", "Low disk", level="CRITICAL")
    assert alerts.post_webhook(url, alert) is False
    alerts.wait_for_posts()  # and the post raise_alert queued
    assert received == []


def test_the_webhook_is_not_posted_to_a_name_that_resolves_inside_the_network_once_checked(
    settings, webhook_receiver, monkeypatch
):
    """A name checked as public may answer 127.0.0.1 when the post connects (DNS rebinding): the
    address connected to is checked too. (The resolver is replaced: no DNS server of ours runs here.)"""
    import socket

    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    target, posted = webhook_receiver
    port = int(target.rsplit(":", 1)[1].split("/")[0])
    real = socket.getaddrinfo
    answers = iter(["93.184.216.34"])  # public the first time, loopback after

    def rebinding(host, *args, **kwargs):
        if host != "hooks.example.test":
            return real(host, *args, **kwargs)
        return real(next(answers, "127.0.0.1"), *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = f"http://hooks.example.test:{port}/hook"
    alert = alerts.raise_alert("disk", "data", "Low disk", level="CRITICAL")
    assert alerts.post_webhook(url, alert) is False
    assert posted() == []


@pytest.mark.slow
def test_setup_refuses_a_weak_first_admin_password(tmp_path):
    from tests.helpers import fresh_env, manage

    result = manage("setup", "--no-demo", env=fresh_env(tmp_path, DJANGO_SUPERUSER_PASSWORD="1"))
    assert result.returncode != 0 and "DJANGO_SUPERUSER_PASSWORD is refused" in result.stderr


def test_migrate_legacy_refuses_a_bad_date_and_a_row_the_plugin_refuses(config, tmp_path):
    from tests.test_archive_and_legacy import make_legacy_db

    source = make_legacy_db(tmp_path / "zepix_bot.db")
    with pytest.raises(CommandError, match="--since must be a date"):
        call_command(
            "migrate_legacy", "--source", str(source), "--plugin", "combined_v3", "--match", "%", "--since", "garbage"
        )
    with closing(sqlite3.connect(source)) as connection, connection:
        connection.execute("UPDATE trades SET lot_size = -1 WHERE rowid = 1")
    with pytest.raises(CommandError, match="Nothing was copied: the plugin's database refuses"):
        call_command("migrate_legacy", "--source", str(source), "--plugin", "combined_v3", "--match", "%")
    with closing(sqlite3.connect(source)) as connection:
        assert connection.execute("SELECT COUNT(*) FROM trades WHERE migrated_to_plugin != ''").fetchone() == (0,)


def test_a_lower_case_bearer_scheme_is_accepted(client, config):
    raw = access.create_token("bot", "viewer")
    assert client.get("/api/config/global", headers={"Authorization": f"bearer {raw}"}).status_code == 200


def test_pages_carry_a_content_security_policy_with_a_nonce_for_the_one_inline_script(admin_client, config):
    response = admin_client.get("/config/combined_v3/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self' 'nonce-" in policy and "frame-ancestors 'none'" in policy
    nonce = policy.split("'nonce-", 1)[1].split("'", 1)[0]
    page = response.content.decode()
    assert f'<script nonce="{nonce}">' in page and "onsubmit=" not in admin_client.get("/backups/").content.decode()


def test_debug_is_off_unless_asked_for(tmp_path):
    from tests.helpers import fresh_env, manage

    env = fresh_env(tmp_path)
    del env["DJANGO_DEBUG"]
    for command in (("check",), ("sync_plugins",), ("create_token", "--help")):
        refused = manage(*command, env=env)
        assert refused.returncode != 0 and "DJANGO_SECRET_KEY is required when DJANGO_DEBUG=0" in refused.stderr
        assert "Traceback" not in refused.stderr


def test_errors_answer_in_the_app_shell_and_as_json_under_the_api(viewer_client, config):
    page = viewer_client.get("/no/such/page/")
    assert page.status_code == 404 and "There is nothing at this address" in page.content.decode()
    assert 'class="top"' in page.content.decode()  # the navigation: a way back
    refused = viewer_client.post("/sync/run")
    assert (
        refused.status_code == 403 and "This needs the operator role. Nothing was changed." in refused.content.decode()
    )
    api = viewer_client.put("/api/config/global", "{}", content_type="application/json")
    assert api.status_code == 403 and api["Content-Type"] == "application/json"


def test_the_server_error_page_needs_no_database(rf):
    from zepix_admin.views import server_error

    page = server_error(rf.get("/"))
    assert page.status_code == 500 and b"The error was logged" in page.content
    api = server_error(rf.get("/api/config/global"))
    assert api.status_code == 500 and json.loads(api.content) == {"error": "Server error; it was logged."}


@pytest.mark.django_db(databases="__all__", transaction=True)
def test_every_change_url_answers_the_same_with_or_without_its_trailing_slash(operator_client, config):
    for url in ("/sync/run", "/backups/start", "/alerts/999/acknowledge", "/config/combined_v3/rollback/9"):
        with_slash = operator_client.post(url.rstrip("/") + "/").status_code
        without = operator_client.post(url.rstrip("/")).status_code
        assert with_slash == without and with_slash != 500, url


@pytest.mark.django_db(databases="__all__", transaction=True)
def test_an_htmx_request_after_the_session_ended_is_sent_to_log_in_and_back(operator_client, config):
    from django.test import Client

    client = Client()  # no session (operator_client is the shared client, logged in)
    response = client.get(
        "/?fragment=cards", HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL="http://evil.example/config/global/?x=1"
    )
    assert response.status_code == 200 and response["HX-Redirect"] == "/login/?next=%2Fconfig%2Fglobal%2F%3Fx%3D1"
    assert client.get("/").status_code == 302  # an ordinary page still redirects
    operator_client.post("/logout/")
    assert "You are logged out." in operator_client.get("/login/?logged_out=1").content.decode()
