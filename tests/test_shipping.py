"""A bot host ships its plugin's changes to the central console: real processes, two data
folders (the host's and the central's), the central served by `manage.py serve`, the host
running `manage.py ship_changes`; cut in the middle, replaced, and refused when not allowed."""

import base64
import fcntl
import json
import os
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest
import zstandard

from plugins_app.store import PluginStore
from tests.helpers import NOW, ROOT, Served, central, installed, run, trade

pytestmark = pytest.mark.slow
PLUGIN = "combined_v3"


def host_rows(data: Path):
    with closing(sqlite3.connect(data / "plugins" / f"{PLUGIN}.sqlite3")) as connection:
        return sorted(connection.execute("SELECT mt5_ticket, status, profit_dollars, symbol FROM trades").fetchall())


def central_rows(data: Path):
    return sorted(
        tuple(row)
        for row in central(
            data,
            "SELECT mt5_ticket, status, CAST(profit_dollars AS REAL), symbol FROM aggregated_trades "
            "WHERE plugin_id = ?",
            PLUGIN,
        )
    )


def mirrored(hub: Path) -> int:
    with closing(sqlite3.connect(hub / "plugins" / f"{PLUGIN}.sqlite3")) as mirror:
        return mirror.execute("SELECT COUNT(*) FROM trades").fetchone()[0]


def assert_same(host: Path, hub: Path):
    """The central copy is the host's trades, each once, and its totals agree with them."""
    expected = [(t, s, None if p is None else round(p, 2), sym) for t, s, p, sym in host_rows(host)]
    got = [(t, s, None if p is None else round(p, 2), sym) for t, s, p, sym in central_rows(hub)]
    assert got == expected
    counted = central(hub, "SELECT COALESCE(SUM(trades_count), 0) FROM trade_totals WHERE plugin_id = ?", PLUGIN)
    assert counted[0][0] == len(expected)


def restore_on_host(older: Path, path: Path) -> None:
    """The host's plugin file put back from an older copy, with a new identity as a restore gives it."""
    shutil.copy(older, path)
    for leftover in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
    with closing(sqlite3.connect(path)) as restored:
        restored.execute("UPDATE zepix_identity SET incarnation = 'restored-on-the-host'")
        restored.commit()


def post(server, token, body, path=f"/api/sync/{PLUGIN}/batches", encoding="zstd"):
    request = urllib.request.Request(
        server.url + path,
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Encoding": encoding},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read() or b"{}")


@pytest.fixture
def two_hosts(tmp_path):
    """(central env, its data, a plugin-host token for combined_v3, the bot host's env and data)."""
    hub_env = installed(tmp_path / "central")[0]
    bot_env = installed(tmp_path / "host")[0]
    token = run(hub_env, "create_token", "host-a", "--role", "plugin-host", "--plugin", PLUGIN).stdout.split()[-1]
    run(bot_env, "seed_demo", "--trades", "2500", "--plugin", PLUGIN)
    return hub_env, tmp_path / "central" / "data", token, bot_env, tmp_path / "host" / "data"


def ship(bot_env, server, token, *extra, ok=True):
    return run(bot_env, "ship_changes", "--central", server.url, "--token", token, "--plugin", PLUGIN, *extra, ok=ok)


def test_a_host_ships_everything_then_only_changes_and_a_kill_mid_batch_loses_and_doubles_nothing(two_hosts):
    hub_env, hub, token, bot_env, host = two_hosts
    server = Served(hub_env)
    try:
        shipped = ship(bot_env, server, token, "--batch-rows", "500")  # 2,500 trades: the last batch is full
        assert "shipped" in shipped.stdout and "2500" not in shipped.stderr
        assert_same(host, hub)
        assert central(hub, "SELECT COUNT(*) FROM aggregated_chains WHERE plugin_id = ?", PLUGIN)[0][0] > 0

        with PluginStore(host / "plugins" / f"{PLUGIN}.sqlite3") as store:  # the bot goes on trading
            open_ticket = store.connection.execute(
                "SELECT MAX(mt5_ticket) FROM trades WHERE status = 'OPEN'"
            ).fetchone()[0]
            store.close_trade(
                open_ticket, exit_price=1.1, profit_pips=3, profit_dollars=12.5, close_reason="TP", exit_time=NOW
            )
            store.save_trades([trade(900_000 + n) for n in range(3000)])
        # Shipping every 0.1 s in batches of 100, killed (no goodbye) in the middle of it...
        shipper = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "ship_changes", "--central", server.url, "--token", token]
            + ["--plugin", PLUGIN, "--every", "0.1", "--batch-rows", "100"],
            env=bot_env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while mirrored(hub) < 2600:  # the first batches are in the central's mirror of the plugin
            assert time.monotonic() < deadline, "the first batches never arrived"
            time.sleep(0.05)
        shipper.send_signal(signal.SIGKILL)
        shipper.wait()
        assert mirrored(hub) < 5500  # it was cut before the end
        # ...then started again: it ships from what the central acknowledged.
        ship(bot_env, server, token)
        assert_same(host, hub)
        state = central(
            hub, "SELECT host, batches, every_seconds FROM sync_app_shippingstate WHERE plugin_id = ?", PLUGIN
        )
        assert state[0][0] == "host-a" and state[0][1] >= 3
        assert state[0][2] is None  # the last ship was a one-off (no --every): it is never late
    finally:
        server.stop()


