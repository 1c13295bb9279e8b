"""Plugins come and go while the console runs: one declared by `startplugin` appears in the
served app (overview, config page, API, stream, admin) and in its consumer's sync within
seconds, and an archived one leaves them, all without a restart."""

import json
import urllib.request

import pytest

from plugins_app.store import PluginStore
from tests.helpers import Served, bearer, central, installed, run, wait_for

pytestmark = pytest.mark.slow


def test_a_plugin_declared_while_the_console_runs_joins_it_and_an_archived_one_leaves(tmp_path):
    env, operator_token, _ = installed(tmp_path)
    data = tmp_path / "data"
    server = Served(env)
    try:
        server.log_in()
        assert "breakout_v1" not in server.get("/")[1]
        run(env, "startplugin", "breakout_v1")
        run(env, "seed_demo", "--trades", "7", "--plugin", "breakout_v1")

        wait_for(lambda: bearer(server, operator_token, "/api/config/breakout_v1")[0] == 200, "the API to know it")
        status, page = server.get("/")
        assert status == 200 and 'id="card-breakout_v1"' in page
        assert server.status("/config/breakout_v1/") == 200
        assert server.status("/admin/plugin_breakout_v1/trade/") == 200
        stream = urllib.request.urlopen(
            urllib.request.Request(
                f"{server.url}/config/stream?scope=breakout_v1", headers={"Authorization": f"Bearer {operator_token}"}
            ),
            timeout=5,
        )
        assert stream.status == 200
        stream.close()

        # The bot runs a profit chain on it; the served overview shows its progress.
        with PluginStore(data / "plugins" / "breakout_v1.sqlite3") as bot:
            base = bot.open_trades()[0]["mt5_ticket"] if bot.open_trades() else bot.max_ticket()
            chain_id = bot.start_chain(base_ticket=base, levels=[(20, 0.01), (40, 0.01), (60, 0.01)])
            bot.execute_level(chain_id, 1, profit_pips=20, profit_dollars=2.0)
        wait_for(lambda: "level 1/3" in server.get("/")[1], "the overview to show the chain's progress")

        # The consumer, started before the plugin existed, syncs it, chains and levels included.
        assert bearer(server, operator_token, "/sync/run", data=b"")[0] in (200, 302)
        wait_for(
            lambda: central(data, "SELECT COUNT(*) FROM aggregated_trades WHERE plugin_id = 'breakout_v1'") == [(7,)],
            "the consumer to sync the new plugin",
        )
        with PluginStore(data / "plugins" / "breakout_v1.sqlite3") as bot:
            bot.execute_level(chain_id, 2, profit_pips=40, profit_dollars=4.0)
            bot.complete_chain(chain_id)
        wait_for(  # the first manual sync has finished (a second one asked meanwhile would join it)
            lambda: central(data, "SELECT COUNT(*) FROM sync_app_jobstate WHERE name = 'manual_sync'") == [(0,)],
            "the first manual sync to finish",
        )
        assert bearer(server, operator_token, "/sync/run", data=b"")[0] in (200, 302)
        wait_for(
            lambda: (
                central(
                    data,
                    "SELECT status, current_level, total_profit_booked FROM aggregated_chains WHERE chain_id = ?",
                    chain_id,
                )
                == [("COMPLETED", 2, 6.0)]
            ),
            "the completed chain to reach the central copy",
        )

        run(env, "archive_plugin", "breakout_v1")
        wait_for(lambda: bearer(server, operator_token, "/api/config/breakout_v1")[0] == 404, "the API to forget it")
        assert 'id="card-breakout_v1"' not in server.get("/")[1]
        assert server.status("/admin/plugin_breakout_v1/trade/") == 404
        assert json.loads(bearer(server, operator_token, "/api/config/combined_v3")[1])["scope"] == "combined_v3"
    finally:
        server.stop()
