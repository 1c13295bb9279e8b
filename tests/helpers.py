import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def trade(ticket: int, **overrides) -> dict:
    """An open trade as the bot would save it."""
    values = {
        "ticket": ticket, "symbol": "EURUSD", "direction": "BUY", "lot_size": 0.1, "entry_price": 1.085,
        "sl_price": 1.083, "tp_price": 1.088, "entry_time": NOW - timedelta(hours=2),
        "signal_data": {"timeframe": "15m"},
    }  # fmt: skip
    values.update(overrides)
    return values


def closed_trade(ticket: int, profit: float, exit_time: datetime = NOW, **overrides) -> dict:
    return trade(
        ticket, status="CLOSED", exit_time=exit_time, exit_price=1.087, profit_pips=profit / 1.0,
        profit_dollars=profit, close_reason="TP" if profit > 0 else "SL", **overrides,
    )  # fmt: skip


def manage(*args: str, env: dict, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run manage.py in a real child process with its own data and config folders."""
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, capture_output=True, text=True,
        check=check, timeout=timeout,
    )  # fmt: skip


def fresh_env(tmp_path: Path, **extra) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZEPIX_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="zepix_admin.settings", ZEPIX_DATA_DIR=str(tmp_path / "data"),
        ZEPIX_CONFIG_DIR=str(tmp_path / "config"), DJANGO_SUPERUSER_USERNAME="boss",
        DJANGO_SUPERUSER_PASSWORD="a-long-test-password-42",
    )  # fmt: skip
    env.update(extra)
    return env
