"""The central database on PostgreSQL (DATABASE_URL), as operators run it: real `manage.py`
subprocesses and real web nodes on a throw-away cluster, one step after another. (The rest of
the central-database tests run on PostgreSQL too: `make test` runs them a second time with
ZEPIX_TEST_POSTGRES=1.)"""

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

from config_app.client import ConfigSubscriber
from plugins_app.store import PluginStore
from tests.helpers import (
    PRODUCTION,
    ROOT,
    ForgetfulProxy,
    Postgres,
    closed_trade,
    free_port,
    fresh_env,
    installed,
    manage,
    put_config,
    start_consumer,
    stop_node,
    trade,
    wait_for,
    web_node,
)
from tests.test_several_nodes import answers, save_lot

pytestmark = pytest.mark.slow
SCOPE = "combined_v3"


@pytest.fixture(scope="module")
def cluster():
    server = Postgres()
    yield server
    server.close()


@pytest.fixture(scope="module")
def template(cluster, tmp_path_factory):
    """One install (`setup --no-demo`, an operator and a viewer token) made once: each test gets
    a copy of its folders and of its database (CREATE DATABASE ... TEMPLATE)."""
    folder = tmp_path_factory.mktemp("template")
    cluster.sql("CREATE DATABASE zepix_template")
    env = fresh_env(folder, DATABASE_URL=cluster.url("zepix_template"))
    prepared = manage("setup", "--no-demo", env=env)
    assert prepared.returncode == 0, prepared.stderr
    tokens = [
        manage("create_token", f"{role}-bot", "--role", role, env=env, check=True).stdout.strip().splitlines()[-1]
        for role in ("operator", "viewer")
    ]
    return folder, tokens


def install_on(cluster, template, tmp_path, name="node"):
    """A new install whose central database is a new PostgreSQL database; (env, operator token,
    viewer token)."""
    import shutil

    folder, tokens = template
    database = f"zepix_{uuid.uuid4().hex[:10]}"
    cluster.sql(f"CREATE DATABASE {database} TEMPLATE zepix_template")
    for part in ("data", "config"):
        shutil.copytree(
            folder / part, tmp_path / name / part, ignore=shutil.ignore_patterns("*-wal", "*-shm", "*.lock")
        )
    return fresh_env(tmp_path / name, DATABASE_URL=cluster.url(database)), *tokens


