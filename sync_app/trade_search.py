"""The trade search across all plugins, over the central aggregated_trades."""

from datetime import date, datetime, time

from django.db.models import Q, QuerySet
from django.utils import timezone

from sync_app.models import AggregatedChain, AggregatedTrade

SORTS = {
    "newest": ["-entry_time", "-id"],
    "oldest": ["entry_time", "id"],
    "profit": ["-profit_dollars", "-id"],
    "loss": ["profit_dollars", "id"],
    "ticket": ["mt5_ticket", "plugin_id"],
}
FILTERS = ("plugin", "symbol", "status", "direction", "date_from", "date_to")


def chains_of(trades) -> dict[tuple[str, int | None], str]:
    """{(plugin_id, trade_id): chain_id} of the chains based on these trades (one indexed query)."""
    pairs = {(trade.plugin_id, trade.trade_id) for trade in trades if trade.trade_id is not None}
    if not pairs:
        return {}
    condition = Q()
    for plugin_id, trade_id in pairs:
        condition |= Q(plugin_id=plugin_id, base_trade_id=trade_id)
    return {
        (plugin_id, trade_id): chain_id
        for plugin_id, trade_id, chain_id in AggregatedChain.objects.filter(condition).values_list(
            "plugin_id", "base_trade_id", "chain_id"
        )
    }


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def search(params) -> tuple[QuerySet, dict, list[str]]:
    """(queryset, the filters applied, problems with the request) from GET parameters.
    Values are only ever compared, never trusted as SQL or paths."""
    chosen = {name: params.get(name, "").strip() for name in FILTERS}
    chosen["sort"] = params.get("sort", "newest") if params.get("sort") in SORTS else "newest"
    problems = []
    trades = AggregatedTrade.objects.all()
    if chosen["plugin"]:
        trades = trades.filter(plugin_id=chosen["plugin"])
    if chosen["symbol"]:
        trades = trades.filter(symbol=chosen["symbol"].upper())
    if chosen["status"]:
        trades = trades.filter(status=chosen["status"].upper())
    if chosen["direction"]:
        trades = trades.filter(direction=chosen["direction"].upper())
    for name, lookup, at in (("date_from", "entry_time__gte", time.min), ("date_to", "entry_time__lte", time.max)):
        if chosen[name]:
            day = _day(chosen[name])
            if day is None:
                problems.append(f"{name.replace('_', ' ')} must be a date like 2026-11-24")
            else:
                trades = trades.filter(**{lookup: timezone.make_aware(datetime.combine(day, at))})
    return trades.order_by(*SORTS[chosen["sort"]]), chosen, problems
