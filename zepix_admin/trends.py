"""The figures of the charts page, read from the central database only (small tables and the
few open trades): P&L and equity from cross_plugin_stats, the sync's runs, the backups, the
open exposure."""

from collections import defaultdict
from datetime import date, timedelta

from django.db.models import Sum
from django.utils import timezone
from django.utils.safestring import SafeString

from sync_app.models import AggregatedTrade, Backup, CrossPluginStats, SyncRun
from zepix_admin.charts import Series, category_chart, time_chart
from zepix_admin.core.errors import Invalid

RANGES = {"7": 7, "30": 30, "90": 90, "all": None}
DEFAULT_RANGE = "30"
RUNS_SHOWN = 500


def range_start(choice: str) -> date | None:
    """The first day shown for a range the request names; None for all of it."""
    if choice not in RANGES:
        raise Invalid(f"The range must be one of {', '.join(RANGES)} (days, or all).")
    days = RANGES[choice]
    return timezone.now().date() - timedelta(days=days - 1) if days else None


def charts(choice: str) -> list[SafeString]:
    since = range_start(choice)
    return [
        daily_profit(since),
        equity(since),
        sync_durations(since),
        sync_rows(since),
        backup_sizes(since),
        open_exposure(),
    ]


def daily_profit(since: date | None) -> SafeString:
    days = CrossPluginStats.objects.all()
    if since:
        days = days.filter(date__gte=since)
    totals = days.values("date").annotate(profit=Sum("profit")).order_by("date")
    together = Series("All plugins", [(row["date"], float(row["profit"])) for row in totals])
    return time_chart("P&L by day (closed trades, by exit day)", [together], unit="money", kind="bars")


def equity(since: date | None) -> SafeString:
    """Each plugin's running total of closed P&L, and all of them together, from its first day."""
    per_plugin: dict[str, Series] = {}
    running: dict[str, float] = defaultdict(float)
    together = Series("All plugins")
    overall = 0.0
    for day, plugin_id, profit in CrossPluginStats.objects.order_by("date", "plugin_id").values_list(
        "date", "plugin_id", "profit"
    ):
        running[plugin_id] += float(profit)
        overall += float(profit)
        if since is None or day >= since:
            per_plugin.setdefault(plugin_id, Series(plugin_id)).points.append((day, round(running[plugin_id], 2)))
            if together.points and together.points[-1][0] == day:
                together.points[-1] = (day, round(overall, 2))
            else:
                together.points.append((day, round(overall, 2)))
    series = [together, *per_plugin.values()] if len(per_plugin) > 1 else list(per_plugin.values())
    return time_chart("Equity (running closed P&L)", series, unit="money")


def _runs(since: date | None):
    runs = SyncRun.objects.exclude(finished_at=None)
    if since:
        runs = runs.filter(started_at__date__gte=since)
    return list(reversed(runs.order_by("-started_at")[:RUNS_SHOWN]))


def sync_durations(since: date | None) -> SafeString:
    points = [(run.started_at, run.duration_seconds or 0.0) for run in _runs(since)]
    return time_chart(f"Sync duration per run (newest {RUNS_SHOWN})", [Series("Duration", points)], unit="seconds")


def sync_rows(since: date | None) -> SafeString:
    points = [
        (run.started_at, float(sum(r.get("inserted", 0) + r.get("updated", 0) for r in run.plugins.values())))
        for run in _runs(since)
    ]
    return time_chart("Rows copied per sync run", [Series("Rows", points)], unit="count", kind="bars")


def backup_sizes(since: date | None) -> SafeString:
    backups = Backup.objects.all()
    if since:
        backups = backups.filter(created_at__date__gte=since)
    per_database: dict[str, Series] = {}
    for database, created_at, size in backups.order_by("created_at").values_list(
        "database", "created_at", "size_bytes"
    ):
        per_database.setdefault(database, Series(database)).points.append((created_at, float(size)))
    return time_chart("Backup size (compressed)", list(per_database.values()), unit="bytes")


def open_exposure() -> SafeString:
    """Net lots of the open trades per symbol (buys positive, sells negative)."""
    lots: dict[str, float] = defaultdict(float)
    for symbol, direction, total in (
        AggregatedTrade.objects.filter(status__in=["OPEN", "PARTIAL"])
        .values_list("symbol", "direction")
        .annotate(total=Sum("lot_size"))
        .order_by()
    ):
        lots[symbol] += float(total) if direction == "BUY" else -float(total)
    return category_chart("Open exposure by symbol (net lots, buys minus sells)", sorted(lots.items()), unit="lots")
