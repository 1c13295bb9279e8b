"""Realistic, deterministic demo trades, written through the bot's own API (PluginStore).

The same seed, plugin and starting point give the same trades. Tickets continue after
the largest ticket already in the database, so running it again never collides.
"""

import random
from datetime import UTC, datetime, timedelta

from plugins_app.store import PluginStore

SYMBOLS = {  # symbol: (typical price, pip size, dollars per pip per lot)
    "EURUSD": (1.085, 0.0001, 10.0),
    "GBPUSD": (1.27, 0.0001, 10.0),
    "USDJPY": (151.0, 0.01, 6.6),
    "XAUUSD": (2350.0, 0.1, 10.0),
    "AUDUSD": (0.66, 0.0001, 10.0),
}
FIRST_TICKET = 100_000_001
CHUNK = 50_000
MAX_SPAN = timedelta(days=730)
SPACING = timedelta(minutes=30)


def generate_trades(count: int, *, seed: int, plugin_id: str, first_ticket: int, now: datetime):
    rng = random.Random(f"{seed}:{plugin_id}:{first_ticket}")
    span = min(MAX_SPAN, SPACING * count)
    step = span / max(count, 1)
    symbols = list(SYMBOLS)
    for index in range(count):
        symbol = rng.choice(symbols)
        price, pip, pip_value = SYMBOLS[symbol]
        direction = "BUY" if rng.random() < 0.5 else "SELL"
        lot = round(rng.choice((0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)), 2)
        entry_price = round(price * (1 + rng.uniform(-0.03, 0.03)), 5)
        sign = 1 if direction == "BUY" else -1
        sl_pips, tp_pips = rng.choice((15, 20, 30)), rng.choice((20, 30, 45, 60))
        entry_time = now - span + step * index + timedelta(seconds=rng.randint(0, 59))
        trade = {
            "mt5_ticket": first_ticket + index,
            "symbol": symbol,
            "direction": direction,
            "lot_size": lot,
            "entry_price": entry_price,
            "sl_price": round(entry_price - sign * sl_pips * pip, 5),
            "tp_price": round(entry_price + sign * tp_pips * pip, 5),
            "entry_time": entry_time,
            "signal_data": {
                "strategy": plugin_id,
                "timeframe": rng.choice(("5m", "15m", "1h")),
                "confidence": round(rng.uniform(0.5, 0.99), 2),
            },
        }
        still_open = now - entry_time < timedelta(hours=12) and rng.random() < 0.6
        if not still_open:
            roll = rng.random()
            reason, pips = (
                ("TP", tp_pips)
                if roll < 0.5
                else ("SL", -sl_pips)
                if roll < 0.85
                else (rng.choice(("MANUAL", "REVERSAL")), round(rng.uniform(-sl_pips, tp_pips), 1))
            )
            duration = timedelta(minutes=rng.randint(5, 600))
            trade.update(
                status="CLOSED",
                close_reason=reason,
                exit_time=min(entry_time + duration, now),
                exit_price=round(entry_price + sign * pips * pip, 5),
                profit_pips=pips,
                profit_dollars=round(pips * pip_value * lot, 2),
                commission=round(-3.5 * lot, 2),
                swap=round(rng.uniform(-1, 0.5) * lot, 2) if duration > timedelta(hours=4) else 0,
            )
        elif rng.random() < 0.2:
            trade["status"] = "PARTIAL"
        yield trade


def seed_plugin(
    database_path,
    plugin_id: str,
    count: int,
    *,
    seed: int = 1,
    now: datetime | None = None,
    with_extras: bool = True,
    on_rows=None,
) -> tuple[int, int]:
    """Add `count` demo trades (plus a few chains and signals); returns (first, last) ticket."""
    now = now or datetime.now(UTC)
    with PluginStore(database_path) as store:
        first_ticket = max(store.max_ticket() + 1, FIRST_TICKET)
        batch = []
        for trade in generate_trades(count, seed=seed, plugin_id=plugin_id, first_ticket=first_ticket, now=now):
            batch.append(trade)
            if len(batch) == CHUNK:
                store.save_trades(batch, on_rows)
                batch = []
        if batch:
            store.save_trades(batch, on_rows)
        if with_extras:
            _seed_chains_and_signals(store, plugin_id, first_ticket, count, seed, now)
    return first_ticket, first_ticket + count - 1


def _seed_chains_and_signals(store: PluginStore, plugin_id, first_ticket, count, seed, now) -> None:
    rng = random.Random(f"extras:{seed}:{plugin_id}:{first_ticket}")
    store.record_start(plugin_id, "3.0.0" if plugin_id.endswith("v3") else "1.0.0", now - timedelta(hours=6))
    store.heartbeat(plugin_id, now - timedelta(hours=6) + timedelta(minutes=4))
    for _ in range(min(5, max(1, count // 200))):
        base_ticket = rng.randint(first_ticket, first_ticket + count - 1)
        levels = [(20.0 + 10 * level, round(0.01 * (1.5**level), 2)) for level in range(rng.randint(3, 5))]
        chain_id = store.start_chain(
            base_ticket=base_ticket, levels=levels, created_at=now - timedelta(days=rng.randint(0, 20))
        )
        for level_number in range(1, rng.randint(1, len(levels) - 1) + 1):
            pips = levels[level_number - 1][0]
            store.execute_level(
                chain_id,
                level_number,
                profit_pips=pips,
                profit_dollars=round(pips * 10 * levels[level_number - 1][1], 2),
                executed_at=now - timedelta(hours=rng.randint(1, 48)),
            )
    for _ in range(min(50, count)):
        ticket = rng.randint(first_ticket, first_ticket + count - 1)
        trade = store.trade_by_ticket(ticket)
        if trade is None:
            continue
        store.log_signal(
            symbol=trade["symbol"],
            signal_type=f"{trade['direction']}_ENTRY",
            timeframe=trade["signal_data"]["timeframe"],
            payload=trade["signal_data"],
            action="EXECUTED",
            trade_ticket=ticket,
            received_at=trade["entry_time"],
        )