def test_a_replaced_host_database_starts_over_and_the_central_copy_follows_it(two_hosts):
    hub_env, hub, token, bot_env, host = two_hosts
    path = host / "plugins" / f"{PLUGIN}.sqlite3"
    server = Served(hub_env)
    try:
        ship(bot_env, server, token)
        older = host / "older.sqlite3"
        with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(older)) as copy:
            source.backup(copy)
        with PluginStore(path) as store:
            store.save_trades([trade(800_000 + n, symbol="XAUUSD") for n in range(50)])
        ship(bot_env, server, token)
        assert len(central_rows(hub)) == 2550
        # The host's file is restored from the older copy.
        restore_on_host(older, path)
        ship(bot_env, server, token)
        assert_same(host, hub)  # the 50 trades the restored file no longer has left the central copy too
        assert len(central_rows(hub)) == 2500
    finally:
        server.stop()


def test_a_central_database_restored_from_before_the_first_batch_still_takes_the_hosts_changes(two_hosts):
    hub_env, hub, token, bot_env, host = two_hosts
    run(hub_env, "backup_databases", "--db", "default")  # before anything was shipped
    backup = str(central(hub, "SELECT MAX(id) FROM sync_app_backup WHERE database = 'default'")[0][0])
    server = Served(hub_env)
    try:
        ship(bot_env, server, token)
        run(hub_env, "restore_backup", backup)
        with PluginStore(host / "plugins" / f"{PLUGIN}.sqlite3") as store:
            store.save_trades([trade(700_000 + n) for n in range(40)])
        ship(bot_env, server, token)  # still a shipped mirror, not taken for a plugin written on the central
        assert_same(host, hub)
        assert len(central_rows(hub)) == 2540
    finally:
        server.stop()