def get(url, token=None, timeout=10):
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def test_an_operators_day_with_the_central_database_on_postgresql(cluster, template, tmp_path):
    env, operator_token, viewer_token = install_on(cluster, template, tmp_path)
    plugin_file = tmp_path / "node" / "data" / "plugins" / f"{SCOPE}.sqlite3"
    with PluginStore(plugin_file) as store:
        store.save_trades([trade(n, symbol="EURUSD") for n in range(1, 201)])
        store.save_trade(**closed_trade(300, 25.5))
        store.save_trade(**trade(500, symbol="A-SYMBOL-LONGER-THAN-TWENTY-CHARACTERS"))
    synced = manage("sync_plugins", env=env)
    assert synced.returncode == 0, synced.stderr
    database = env["DATABASE_URL"].rsplit("/", 1)[1]
    assert cluster.sql("SELECT COUNT(*) FROM aggregated_trades", database) == [(202,)]
    assert cluster.sql("SELECT trades_count, profit FROM cross_plugin_stats", database) == [(1, 25.5)]

    # A backup of the central database is a pg_dump, restored into a scratch database and counted.
    backed_up = manage("backup_databases", "--db", "default", env=env)
    assert backed_up.returncode == 0, backed_up.stderr
    assert list((tmp_path / "node" / "data" / "backups").glob("default-*.pgdump"))
    assert manage("verify_backups", env=env).returncode == 0

    # More trades and a sync after the backup; then the backup is restored and the sync runs
    # again: the central copy catches up with the file, nothing lost, nothing doubled.
    with PluginStore(plugin_file) as store:
        store.save_trades([trade(n, symbol="GBPUSD") for n in range(1000, 1050)])
        store.save_trade(**closed_trade(301, -10))
    assert manage("sync_plugins", env=env).returncode == 0
    assert manage("config", "set", SCOPE, "max_lot_size", "0.7", env=env).returncode == 0  # version 2
    backup_id = cluster.sql("SELECT id FROM sync_app_backup WHERE database = 'default'", database)[0][0]
    backup_audit = cluster.sql("SELECT MAX(id) FROM zepix_admin_auditentry WHERE action = 'backup.create'", database)[
        0
    ][0]
    since_backup = cluster.sql(f"SELECT action FROM zepix_admin_auditentry WHERE id > {backup_audit}", database)
    assert since_backup  # the config set
    restored = manage("restore_backup", str(backup_id), env=env)
    assert restored.returncode == 0, restored.stderr
    assert cluster.sql("SELECT COUNT(*) FROM aggregated_trades", database) == [(202,)]  # as backed up
    # The dump was taken before its own record was written: the record is made again from the file.
    assert cluster.sql("SELECT database FROM sync_app_backup", database) == [("default",)]
    # The backup had config version 1; the plugins run version 2: the history goes on from there.
    assert manage("config", "get", SCOPE, "max_lot_size", env=env).stdout.strip() == "0.7"
    newest = f"SELECT version, via FROM config_app_configversion WHERE scope = '{SCOPE}' ORDER BY id DESC LIMIT 1"
    assert cluster.sql(newest, database) == [(3, "restore")]
    # The audit entries made since the backup are kept, and the log goes on after them: the
    # version the restore recorded, then the restore.
    audit = f"SELECT action, target FROM zepix_admin_auditentry WHERE id > {backup_audit} ORDER BY id"
    assert [action for action, _ in cluster.sql(audit, database)] == [action for (action,) in since_backup] + [
        "config.save",
        "backup.restore",
    ]
    assert manage("sync_plugins", env=env).returncode == 0
    assert cluster.sql("SELECT COUNT(*) FROM aggregated_trades", database) == [(253,)]
    assert cluster.sql("SELECT trades_count, profit FROM cross_plugin_stats", database) == [(2, 15.5)]

    port = free_port()
    node = web_node(env, port)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(url), "the web node to answer")
        # A monitor's anonymous probe, the node's first use of the central database (its
        # connection pool not open yet).
        status, health = get(f"{url}/healthz")
        assert status in (200, 503) and "database default" not in json.loads(health)["failing"]
        status, page = get(f"{url}/trades/?symbol=GBP", viewer_token)
        assert status == 200 and "GBPUSD" in page and "1049" in page
        status, health = get(f"{url}/healthz", viewer_token)
        report = json.loads(health)
        assert status in (200, 503)  # no consumer runs here: the worker check may say so
        assert [entry["ok"] for entry in report["databases"] if entry["alias"] == "default"] == [True]
    finally:
        stop_node(node)


def test_a_central_dump_taken_before_an_upgrade_is_restored_into_this_versions_schema(cluster, template, tmp_path):
    """On PostgreSQL the dump is restored in place, then brought to this version's schema."""
    env, _, _ = install_on(cluster, template, tmp_path)
    database = env["DATABASE_URL"].rsplit("/", 1)[1]
    for step in (("migrate", "zepix_admin", "0003"), ("backup_databases", "--db", "default"), ("migrate",)):
        done = manage(*step, env=env)
        assert done.returncode == 0, done.stderr
    created = manage("create_token", "host-b", "--role", "plugin-host", "--plugin", SCOPE, env=env)
    assert created.returncode == 0, created.stderr
    backup_id = cluster.sql("SELECT id FROM sync_app_backup WHERE database = 'default'", database)[0][0]

    restored = manage("restore_backup", str(backup_id), env=env)
    assert restored.returncode == 0, restored.stderr
    assert manage("migrate", "--check", env=env).returncode == 0
    tokens = "SELECT name, plugin_ids::text FROM zepix_admin_apitoken WHERE name = 'host-b'"
    assert cluster.sql(tokens, database) == [("host-b", f'["{SCOPE}"]')]


