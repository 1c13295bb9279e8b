"""The trade search across all plugins, over the central aggregated_trades.

Pages are keyset pages: each link carries the sort key of the row it continues from, so the
page of the oldest trades costs what the page of the newest does (an index range, not an
OFFSET over millions of rows). The totals of the filtered set come from trade_totals, which
the sync keeps exact per plugin, entry day, symbol, direction and status.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.core import signing
from django.db import connection
from django.db.models import BooleanField, FloatField, Func, Q, QuerySet, Sum
from django.db.models.expressions import RawSQL
from django.utils import timezone

from plugins_app.schema import FIRST_DATE, LAST_DATE
from sync_app.models import AggregatedChain, AggregatedTrade, TradeTotals
from zepix_admin.core.errors import Invalid

PAGE_SIZE = 50
FILTERS = ("plugin", "symbol", "status", "direction", "date_from", "date_to")

# Written as the agg_profit_idx expression is, so that SQLite and PostgreSQL sort by that
# index (a bound parameter in place of the 0 would not match it). Open trades sort as 0.
PROFIT = RawSQL("COALESCE(aggregated_trades.profit_dollars, 0)", (), output_field=FloatField())


@dataclass(frozen=True)
class Sort:
    label: str
    keys: tuple[str, ...]  # the last is always the id, so that every row has its own place
    descending: bool


SORTS = {
    "newest": Sort("Newest first", ("entry_time", "id"), True),
    "oldest": Sort("Oldest first", ("entry_time", "id"), False),
    "profit": Sort("Biggest profit first", ("sort_profit", "id"), True),
    "loss": Sort("Biggest loss first", ("sort_profit", "id"), False),
    "ticket": Sort("Ticket, lowest first", ("mt5_ticket", "id"), False),
    "ticket_desc": Sort("Ticket, highest first", ("mt5_ticket", "id"), True),
    "symbol": Sort("Symbol A to Z", ("symbol", "entry_time", "id"), False),
    "symbol_desc": Sort("Symbol Z to A", ("symbol", "entry_time", "id"), True),
}
# A column header's link: the first sort it offers, the second when that one is already chosen.
COLUMN_SORTS = {
    "ticket": ("ticket", "ticket_desc"),
    "symbol": ("symbol", "symbol_desc"),
    "entry": ("newest", "oldest"),
    "profit": ("profit", "loss"),
}


def column_headers(sort_name: str) -> dict[str, dict]:
    """Each sortable column: the sort its header links to, and how the page is sorted by it now
    ("ascending", "descending" or "" for aria-sort)."""
    headers = {}
    for column, offered in COLUMN_SORTS.items():
        state = ""
        if sort_name in offered:
            state = "descending" if SORTS[sort_name].descending else "ascending"
        headers[column] = {"sort": offered[1] if sort_name == offered[0] else offered[0], "state": state}
    return headers


# How each sort key is read back from a page link.
KEY_TYPES: dict[str, Callable[[str], object]] = {
    "entry_time": datetime.fromisoformat,
    "sort_profit": float,
    "mt5_ticket": int,
    "symbol": str,
    "id": int,
}
CURSOR_SALT = "zepix.trade-search.page"


@dataclass
class Page:
    trades: list
    has_previous: bool
    has_next: bool
    first_cursor: str = ""
    last_cursor: str = ""


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
    """A day the console may hold trades on (plugins_app.schema: every time is checked to be in
    them), or None: the day after 9999-12-31 was a 500."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    return day if FIRST_DATE <= day <= LAST_DATE else None


def choices(params) -> tuple[dict, list[str]]:
    """(the filters and sort asked for, problems with them) from GET parameters. Values are only
    ever compared, never trusted as SQL or paths."""
    chosen = {name: params.get(name, "").strip() for name in FILTERS}
    chosen["symbol"] = chosen["symbol"].upper()
    chosen["sort"] = params.get("sort") if params.get("sort") in SORTS else "newest"
    problems = []
    for name in ("date_from", "date_to"):
        if chosen[name] and _day(chosen[name]) is None:
            problems.append(
                f"{name.replace('_', ' ')} must be a date like 2026-11-24, from {FIRST_DATE} to {LAST_DATE}"
            )
            chosen[name] = ""
    return chosen, problems


def search(params) -> tuple[QuerySet, dict, list[str]]:
    """(the matching trades in the chosen order, the filters applied, problems with the request)."""
    chosen, problems = choices(params)
    sort = SORTS[chosen["sort"]]
    # By entry time, the (plugin_id, entry_time) and (status, entry_time) indexes filter and
    # sort at once (and a plugin that stopped trading long ago is found at once): no hint.
    common = Q if sort.keys[0] == "entry_time" else _common
    trades = _matching(AggregatedTrade.objects.all(), chosen, common)
    if chosen["date_from"]:
        trades = trades.filter(entry_time__gte=_day_start(chosen["date_from"]))
    if chosen["date_to"]:
        # Before the next day rather than up to 23:59:59.999999, whatever a time's fraction.
        trades = trades.filter(entry_time__lt=_day_start(chosen["date_to"]) + timedelta(days=1))
    return _ordered(trades, sort), chosen, problems