def test_only_a_plugin_host_token_for_that_plugin_may_ship_and_a_bad_batch_changes_nothing(two_hosts):
    hub_env, hub, token, bot_env, host = two_hosts
    other = run(hub_env, "create_token", "host-b", "--role", "plugin-host", "--plugin", "price_action_v6").stdout
    other_token = other.split()[-1]
    operator = run(hub_env, "create_token", "ops-bot", "--role", "operator").stdout.split()[-1]
    refused = run(hub_env, "create_token", "host-c", "--role", "plugin-host", ok=False)
    assert "names its plugins" in refused.stderr
    server = Served(hub_env)
    try:
        empty = zstandard.ZstdCompressor().compress(b"{}")
        assert post(server, other_token, empty)[0] == 403  # another plugin's host
        assert post(server, operator, empty)[0] == 403  # an operator is not a bot host
        assert post(server, "zpx_not-a-token", empty)[0] == 401
        assert post(server, token, b"\x28\xb5\x2f\xfd garbage")[0] == 400
        status, answer = post(server, token, empty)
        assert status == 400 and "'since' gives a change number" in answer["error"]
        for page in ("/", "/trades/", "/api/config/global"):  # a bot host's token reads nothing else
            request = urllib.request.Request(server.url + page, headers={"Authorization": f"Bearer {token}"})
            with pytest.raises(urllib.error.HTTPError) as refusal:
                urllib.request.urlopen(request, timeout=5)
            refusal.value.close()
            assert refusal.value.code == 403, page
        # A batch with one row its schema refuses (a direction the bot never writes): nothing applied.
        marks = dict.fromkeys(("trades", "profit_chains", "chain_levels", "daily_stats", "plugin_info"), 0)
        with closing(sqlite3.connect(host / "plugins" / f"{PLUGIN}.sqlite3")) as source:
            columns = [row[1] for row in source.execute("PRAGMA table_info(trades)")]
            rows = [list(row) for row in source.execute("SELECT * FROM trades ORDER BY change_seq LIMIT 3")]
        rows[2][columns.index("direction")] = "SIDEWAYS"
        batch = {
            "incarnation": "some-host-file",
            "since": marks,
            "until": {**marks, "trades": rows[2][columns.index("change_seq")]},
            "tables": {"trades": {"columns": columns, "rows": rows}},
        }
        status, answer = post(server, token, zstandard.ZstdCompressor().compress(json.dumps(batch).encode()))
        assert status == 400 and "nothing applied" in answer["error"]
        assert central(hub, "SELECT COUNT(*) FROM aggregated_trades")[0][0] == 0
        rows[2][columns.index("direction")] = "SELL"
        rows[1][columns.index("lot_size")] = "a lot"
        status, answer = post(server, token, zstandard.ZstdCompressor().compress(json.dumps(batch).encode()))
        assert status == 400 and "trades.lot_size" in answer["error"]
    finally:
        server.stop()


def test_a_plugin_written_on_the_central_itself_takes_no_shipped_changes(two_hosts):
    hub_env, hub, token, bot_env, host = two_hosts
    run(hub_env, "seed_demo", "--trades", "20", "--plugin", PLUGIN)  # a bot on the central's machine
    server = Served(hub_env)
    try:
        for whole_from in ("100000", "1000"):  # in batches, and the whole file
            refused = ship(bot_env, server, token, "--snapshot-rows", whole_from, ok=False)
            assert "written by a bot on the central's machine" in refused.stderr
        with closing(sqlite3.connect(hub / "plugins" / f"{PLUGIN}.sqlite3")) as mirror:
            assert mirror.execute("SELECT COUNT(*) FROM trades").fetchone()[0] == 20  # nothing emptied
    finally:
        server.stop()


def add_signals_that_do_not_compress(path: Path, count: int) -> None:
    """The host's own signals with random payloads (4 KB each): a file that stays large compressed."""
    with PluginStore(path) as store:
        store.connection.executemany(
            "INSERT INTO signals (received_at, symbol, signal_type, timeframe, payload, action) "
            "VALUES ('2026-11-26 10:00:00', 'EURUSD', 'BUY', '15m', ?, 'opened')",
            [(json.dumps({"noise": base64.b64encode(os.urandom(3000)).decode()}),) for _ in range(count)],
        )


def packed_file(path: Path) -> bytes:
    """A plugin file as a host sends it whole: zstd-compressed."""
    return zstandard.ZstdCompressor().compress(path.read_bytes())