def test_a_bot_hosts_whole_file_then_its_batches_reach_a_central_database_on_postgresql(cluster, template, tmp_path):
    env = install_on(cluster, template, tmp_path, "central")[0]
    database = env["DATABASE_URL"].rsplit("/", 1)[1]
    made = manage("create_token", "host-a", "--role", "plugin-host", "--plugin", SCOPE, env=env, check=True)
    token = made.stdout.split()[-1]
    bot_env = installed(tmp_path / "host")[0]
    host_file = tmp_path / "host" / "data" / "plugins" / f"{SCOPE}.sqlite3"
    with PluginStore(host_file) as store:
        store.save_trades([trade(n) for n in range(1, 301)])
    port = free_port()
    node = web_node(env, port)
    ship = ("ship_changes", "--central", f"http://127.0.0.1:{port}", "--token", token, "--snapshot-rows", "100")
    count = f"SELECT COUNT(*) FROM aggregated_trades WHERE plugin_id = '{SCOPE}'"
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}"), "the web node to answer")
        shipped = manage(*ship, "--plugin", SCOPE, env=bot_env)
        assert shipped.returncode == 0 and "its whole file first" in shipped.stdout, shipped.stderr
        assert cluster.sql(count, database) == [(300,)]  # synced into PostgreSQL in the same request
        with PluginStore(host_file) as store:
            store.save_trades([trade(n) for n in range(1000, 1020)])
        shipped = manage(*ship, "--plugin", SCOPE, env=bot_env)
        assert shipped.returncode == 0 and "shipped 20 rows in" in shipped.stdout, shipped.stdout
        assert cluster.sql(count, database) == [(320,)]
    finally:
        stop_node(node)


def test_web_nodes_on_one_postgresql_wake_each_other_through_notify(cluster, template, tmp_path):
    env, operator_token, viewer_token = install_on(cluster, template, tmp_path)
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    # Each node its own data and temporary folders: no datagram reaches the other, no Redis.
    nodes = []
    for name, port in zip(("a", "b"), ports, strict=True):
        (tmp_path / f"tmp-{name}").mkdir()
        nodes.append(web_node({**env, "TMPDIR": str(tmp_path / f"tmp-{name}")}, port))
    subscriber = ConfigSubscriber(urls[1], viewer_token, scope=SCOPE, name="far-bot")
    database = env["DATABASE_URL"].rsplit("/", 1)[1]
    try:
        for url in urls:
            wait_for(lambda url=url: answers(url), f"{url} to answer")
        subscriber.start()
        wait_for(lambda: subscriber.seen_version == 1, "the subscriber to load version 1")
        wait_for(
            lambda: (
                cluster.sql(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE query = 'LISTEN zepix_config_versions'", database
                )
                == [(1,)]
            ),
            "node B's hub to LISTEN",
        )
        assert save_lot(urls[0], operator_token, 0.25) == 2  # saved on node A
        wait_for(lambda: subscriber.seen_version == 2, "the save to reach node B's subscriber")

        # A NOTIFY only wakes the hubs, which read the versions from the database: one sent by
        # anyone else who may connect to it (any of its users may NOTIFY, with any payload),
        # carrying an event of the next id, is not taken for a version.
        [(next_id,)] = cluster.sql("SELECT MAX(id) + 1 FROM config_app_configversion", database)
        forged = {"id": next_id, "scope": SCOPE, "version": 3, "author": "x", "via": "api", "comment": ""}
        forged |= {"created_at": "2026-01-01T00:00:00+00:00", "diff": [], "data": {"enabled": True}, "retired": False}
        cluster.sql(f"SELECT pg_notify('zepix_config_versions', '{json.dumps(forged)}')", database)
        assert save_lot(urls[0], operator_token, 0.5) == 3
        wait_for(lambda: subscriber.seen_version == 3, "the real version 3 to reach node B's subscriber")
        assert subscriber.document["max_lot_size"] == 0.5

        # A version larger than a NOTIFY could carry (8,000 bytes) reaches the other node whole.
        current = json.loads(get(f"{urls[0]}/api/config/{SCOPE}", operator_token)[1])
        symbols = [f"SYM{n:05d}" for n in range(1000)]
        status, saved = put_config(urls[0], operator_token, SCOPE, {**current["data"], "symbols": symbols}, 3)
        assert (status, saved["version"]) == (200, 4), saved
        wait_for(lambda: subscriber.seen_version == 4, "the large version to reach node B's subscriber")
        assert subscriber.document["symbols"] == symbols
        assert save_lot(urls[0], operator_token, 0.75) == 5
        wait_for(lambda: subscriber.seen_version == 5, "the next version to reach node B's subscriber")
    finally:
        subscriber.stop()
        for node in nodes:
            stop_node(node)