def _matching(rows: QuerySet, chosen: dict, common=Q) -> QuerySet:
    """The trades' (or their totals') rows of the chosen plugin, symbol prefix, status and
    direction; ``common`` writes the conditions most trades meet (see _common)."""
    if chosen["plugin"]:
        rows = rows.filter(common(plugin_id=chosen["plugin"]))
    if chosen["symbol"]:
        rows = rows.filter(symbol__startswith=chosen["symbol"])
    if chosen["status"]:
        status = chosen["status"].upper()
        rows = rows.filter(common(status=status) if status == "CLOSED" else Q(status=status))
    if chosen["direction"]:
        rows = rows.filter(common(direction=chosen["direction"].upper()))
    return rows


class Likelihood(Func):
    template = "likelihood(%(expressions)s, 0.5)"  # a literal: SQLite takes no parameter here
    conditional = True  # a condition itself: filter() takes it without "= true"
    output_field = BooleanField()


def _common(**condition) -> Q | Likelihood:
    """A condition most trades meet (one plugin of a handful, a direction, closed). Without
    statistics SQLite takes any indexed equality for a selective one: a page sorted by profit
    for one plugin read that plugin's index and sorted a fifth of the table (370 ms at 2,000,000
    trades, 0.3 ms scanning the profit index). likelihood() tells it the truth; PostgreSQL has
    its statistics."""
    if connection.vendor != "sqlite":
        return Q(**condition)
    return Likelihood(Q(**condition))


def _day_start(value: str) -> datetime:
    return timezone.make_aware(datetime.combine(date.fromisoformat(value), time.min))


def _ordered(trades: QuerySet, sort: Sort, *, reverse: bool = False) -> QuerySet:
    descending = sort.descending != reverse
    return trades.annotate(sort_profit=PROFIT).order_by(*(f"-{key}" if descending else key for key in sort.keys))


def totals(chosen: dict) -> dict:
    """{"trades": n, "profit": Decimal} of every trade the filters match, exact."""
    rows = _matching(TradeTotals.objects.all(), chosen)
    if chosen["date_from"]:
        rows = rows.filter(day__gte=chosen["date_from"])
    if chosen["date_to"]:
        rows = rows.filter(day__lte=chosen["date_to"])
    return rows.aggregate(trades=Sum("trades_count", default=0), profit=Sum("profit", default=Decimal(0)))


def _beyond(keys: tuple[str, ...], values: list, comparison: str) -> Q:
    """Rows past (key1, key2, …) = (values) in the sort's direction: k1 > v1 OR (k1 = v1 AND (…)).
    The leading bound (k1 >= v1) is said once more on its own so that the database starts its
    index range there instead of filtering from the first row."""

    def past(position: int) -> Q:
        strictly = Q(**{f"{keys[position]}__{comparison}": values[position]})
        if position == len(keys) - 1:
            return strictly
        return strictly | (Q(**{keys[position]: values[position]}) & past(position + 1))

    return Q(**{f"{keys[0]}__{comparison}e": values[0]}) & past(0)


def _cursor(trade, sort: Sort) -> str:
    return signing.dumps([str(getattr(trade, key)) for key in sort.keys], salt=CURSOR_SALT, compress=True)


def _cursor_values(cursor: str, sort: Sort) -> list:
    try:
        values = signing.loads(cursor, salt=CURSOR_SALT)
        return [KEY_TYPES[key](value) for key, value in zip(sort.keys, values, strict=True)]
    except (signing.BadSignature, ValueError, TypeError, ArithmeticError):
        raise Invalid(
            "This page link is not valid (or is from another sort); start again from the first page."
        ) from None


def page_of(trades: QuerySet, sort_name: str, params) -> Page:
    """The page the request asks for: the first (no cursor), the one after ``after``, the one
    before ``before``, or the last (``page=last``)."""
    sort = SORTS[sort_name]
    backwards = "before" in params or params.get("page") == "last"
    rows = _ordered(trades, sort, reverse=backwards)
    cursor = params.get("before") or params.get("after")
    if cursor and params.get("page") != "last":
        comparison = "lt" if sort.descending != backwards else "gt"
        rows = rows.filter(_beyond(sort.keys, _cursor_values(cursor, sort), comparison))
    found = list(rows[: PAGE_SIZE + 1])
    more = len(found) > PAGE_SIZE
    found = found[:PAGE_SIZE]
    if backwards:
        found.reverse()
        page = Page(found, has_previous=more, has_next=params.get("page") != "last")
    else:
        page = Page(found, has_previous=bool(cursor), has_next=more)
    if found:
        page.first_cursor, page.last_cursor = _cursor(found[0], sort), _cursor(found[-1], sort)
    return page