def central_tables(hub: Path) -> dict:
    with closing(sqlite3.connect(hub / "plugins" / f"{PLUGIN}.sqlite3")) as mirror:
        return {
            "migrations": mirror.execute("SELECT app, name FROM django_migrations ORDER BY id").fetchall(),
            "signals": mirror.execute("SELECT COUNT(*) FROM signals").fetchone()[0],
        }


def test_a_large_first_shipping_sends_the_whole_file_then_batches_and_a_replaced_file_starts_over_whole(two_hosts):
    hub_env, hub, token, bot_env, host = two_hosts
    path = host / "plugins" / f"{PLUGIN}.sqlite3"
    with PluginStore(path) as store:  # the host's own table, which shipping never sends
        store.connection.execute(
            "INSERT INTO signals (received_at, symbol, signal_type, timeframe, payload, action) "
            "VALUES ('2026-11-26 10:00:00', 'EURUSD', 'BUY', '15m', '{}', 'opened')"
        )
    own = central_tables(hub)
    server = Served(hub_env)
    try:
        shipped = ship(bot_env, server, token, "--snapshot-rows", "1000")
        assert "its whole file first" in shipped.stdout, shipped.stdout + shipped.stderr
        assert_same(host, hub)  # synced into the central copy in the same request
        assert central_tables(hub) == own  # the central's migrations, no signal of the host's
        assert central(hub, "SELECT rows FROM sync_app_shippingstate WHERE plugin_id = ?", PLUGIN)[0][0] > 2500

        older = host / "older.sqlite3"
        with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(older)) as copy:
            source.backup(copy)
        with PluginStore(path) as store:  # the bot goes on trading: those go in batches
            store.save_trades([trade(800_000 + n, symbol="XAUUSD") for n in range(30)])
        shipped = ship(bot_env, server, token, "--snapshot-rows", "1000")
        assert "whole file" not in shipped.stdout and "shipped 30 rows" in shipped.stdout
        assert "in 1 batch(es)" in shipped.stdout  # one request: a batch that is not full is the last
        assert_same(host, hub)

        # The host's file restored from the older copy (a new identity): it goes whole again, and
        # the 30 trades it no longer has leave the central copy.
        restore_on_host(older, path)
        shipped = ship(bot_env, server, token, "--snapshot-rows", "1000")
        assert "its whole file first" in shipped.stdout
        assert_same(host, hub)
        assert len(central_rows(hub)) == 2500
        assert central(hub, "SELECT COUNT(*) FROM zepix_admin_auditentry WHERE action = 'sync.snapshot'")[0][0] == 2
    finally:
        server.stop()


def test_a_host_may_send_a_whole_file_larger_than_any_other_request_may_be(two_hosts):
    """The central cuts every request's body at Django's DATA_UPLOAD_MAX_MEMORY_SIZE before it is
    stored, but the snapshot of a plugin-host token made for that plugin."""
    from django.conf import settings

    hub_env, hub, token, bot_env, host = two_hosts
    path = host / "plugins" / f"{PLUGIN}.sqlite3"
    add_signals_that_do_not_compress(path, 1200)
    packed = packed_file(path)
    assert len(packed) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    server = Served({**hub_env, "ZEPIX_MAX_SNAPSHOT_MB": "1"})  # a central that takes no file that large
    try:
        # Refused before it is read: its 409, or the connection closed while the body was still
        # being sent (ship_changes takes either for a refusal, see below).
        try:
            status, answer = post(server, token, packed, path=f"/api/sync/{PLUGIN}/snapshot")
            assert status == 409 and "it is over 1 MB (ZEPIX_MAX_SNAPSHOT_MB)" in answer["error"]
        except urllib.error.URLError as closed:
            assert isinstance(closed.reason, ConnectionResetError | BrokenPipeError), closed
        assert mirrored(hub) == 0
    finally:
        server.stop()
    server = Served(hub_env)
    try:
        shipped = ship(bot_env, server, token, "--snapshot-rows", "1000")
        assert "its whole file first" in shipped.stdout, shipped.stdout + shipped.stderr
        assert_same(host, hub)
        assert central(hub, "SELECT COUNT(*) FROM zepix_admin_auditentry WHERE action = 'sync.snapshot'")[0][0] == 1
    finally:
        server.stop()