def test_a_node_whose_connections_to_postgresql_went_dead_still_delivers_the_saves_made_elsewhere(
    cluster, template, tmp_path
):
    """A firewall or NAT between a web node and PostgreSQL that forgets the node's connections
    leaves them open and silent: nothing answers, nothing is reset. The node's hub waited for
    good on its look for new versions (its LISTEN heard nothing more), and its streams with it:
    a save on another node reached none of its subscribers, which heard no keepalive either
    until their own timeout (60 s). The hub's reads are now cut off after 5 s and made again on
    new connections, which the box forwards."""
    env, operator_token, viewer_token = install_on(cluster, template, tmp_path)
    proxy = ForgetfulProxy(cluster.port)
    far_env = {**env, "DATABASE_URL": env["DATABASE_URL"].replace(f":{cluster.port}/", f":{proxy.port}/")}
    far_env.update(PRODUCTION)  # an outage is the error handler's 503 there
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    nodes = []
    for name, port, node_env in (("a", ports[0], env), ("b", ports[1], far_env)):
        (tmp_path / f"tmp-{name}").mkdir()
        nodes.append(
            web_node({**node_env, "TMPDIR": str(tmp_path / f"tmp-{name}")}, port, log=tmp_path / f"{name}.log")
        )
    subscriber = ConfigSubscriber(urls[1], viewer_token, scope=SCOPE, name="far-bot")
    try:
        for url in urls:
            wait_for(lambda url=url: answers(url), f"{url} to answer")
        subscriber.start()
        wait_for(lambda: subscriber.seen_version == 1, "the subscriber to load version 1")
        assert save_lot(urls[0], operator_token, 0.25) == 2
        wait_for(lambda: subscriber.seen_version == 2, "the save to reach node B's subscriber")

        proxy.forget()  # node B's connections, its hub's two among them, now lead nowhere
        assert save_lot(urls[0], operator_token, 0.5) == 3
        wait_for(lambda: subscriber.seen_version == 3, "the save to reach node B's subscriber again", timeout=25)
        assert subscriber.document["max_lot_size"] == 0.5
        assert save_lot(urls[0], operator_token, 0.75) == 4  # and the hub LISTENs again: at once
        wait_for(lambda: subscriber.seen_version == 4, "the next save to reach node B's subscriber", timeout=5)
    finally:
        subscriber.stop()
        for node in nodes:
            stop_node(node)
        proxy.close()
    # The subscriber's reports to node B met its dead connections too: said as such, never a 500.
    assert "Internal Server Error" not in (tmp_path / "b.log").read_text()


def test_a_node_slow_to_take_a_bots_report_does_not_hold_up_the_bots_next_version(cluster, template, tmp_path):
    """After each version the bot's client reports whether it applied it. It reported from the
    thread that reads the stream: while the node took its time over a report (here the bot's row
    held by another transaction: up to the request's 5 s), the next version waited in the stream
    unread. Reports now go from a thread of their own, in order."""
    import psycopg

    env, operator_token, viewer_token = install_on(cluster, template, tmp_path)
    database = env["DATABASE_URL"].rsplit("/", 1)[1]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    node = web_node(env, port)
    subscriber = ConfigSubscriber(url, viewer_token, scope=SCOPE, name="slow-reports-bot")
    reported = "SELECT applied_version FROM config_app_subscriber WHERE name = 'slow-reports-bot'"
    try:
        wait_for(lambda: answers(url), "the web node to answer")
        subscriber.start()
        wait_for(lambda: cluster.sql(reported, database) == [(1,)], "the bot to report version 1")
        with psycopg.connect(cluster.url(database)) as holder:  # a transaction holding the bot's row
            holder.execute(f"{reported} FOR UPDATE")
            assert save_lot(url, operator_token, 0.25) == 2
            wait_for(lambda: subscriber.seen_version == 2, "version 2 to reach the bot")
            assert save_lot(url, operator_token, 0.5) == 3  # its report of version 2 waits for the row
            wait_for(lambda: subscriber.seen_version == 3, "version 3 to reach the bot", timeout=3)
            assert subscriber.document["max_lot_size"] == 0.5
        wait_for(lambda: cluster.sql(reported, database) == [(3,)], "the bot's reports to be taken", timeout=15)
    finally:
        subscriber.stop()
        stop_node(node)


