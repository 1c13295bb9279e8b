"""Trade inspection: every plugin's trades, chains, signals and daily stats, read-only.

The same ModelAdmin classes serve every plugin; each plugin's models are registered under
its own app ("Plugin combined_v3") and read from its own database through the router.
Kept fast on a million trades: no full-table count, symbol choices found by jumping
through the symbol index, and a date hierarchy that narrows the range it scans.
"""

import json

from django.conf import settings
from django.contrib import admin
from django.db import connections

from plugins_app.plugin_apps import models_for
from zepix_admin.core.access import VIEWER, has_role
from zepix_admin.core.exports import EXPORT_BLOCK_ROWS, csv_download
from zepix_admin.core.pagination import CappedCountPaginator


class ReadOnlyAdmin(admin.ModelAdmin):
    """The bot owns these records: the admin shows them and changes nothing."""

    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # facets count every filter's choices over the whole table
    paginator = CappedCountPaginator
    list_per_page = 100
    actions = ["export_csv"]

    def lookup_allowed(self, lookup, value, request=None):
        """Only the lookups the filters and the date hierarchy make (indexed, cheap). Django would
        take any lookup on any field from the URL: `signal_data__regex=(.*.*)*$x` held the
        interpreter in a Python regex for minutes and stopped every endpoint. Others are 400."""
        return lookup in self.allowed_lookups()

    def allowed_lookups(self) -> set[str]:
        allowed = set()
        for entry in self.list_filter:
            if isinstance(entry, str):
                allowed |= {entry, f"{entry}__exact", f"{entry}__isnull", f"{entry}__in"}
            elif isinstance(entry, type) and issubclass(entry, admin.SimpleListFilter) and entry.parameter_name:
                allowed.add(entry.parameter_name)
        if self.date_hierarchy:
            allowed |= {f"{self.date_hierarchy}__{part}" for part in ("year", "month", "day")}
        return allowed

    def has_view_permission(self, request, obj=None):
        return has_role(request.user, VIEWER)

    def has_module_permission(self, request):
        return has_role(request.user, VIEWER)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Export selected to CSV", permissions=["view"])
    def export_csv(self, request, queryset):
        columns = [field.attname for field in self.model._meta.concrete_fields]
        rows = queryset.values_list(*columns).iterator(chunk_size=EXPORT_BLOCK_ROWS)
        return csv_download(
            request,
            f"{self.model._meta.app_label}_{self.model._meta.db_table}.csv",
            columns,
            ([json.dumps(value) if isinstance(value, dict | list) else value for value in row] for row in rows),
        )


class SymbolFilter(admin.SimpleListFilter):
    title = "symbol"
    parameter_name = "symbol"

    def lookups(self, request, model_admin):
        # Jumps from one symbol to the next through the index: cost grows with the number
        # of symbols, not of trades (a plain DISTINCT reads the whole index).
        table = model_admin.model._meta.db_table
        sql = (
            f"WITH RECURSIVE s(symbol) AS (SELECT MIN(symbol) FROM {table} UNION ALL "
            f"SELECT (SELECT MIN(symbol) FROM {table} WHERE symbol > s.symbol) FROM s WHERE s.symbol IS NOT NULL) "
            "SELECT symbol FROM s WHERE symbol IS NOT NULL"
        )
        with connections[model_admin.model.objects.db].cursor() as cursor:
            cursor.execute(sql)
            return [(symbol, symbol) for (symbol,) in cursor.fetchall()]

    def queryset(self, request, queryset):
        return queryset.filter(symbol=self.value()) if self.value() else queryset


class TradeAdmin(ReadOnlyAdmin):
    list_display = [
        "mt5_ticket",
        "symbol",
        "direction",
        "lot_size",
        "entry_price",
        "entry_time",
        "exit_price",
        "exit_time",
        "profit_pips",
        "profit_dollars",
        "status",
        "close_reason",
    ]
    list_filter = ["status", SymbolFilter, "direction", "close_reason"]
    search_fields = ["=mt5_ticket", "symbol"]
    date_hierarchy = "entry_time"
    ordering = ["-entry_time"]

    def get_search_results(self, request, queryset, search_term):
        # A number is a ticket (exact, indexed); anything else is a symbol prefix (indexed).
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.isdigit():
            return queryset.filter(mt5_ticket=int(term)), False
        return queryset.filter(symbol__startswith=term.upper()), False


class ChainLevelInline(admin.TabularInline):
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "level_number",
        "target_pips",
        "volume_to_close",
        "executed_at",
        "profit_pips",
        "profit_dollars",
    )

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ProfitChainAdmin(ReadOnlyAdmin):
    list_display = [
        "chain_id",
        "base_trade",
        "status",
        "current_level",
        "max_levels",
        "total_profit_booked",
        "created_at",
    ]
    list_filter = ["status"]
    search_fields = ["=chain_id"]
    list_select_related = ["base_trade"]


class SignalAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "symbol", "signal_type", "timeframe", "action", "trade_ticket"]
    list_filter = ["signal_type", "action"]
    search_fields = ["symbol", "=trade_ticket"]
    date_hierarchy = "received_at"


class DailyStatsAdmin(ReadOnlyAdmin):
    list_display = [
        "date",
        "total_trades",
        "winning_trades",
        "losing_trades",
        "breakeven_trades",
        "total_profit_pips",
        "total_profit_dollars",
        "max_drawdown",
        "largest_win",
        "largest_loss",
    ]
    date_hierarchy = "date"


class PluginInfoAdmin(ReadOnlyAdmin):
    list_display = ["plugin_id", "version", "last_started", "total_runtime_hours", "last_heartbeat"]


def register_plugin(plugin_id: str, site=admin.site) -> None:
    models = models_for(plugin_id)
    site.register(models["Trade"], TradeAdmin)
    inline = type("ChainLevelInline", (ChainLevelInline,), {"model": models["ChainLevel"]})
    site.register(models["ProfitChain"], type("ProfitChainAdmin", (ProfitChainAdmin,), {"inlines": [inline]}))
    site.register(models["Signal"], SignalAdmin)
    site.register(models["DailyStats"], DailyStatsAdmin)
    site.register(models["PluginInfo"], PluginInfoAdmin)


for _plugin_id in settings.PLUGIN_IDS:
    register_plugin(_plugin_id)