def test_a_shipping_while_another_sync_runs_is_in_the_central_copy_when_the_host_is_answered(two_hosts):
    """A sync running on the central (the consumer's, at its start or each minute) may have read
    the mirror before the batch: the batch's own sync waits for it, then copies the batch."""
    hub_env, hub, token, bot_env, host = two_hosts
    server = Served(hub_env)
    try:
        lock = (hub / "sync.lock").open("a")
        fcntl.flock(lock, fcntl.LOCK_EX)  # another sync, running
        threading.Timer(2, lambda: (fcntl.flock(lock, fcntl.LOCK_UN), lock.close())).start()
        ship(bot_env, server, token)
        assert_same(host, hub)
    finally:
        server.stop()


def test_a_file_the_central_would_not_build_is_refused_whole_and_shipped_in_batches(two_hosts):
    hub_env, hub, token, bot_env, host = two_hosts
    path = host / "plugins" / f"{PLUGIN}.sqlite3"
    with closing(sqlite3.connect(path)) as source:  # an index someone added on the host only
        source.execute("CREATE INDEX trades_by_comment ON trades(close_reason)")
        source.commit()
    server = Served(hub_env)
    try:
        shipped = ship(bot_env, server, token, "--snapshot-rows", "1000")
        assert "takes no snapshot" in shipped.stderr and "trades_by_comment" in shipped.stderr
        assert "whole file" not in shipped.stdout
        assert_same(host, hub)  # every trade arrived all the same, in batches
    finally:
        server.stop()