def test_a_node_serves_more_subscribers_than_its_connection_pool_holds(cluster, template, tmp_path):
    """A stream lives for hours and must not keep a pooled connection: with a pool of two, six
    subscribers stay connected, all of them hear a save, and the pages still answer at once."""
    env, operator_token, viewer_token = install_on(cluster, template, tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    node = web_node({**env, "ZEPIX_DATABASE_POOL_SIZE": "2"}, port)
    subscribers = [ConfigSubscriber(url, viewer_token, scope=SCOPE, name=f"bot-{n}") for n in range(6)]
    try:
        wait_for(lambda: answers(url), "the web node to answer")
        for subscriber in subscribers:
            subscriber.start()
        wait_for(lambda: all(s.seen_version == 1 for s in subscribers), "every subscriber to load version 1")
        subscribed = f"{url}/api/config/{SCOPE}/subscribers"
        wait_for(
            lambda: sum(s["connected"] for s in json.loads(get(subscribed, viewer_token)[1])["subscribers"]) == 6,
            "six open streams",
        )
        status, _ = get(f"{url}/", viewer_token, timeout=2)  # the pool's wait is 3 s: not waited on
        assert status == 200
        assert save_lot(url, operator_token, 0.4) == 2
        wait_for(lambda: all(s.seen_version == 2 for s in subscribers), "the save to reach every subscriber")
    finally:
        for subscriber in subscribers:
            subscriber.stop()
        stop_node(node)


def test_postgresql_hung_then_stopped_for_a_while_is_said_and_everything_recovers_by_itself(
    cluster, template, tmp_path
):
    env, operator_token, viewer_token = install_on(cluster, template, tmp_path)
    env.update(PRODUCTION)  # the outage page is the production error handler's
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    node = web_node(env, port)
    consumer = start_consumer(env)  # its file watcher
    document_file = tmp_path / "node" / "config" / "plugins" / f"{SCOPE}.json"
    try:
        wait_for(lambda: answers(url), "the web node to answer")
        assert save_lot(url, operator_token, 0.2) == 2
        # Hung first: the connections stay open and nothing answers on them. A request waited for
        # good (its thread and its pool connection with it); now the pool's check of a connection
        # and a request's queries are cut off, and the pages say so within seconds.
        cluster.hang()
        try:
            status, body = get(f"{url}/healthz", timeout=2.5)
            assert status == 503 and "database default" in json.loads(body)["failing"]
            for path in ("/", "/sync/"):
                status, body = get(f"{url}{path}", viewer_token, timeout=8)
                assert status == 503 and "does not answer" in body
        finally:
            cluster.hang(False)
        wait_for(lambda: get(f"{url}/", viewer_token)[0] == 200, "the pages to come back", timeout=8)
        cluster.stop()
        try:
            # The operator edits the file meanwhile: taken in once the database is back, not dropped.
            document_file.write_text(json.dumps({**json.loads(document_file.read_text()), "max_open_trades": 9}))
            # Within a monitor's time (a probe gives up after a second or two): not after a
            # request's whole wait for a connection (3 s), when the probe would see a timeout.
            status, body = get(f"{url}/healthz", timeout=2.5)
            assert status == 503 and "database default" in json.loads(body)["failing"]
            status, body = get(f"{url}/", viewer_token)
            assert status == 503 and "does not answer" in body
            with pytest.raises(urllib.error.HTTPError) as refused:
                save_lot(url, operator_token, 0.3)
            refused.value.close()
            assert refused.value.code == 503
            synced = manage("sync_plugins", env=env)  # says so, as the pages do, and changes nothing
            assert synced.returncode != 0 and "The central database (PostgreSQL) does not answer" in synced.stderr
            assert "Traceback" not in synced.stderr
            # A plugin's backup is made, then cannot be recorded: not kept either (unrecorded, it
            # would never be listed, verified or let go by retention).
            backed_up = manage("backup_databases", "--db", "plugin_combined_v3", env=env)
            assert backed_up.returncode != 0 and "does not answer" in backed_up.stderr
            assert list((tmp_path / "node" / "data" / "backups").glob("plugin_combined_v3-*")) == []
            # An archive packs the plugin's file, then cannot record the tombstone: refused, and
            # no packed copy left behind (nothing would purge it; each retry packed another).
            archived = manage("archive_plugin", "price_action_v6", env=env)
            assert archived.returncode != 0
            assert list((tmp_path / "node" / "data" / "archived").glob("price_action_v6-*")) == []
            assert (tmp_path / "node" / "data" / "plugins" / "price_action_v6.sqlite3").exists()
        finally:
            cluster.start()
        # Within seconds of PostgreSQL answering again, not after as long again as it was away
        # (the pool's reconnection backoff kept the pages down 13 s after this 18 s outage).
        wait_for(lambda: get(f"{url}/", viewer_token)[0] == 200, "the pages to come back by themselves", timeout=8)
        assert get(f"{url}/healthz", viewer_token)[0] in (200, 503)
        wait_for(
            lambda: json.loads(get(f"{url}/api/config/{SCOPE}", viewer_token)[1])["version"] == 3,
            "the edit made during the outage to be taken in",
        )
        assert save_lot(url, operator_token, 0.3) == 4  # nothing was lost: versions 2 and 3 are there
        status, history = get(f"{url}/api/config/{SCOPE}", viewer_token)
        assert json.loads(history)["data"]["max_lot_size"] == 0.3
        assert json.loads(history)["data"]["max_open_trades"] == 9
    finally:
        consumer.send_signal(signal.SIGINT)
        try:
            consumer.wait(timeout=15)
        except subprocess.TimeoutExpired:
            consumer.kill()
        stop_node(node)


def test_a_query_to_a_server_that_stopped_answering_is_cut_off_at_its_deadline(cluster):
    """What a request's queries get past their deadline (zepix_admin.core.limits), and the pool's
    check of a connection: a server that answers nothing ends the wait with an error."""
    import psycopg

    from zepix_admin.core.cutoff import cut_off_after

    with psycopg.connect(cluster.url(), autocommit=True) as connection:
        cluster.hang()
        try:
            started = time.monotonic()
            with pytest.raises(psycopg.OperationalError), cut_off_after(connection, 0.5):
                connection.execute("SELECT 1")
            assert time.monotonic() - started < 5  # not for good
        finally:
            cluster.hang(False)
    with psycopg.connect(cluster.url(), autocommit=True) as connection, cut_off_after(connection, 0.5):
        assert connection.execute("SELECT 1").fetchone() == (1,)  # an answer in time is left alone


def test_two_machines_syncing_the_same_plugin_at_once_count_each_trade_once(cluster, template, tmp_path):
    """Two consumers on two machines share the central database but not the sync's lock file."""
    import shutil

    env, _, _ = install_on(cluster, template, tmp_path)
    with PluginStore(tmp_path / "node" / "data" / "plugins" / f"{SCOPE}.sqlite3") as store:
        store.save_trades([closed_trade(n, 1.25) for n in range(1, 3001)])
    shutil.copytree(tmp_path / "node", tmp_path / "other", ignore=shutil.ignore_patterns("*.lock"))
    other = {
        **env,
        "ZEPIX_DATA_DIR": str(tmp_path / "other" / "data"),
        "ZEPIX_CONFIG_DIR": str(tmp_path / "other" / "config"),
    }
    command = [sys.executable, str(ROOT / "manage.py"), "sync_plugins", "--plugin", SCOPE]
    runs = [
        subprocess.Popen(command, env=e, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for e in (env, other)
    ]
    outcomes = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outcomes
    database = env["DATABASE_URL"].rsplit("/", 1)[1]
    assert cluster.sql("SELECT COUNT(*) FROM aggregated_trades", database) == [(3000,)]
    assert cluster.sql("SELECT trades_count, wins, profit FROM cross_plugin_stats", database) == [(3000, 3000, 3750.0)]
    assert cluster.sql("SELECT SUM(trades_count) FROM trade_totals", database) == [(3000,)]


def test_saves_on_two_machines_at_once_reach_every_stream_in_order(cluster, template, tmp_path):
    """Two web nodes on two machines: each its own folders, so no lock file in common. A save
    held up inside its transaction (a slow database: a trigger that sleeps after the version's
    row is written) is not overtaken by a save of another scope on the other node: the streams
    follow the versions by row id, and a row committed after a later one was read never reached
    them. A save of the same scope made meanwhile on the other node is a conflict (409), not an
    error (500)."""
    import shutil
    import threading

    env, operator_token, viewer_token = install_on(cluster, template, tmp_path, "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b", ignore=shutil.ignore_patterns("*.lock"))
    other = {**env, "ZEPIX_DATA_DIR": str(tmp_path / "b" / "data"), "ZEPIX_CONFIG_DIR": str(tmp_path / "b" / "config")}
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    nodes = []
    for name, node_env, port in zip("ab", (env, other), ports, strict=True):
        (tmp_path / f"tmp-{name}").mkdir()
        nodes.append(web_node({**node_env, "TMPDIR": str(tmp_path / f"tmp-{name}")}, port))
    database = env["DATABASE_URL"].rsplit("/", 1)[1]
    cluster.sql(
        "CREATE FUNCTION slow_save() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.scope = 'combined_v3' THEN PERFORM pg_sleep(1); END IF; RETURN NEW; END $$; "
        "CREATE TRIGGER slow_save AFTER INSERT ON config_app_configversion "
        "FOR EACH ROW EXECUTE FUNCTION slow_save()",
        database,
    )
    # The combined_v3 stream on node B, the price_action_v6 stream on node A.
    subscribers = {
        scope: ConfigSubscriber(url, viewer_token, scope=scope, name=f"{scope}-bot")
        for scope, url in ((SCOPE, urls[1]), ("price_action_v6", urls[0]))
    }
    try:
        for url in urls:
            wait_for(lambda url=url: answers(url), f"{url} to answer")
        for subscriber in subscribers.values():
            subscriber.start()
        wait_for(lambda: all(s.seen_version == 1 for s in subscribers.values()), "both subscribers to load version 1")
        documents = {scope: subscriber.document for scope, subscriber in subscribers.items()}
        answered = {}

        def save(key, url, scope, lot):
            answered[key] = put_config(url, operator_token, scope, {**documents[scope], "max_lot_size": lot}, 1)

        slow = threading.Thread(target=save, args=("slow", urls[0], SCOPE, 0.25))
        slow.start()  # on node A
        wait_for(
            lambda: (
                cluster.sql(
                    f"SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = '{database}'"
                )
                == [(1,)]
            ),
            "node A's save to be held up in its transaction",
        )
        same_scope = threading.Thread(target=save, args=("same scope", urls[1], SCOPE, 0.3))
        same_scope.start()  # on node B, on the version node A's save is replacing
        save("other scope", urls[1], "price_action_v6", 0.35)  # on node B
        slow.join(timeout=20)
        same_scope.join(timeout=20)

        assert answered["slow"][0] == 200 and answered["slow"][1]["version"] == 2
        assert answered["other scope"][0] == 200 and answered["other scope"][1]["version"] == 2
        wait_for(lambda: all(s.seen_version == 2 for s in subscribers.values()), "each stream to deliver its version 2")
        assert subscribers[SCOPE].document["max_lot_size"] == 0.25
        assert subscribers["price_action_v6"].document["max_lot_size"] == 0.35
        assert answered["same scope"][0] == 409, answered["same scope"]

        # Another machine holding the lock (a restore there) longer than a save waits: 503.
        import psycopg

        from config_app.service import CONFIG_ADVISORY_LOCK

        with psycopg.connect(env["DATABASE_URL"], autocommit=True) as other_machine:
            other_machine.execute("SELECT pg_advisory_lock(%s)", [CONFIG_ADVISORY_LOCK])
            status, answer = put_config(urls[1], operator_token, SCOPE, subscribers[SCOPE].document, 2)
        assert status == 503 and "nothing was saved" in answer["error"], answer
        assert (
            put_config(urls[1], operator_token, SCOPE, {**subscribers[SCOPE].document, "max_lot_size": 0.5}, 2)[0]
            == 200
        )
    finally:
        for subscriber in subscribers.values():
            subscriber.stop()
        for node in nodes:
            stop_node(node)


def test_folders_on_another_machine_are_refused_and_the_console_can_move_for_good(cluster, template, tmp_path):
    """A consumer, a web node and the jobs started with folders that are not the console's (another
    machine's, sharing its PostgreSQL) stop and say where the console is: such a consumer took
    the console's work from the queue and recorded syncs of nothing and backups on its own disk
    as successes."""
    import shutil

    env, _, _ = install_on(cluster, template, tmp_path, "console")
    database = env["DATABASE_URL"].rsplit("/", 1)[1]
    with PluginStore(tmp_path / "console" / "data" / "plugins" / f"{SCOPE}.sqlite3") as store:
        store.save_trades([trade(n) for n in range(1, 51)])
    elsewhere = fresh_env(tmp_path / "elsewhere", DATABASE_URL=env["DATABASE_URL"])
    # Where its setup recorded the console's folders (the template's: this install is a copy of them).
    [(console_folder,)] = cluster.sql("SELECT data_dir FROM zepix_admin_consolehome", database)

    refused = manage("setup", "--no-demo", env=elsewhere)
    assert refused.returncode == 1 and "are not the console's" in refused.stderr and console_folder in refused.stderr
    consumer = start_consumer(elsewhere, stderr=subprocess.PIPE, text=True)
    said = consumer.communicate(timeout=60)[1]
    assert consumer.returncode == 1 and console_folder in said
    node = web_node(elsewhere, free_port(), quiet=False, log=tmp_path / "node.log")
    assert node.wait(timeout=60) == 1 and console_folder in (tmp_path / "node.log").read_text()
    for job in (("sync_plugins",), ("backup_databases",), ("verify_backups",)):
        ran = manage(*job, env=elsewhere)
        assert ran.returncode == 1 and console_folder in ran.stderr, job
    checked = manage("health_check", env=elsewhere)
    assert checked.returncode != 0 and "not the console's" in checked.stdout
    assert cluster.sql("SELECT COUNT(*) FROM sync_app_syncrun", database) == [(0,)]
    assert cluster.sql("SELECT COUNT(*) FROM sync_app_backup", database) == [(0,)]

    # The console itself goes on as before.
    assert manage("sync_plugins", env=env).returncode == 0
    assert cluster.sql("SELECT COUNT(*) FROM aggregated_trades", database) == [(50,)]

    # The console moved to the other machine for good (its plugin databases copied there): its
    # folders are now the console's, and the old ones are refused in turn; the move is audited.
    for plugin_file in (tmp_path / "console" / "data" / "plugins").glob("*.sqlite3"):
        shutil.copy(plugin_file, tmp_path / "elsewhere" / "data" / "plugins")
    moved = manage("setup", "--no-demo", "--move-here", env=elsewhere)
    assert moved.returncode == 0 and f"moved here from {console_folder}" in moved.stdout
    assert manage("sync_plugins", env=elsewhere).returncode == 0
    old = manage("sync_plugins", env=env)
    assert old.returncode == 1 and str(tmp_path / "elsewhere" / "data") in old.stderr
    assert cluster.sql(
        "SELECT action FROM zepix_admin_auditentry WHERE action LIKE 'console.home%' ORDER BY id", database
    ) == [
        ("console.home.record",),
        ("console.home.move",),
    ]


def test_a_console_moved_to_a_new_machine_and_restored_there_from_its_old_dump_keeps_its_new_home(
    cluster, template, tmp_path
):
    import shutil

    env, _, _ = install_on(cluster, template, tmp_path, "old-machine")
    assert manage("backup_databases", "--db", "default", env=env).returncode == 0
    [dump] = (tmp_path / "old-machine" / "data" / "backups").glob("default-*.pgdump")
    new_machine = fresh_env(tmp_path / "new-machine", DATABASE_URL=env["DATABASE_URL"])
    shutil.copytree(tmp_path / "old-machine" / "data" / "plugins", tmp_path / "new-machine" / "data" / "plugins")
    assert manage("setup", "--no-demo", "--move-here", env=new_machine).returncode == 0
    restored = manage("restore_backup", str(dump), env=new_machine)
    assert restored.returncode == 0, restored.stderr
    # The dump's home was the old machine's folders; the console's is where it was restored.
    synced = manage("sync_plugins", env=new_machine)
    assert synced.returncode == 0, synced.stderr
    assert manage("sync_plugins", env=env).returncode == 1
