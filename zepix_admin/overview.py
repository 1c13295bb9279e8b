"""What the overview shows for each plugin, read from its own database and the central one."""

from datetime import timedelta

from django.db import DatabaseError
from django.db.models import OuterRef, Q, Subquery, Sum
from django.utils import timezone

from config_app.service import active_documents
from plugins_app import plugins, registry
from plugins_app.plugin_apps import models_for
from plugins_app.sqlite import database_bytes
from sync_app.models import Backup
from sync_app.sync import health as sync_health
from zepix_admin import charts

CHART_DAYS = 30
CARD_WIDTH, CARD_HEIGHT = 360, 150


def plugin_card(plugin_id: str, sync_state: dict, last_backup, document: dict) -> dict:
    """The card of one plugin (``document``: its active config); a plugin whose database is
    missing, unreadable or of the wrong schema gets a broken card saying why and what to do,
    and the other cards go on."""
    try:
        return _working_card(plugin_id, sync_state, last_backup, document)
    except DatabaseError as error:  # only then is the file looked at: the check costs 0.6 ms a plugin
        problem = plugins.database_problem(plugin_id) or f"its database cannot be read: {error}"
    return {
        "plugin_id": plugin_id,
        "broken": str(problem),
        "repair": plugins.repair_hint(plugin_id, problem),
        "enabled": document.get("enabled", True),
        "sync": sync_state,
        "last_backup": last_backup,
        "open_trades": 0,
        "today_trades": 0,
        "today_profit": 0.0,
        "today_pips": 0.0,
        "active_chains": [],
    }


def _working_card(plugin_id: str, sync_state: dict, last_backup, document: dict) -> dict:
    models = models_for(plugin_id)
    today = timezone.now().date()
    first_shown = today - timedelta(days=CHART_DAYS)
    stats = models["DailyStats"].objects
    totals = stats.aggregate(
        trades=Sum("total_trades"),
        wins=Sum("winning_trades"),
        profit_before=Sum("total_profit_dollars", filter=Q(date__lte=first_shown)),
    )
    recent = list(
        stats.filter(date__gt=first_shown)
        .order_by("date")
        .values_list("date", "total_profit_dollars", "total_trades", "total_profit_pips", named=True)
    )
    today_stats = next((day for day in recent if day.date == today), None)
    # The running total from the plugin's first day, drawn over the chart's days only: drawing
    # years of days (points, hover titles, the figures table) took the overview from 114 to
    # 950 ms. The days before the chart are one sum: reading them row by row (two years of
    # days) was a fifth of a card's time.
    equity, running = charts.Series("Equity"), totals["profit_before"] or 0.0
    for day in recent:
        running += day.total_profit_dollars or 0.0
        equity.points.append((day.date, round(running, 2)))
    info = models["PluginInfo"].objects.first()
    return {
        "plugin_id": plugin_id,
        "enabled": document.get("enabled", True),
        "version": info.version if info else "",
        "open_trades": models["Trade"].objects.filter(status__in=["OPEN", "PARTIAL"]).count(),
        "today_trades": (today_stats.total_trades or 0) if today_stats else 0,
        "today_profit": (today_stats.total_profit_dollars or 0.0) if today_stats else 0.0,
        "today_pips": (today_stats.total_profit_pips or 0.0) if today_stats else 0.0,
        "active_chains": active_chains(models),
        "win_rate": (totals["wins"] or 0) / totals["trades"] * 100 if totals["trades"] else None,
        "database_bytes": database_bytes(plugins.database_path(plugin_id)),
        "sync": sync_state,
        "last_backup": last_backup,
        "daily_chart": charts.time_chart(
            f"Daily P&L, last {CHART_DAYS} days",
            [charts.Series("P&L", [(day.date, float(day.total_profit_dollars or 0)) for day in recent])],
            unit="money",
            kind="bars",
            width=CARD_WIDTH,
            height=CARD_HEIGHT,
        ),
        "equity_chart": charts.time_chart(
            f"Equity, last {CHART_DAYS} days", [equity], unit="money", width=CARD_WIDTH, height=CARD_HEIGHT
        ),
    }


ACTIVE_CHAINS_SHOWN = 5


def active_chains(models) -> list[dict]:
    """The newest active chains with their level progress (indexed on status: a few rows)."""
    chains = (
        models["ProfitChain"]
        .objects.filter(status="ACTIVE")
        .order_by("-created_at")
        .values_list(
            "chain_id",
            "base_trade__mt5_ticket",
            "base_trade__symbol",
            "current_level",
            "max_levels",
            "total_profit_booked",
        )[:ACTIVE_CHAINS_SHOWN]
    )
    return [
        {
            "chain_id": chain_id,
            "ticket": ticket,
            "symbol": symbol or "",
            "level": level or 0,
            "levels": levels or 0,
            "booked": booked or 0.0,
        }
        for chain_id, ticket, symbol, level, levels, booked in chains
    ]


def latest_backups(aliases: list[str]) -> dict:
    """{alias: its newest verified backup} in one query (one per plugin was a round trip each to
    a PostgreSQL central database)."""
    newest = Backup.objects.filter(database=OuterRef("database"), verified=True).order_by("-created_at").values("pk")
    latest = Backup.objects.filter(database__in=aliases, verified=True, pk=Subquery(newest[:1]))
    return {backup.database: backup for backup in latest}


def overview() -> dict:
    sync_state = sync_health()
    plugin_ids = plugins.plugin_ids()
    backups = latest_backups([registry.alias_for(plugin_id) for plugin_id in plugin_ids])
    documents = active_documents(plugin_ids)
    cards = [
        plugin_card(
            plugin_id,
            sync_state["plugins"].get(plugin_id, {}),
            backups.get(registry.alias_for(plugin_id)),
            documents[plugin_id],
        )
        for plugin_id in plugin_ids
    ]
    return {
        "cards": cards,
        "sync_overall": sync_state["overall"],
        "totals": {
            "open_trades": sum(card["open_trades"] for card in cards),
            "today_trades": sum(card["today_trades"] for card in cards),
            "today_profit": round(sum(card["today_profit"] for card in cards), 2),
            "today_pips": round(sum(card["today_pips"] for card in cards), 1),
            "enabled": sum(1 for card in cards if card["enabled"]),
        },
        "generated_at": timezone.now(),
    }
