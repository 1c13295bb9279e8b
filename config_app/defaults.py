"""The documents written on first setup."""

from typing import Any

PLUGIN_DEFAULTS = {
    "enabled": True,
    "max_lot_size": 1.0,
    "risk_per_trade_pct": 1.0,
    "max_open_trades": 10,
    "mode": "paper",
    "symbols": ["EURUSD", "GBPUSD", "XAUUSD"],
}

GLOBAL_DEFAULTS: dict[str, Any] = {
    "trading_enabled": True,
    "risk_tiers": {
        "5000": {"per_trade_cap": 50, "daily_loss_cap": 150},
        "10000": {"per_trade_cap": 100, "daily_loss_cap": 300},
        "25000": {"per_trade_cap": 250, "daily_loss_cap": 750},
    },
    "schedules": {
        "sync_minutes": 5,
        "trading_backup_minutes": 60,
        "central_backup_minutes": 1440,
        "verify_backups_minutes": 1440,
    },
    "sync": {
        "retry_delays_seconds": [5, 10, 20],
        "alert_after_failures": 3,
        "alert_webhook_url": "",
        "lock_wait_seconds": 2,
    },
    "backup": {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12, "archive_keep_days": 90},
    "alerts": {"webhook_min_level": "WARNING", "min_free_disk_gb": 1},
}


def for_scope(scope: str) -> dict:
    return GLOBAL_DEFAULTS if scope == "global" else PLUGIN_DEFAULTS