def test_a_hostile_or_damaged_snapshot_changes_nothing(two_hosts, tmp_path):
    hub_env, hub, token, bot_env, host = two_hosts
    path = host / "plugins" / f"{PLUGIN}.sqlite3"
    viewer = run(hub_env, "create_token", "someone", "--role", "viewer").stdout.split()[-1]
    snapshot = f"/api/sync/{PLUGIN}/snapshot"

    def altered(name: str, *statements: str) -> Path:
        copy = tmp_path / f"{name}.sqlite3"
        with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(copy)) as target:
            source.backup(target)
            for statement in statements:
                target.execute(statement)
            target.commit()
        return copy

    def trigger_sql(name: str) -> str:
        with closing(sqlite3.connect(path)) as source:
            return source.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()[0]

    sound = altered("sound")
    server = Served(hub_env)
    try:
        assert post(server, viewer, packed_file(sound), path=snapshot)[0] == 403
        assert post(server, "zpx_not-a-token", packed_file(sound), path=snapshot)[0] == 401
        assert post(server, token, sound.read_bytes(), path=snapshot, encoding="")[0] == 400
        assert post(server, token, b"\x28\xb5\x2f\xfd garbage", path=snapshot)[0] == 400
        status, answer = post(
            server, token, zstandard.ZstdCompressor().compress(b"not a database" * 100), path=snapshot
        )
        assert status == 409 and "not a plugin database" in answer["error"] and "marks" in answer

        # A value of the wrong type, written with the trigger that refuses it dropped and put back.
        wrong_type = altered(
            "wrong-type",
            "DROP TRIGGER trades_values_held_on_update",
            "UPDATE trades SET lot_size = 'a lot' WHERE mt5_ticket = (SELECT MIN(mt5_ticket) FROM trades)",
            trigger_sql("trades_values_held_on_update"),
        )
        status, answer = post(server, token, packed_file(wrong_type), path=snapshot)
        assert status == 409 and "trades.lot_size" in answer["error"]
        # A row the schema's triggers refuse, written with them dropped and put back as they were.
        refused = altered(
            "refused",
            "DROP TRIGGER trades_values_checked_on_update",
            "UPDATE trades SET lot_size = -1 WHERE mt5_ticket = (SELECT MIN(mt5_ticket) FROM trades)",
            trigger_sql("trades_values_checked_on_update"),
        )
        status, answer = post(server, token, packed_file(refused), path=snapshot)
        assert status == 409 and "refuse" in answer["error"] and "lot_size <= 0" in answer["error"]
        # A damaged file: pages overwritten in the middle.
        damaged = altered("damaged")
        with open(damaged, "r+b") as raw:
            raw.seek(damaged.stat().st_size // 2)
            raw.write(b"\xff" * 8192)
        status, answer = post(server, token, packed_file(damaged), path=snapshot)
        assert status == 409 and "refused" in answer["error"]

        assert mirrored(hub) == 0  # nothing of any of them reached the mirror
        assert central(hub, "SELECT COUNT(*) FROM aggregated_trades")[0][0] == 0
        status, answer = post(server, token, packed_file(sound), path=snapshot)
        assert status == 200 and answer["rows"] > 2500
        assert_same(host, hub)
    finally:
        server.stop()


def test_a_whole_file_the_central_will_not_take_is_shipped_in_batches_instead(two_hosts):
    """A central whose ZEPIX_MAX_SNAPSHOT_MB is below the host's file refuses it once it has
    decompressed that much, while the host is still sending: the host must hear the refusal (and
    ship in batches), not take the closed connection for a central it cannot reach, and try the
    same file again at every run."""
    hub_env, hub, token, bot_env, host = two_hosts
    path = host / "plugins" / f"{PLUGIN}.sqlite3"
    add_signals_that_do_not_compress(path, 3000)
    assert path.stat().st_size > 8 << 20
    server = Served({**hub_env, "ZEPIX_MAX_SNAPSHOT_MB": "1"})
    try:
        shipped = ship(bot_env, server, token, "--snapshot-rows", "1000")
        said = shipped.stdout + shipped.stderr
        # Its 409 ("it is over 1 MB"), or the connection it closed while the host still sent.
        assert "the central takes no snapshot (" in shipped.stderr and "shipping in batches" in shipped.stderr, said
        assert "shipped" in shipped.stdout and "whole file" not in shipped.stdout
        assert_same(host, hub)
    finally:
        server.stop()


class CuttingProxy:
    """A TCP proxy to a served central that resets the connection of a request whose first
    line names ``cut`` once its headers are in (what a central closing on an unread body does),
    and passes every other request through."""

    def __init__(self, target_port: int, cut: bytes):
        self.target_port, self.cut = target_port, cut
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.cuts = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.relay, args=(client,), daemon=True).start()

    def relay(self, client):
        head = client.recv(65536)
        if self.cut in head.split(b"\r\n", 1)[0]:
            self.cuts += 1
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        upstream.sendall(head)

        def pipe(source, sink):
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
            except OSError:
                pass
            finally:
                sink.close()

        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        pipe(client, upstream)

    def close(self):
        self.listener.close()


def test_a_central_that_cuts_the_whole_file_short_gets_batches_instead(two_hosts):
    """A central refusing a whole file before reading it (over its ZEPIX_MAX_SNAPSHOT_MB) may close
    the connection while the host still sends, so that the host never reads its 409: the host
    took that for an unreachable central and sent the same file again at every run."""
    hub_env, hub, token, bot_env, host = two_hosts
    server = Served(hub_env)
    proxy = CuttingProxy(server.port, cut=b"/snapshot")
    try:
        shipped = ship(bot_env, proxy, token, "--snapshot-rows", "1000")  # through the proxy
        assert proxy.cuts == 1
        assert "it closed the connection while the file was sent" in shipped.stderr and "batches" in shipped.stderr
        assert_same(host, hub)
    finally:
        proxy.close()
        server.stop()
