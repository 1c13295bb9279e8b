"""The plugin schema, defined once.

These models are abstract: ``plugins_app.plugin_apps`` turns them into concrete models
for each declared plugin, in an app of its own (label ``plugin_<id>``) whose rows live
only in that plugin's SQLite file. The allowed values are CHECK constraints, so a bad
row is refused by the database whoever writes it (the admin, the bot, a script).
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from plugins_app.router import PluginModelMixin, PluginQuerySet


class Direction(models.TextChoices):
    BUY = "BUY"
    SELL = "SELL"


class TradeStatus(models.TextChoices):
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    PARTIAL = "PARTIAL"


class CloseReason(models.TextChoices):
    TP = "TP"
    SL = "SL"
    MANUAL = "MANUAL"
    REVERSAL = "REVERSAL"


class ChainStatus(models.TextChoices):
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    STOPPED = "STOPPED"


class PluginModel(PluginModelMixin, models.Model):
    objects = PluginQuerySet.as_manager()

    class Meta:
        abstract = True


class PluginInfo(PluginModel):
    plugin_id = models.CharField(max_length=40, unique=True)
    version = models.CharField(max_length=40, default="")
    last_started = models.DateTimeField(null=True, blank=True)
    runtime_hours = models.FloatField(default=0)

    class Meta:
        abstract = True
        db_table = "plugin_info"
        verbose_name = "plugin info"
        verbose_name_plural = "plugin info"

    def __str__(self):
        return f"{self.plugin_id} {self.version}"


class ProfitChain(PluginModel):
    symbol = models.CharField(max_length=20)
    direction = models.CharField(max_length=4, choices=Direction.choices)
    status = models.CharField(max_length=10, choices=ChainStatus.choices, default=ChainStatus.ACTIVE)
    base_lot = models.DecimalField(max_digits=10, decimal_places=2)
    current_level = models.PositiveSmallIntegerField(default=0)
    max_level = models.PositiveSmallIntegerField(default=5)
    total_profit = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        db_table = "profit_chains"
        constraints = [
            models.CheckConstraint(condition=Q(direction__in=Direction.values), name="profit_chains_direction"),
            models.CheckConstraint(condition=Q(status__in=ChainStatus.values), name="profit_chains_status"),
            models.CheckConstraint(condition=Q(base_lot__gt=0), name="profit_chains_base_lot_positive"),
        ]

    def __str__(self):
        return f"Chain {self.pk} {self.symbol} {self.direction} L{self.current_level}/{self.max_level}"


class Trade(PluginModel):
    ticket = models.BigIntegerField(unique=True, help_text="MT5 ticket")
    symbol = models.CharField(max_length=20)
    direction = models.CharField(max_length=4, choices=Direction.choices)
    lot_size = models.DecimalField(max_digits=10, decimal_places=2)
    entry_price = models.DecimalField(max_digits=18, decimal_places=5)
    sl_price = models.DecimalField(max_digits=18, decimal_places=5, null=True, blank=True)
    tp_price = models.DecimalField(max_digits=18, decimal_places=5, null=True, blank=True)
    entry_time = models.DateTimeField(db_index=True)
    exit_time = models.DateTimeField(null=True, blank=True, db_index=True)
    exit_price = models.DecimalField(max_digits=18, decimal_places=5, null=True, blank=True)
    profit_pips = models.DecimalField(max_digits=12, decimal_places=1, null=True, blank=True)
    profit_dollars = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    commission = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    swap = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    status = models.CharField(max_length=8, choices=TradeStatus.choices, default=TradeStatus.OPEN)
    close_reason = models.CharField(max_length=8, choices=CloseReason.choices, null=True, blank=True)  # noqa: DJ001 - the bot's NULL (seed DDL)
    signal_data = models.JSONField(default=dict, blank=True)
    chain = models.ForeignKey("ProfitChain", null=True, blank=True, on_delete=models.SET_NULL, related_name="trades")
    updated_at = models.DateTimeField(auto_now=True)
    # Bumped by a database trigger on every insert and update (see the plugin migrations),
    # so the central sync finds changed rows with one indexed range scan, whoever wrote them.
    change_seq = models.BigIntegerField(db_default=0, db_index=True, editable=False)

    class Meta:
        abstract = True
        db_table = "trades"
        ordering = ["-entry_time"]
        # The admin filters on status or symbol and lists newest first: each index serves
        # the filter and the order together (a symbol-only index sorts a fifth of the table).
        indexes = [
            models.Index(fields=["status", "entry_time"], name="trades_status_entry_idx"),
            models.Index(fields=["symbol", "entry_time"], name="trades_symbol_entry_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(direction__in=Direction.values), name="trades_direction"),
            models.CheckConstraint(condition=Q(status__in=TradeStatus.values), name="trades_status"),
            models.CheckConstraint(
                condition=Q(close_reason__isnull=True) | Q(close_reason__in=CloseReason.values),
                name="trades_close_reason",
            ),
            models.CheckConstraint(condition=Q(lot_size__gt=0), name="trades_lot_size_positive"),
            models.CheckConstraint(condition=Q(entry_price__gt=0), name="trades_entry_price_positive"),
            models.CheckConstraint(
                condition=~Q(status=TradeStatus.CLOSED) | Q(exit_time__isnull=False, exit_price__isnull=False),
                name="trades_closed_has_exit",
            ),
        ]

    def __str__(self):
        return f"#{self.ticket} {self.direction} {self.lot_size} {self.symbol}"


class ChainLevel(PluginModel):
    chain = models.ForeignKey("ProfitChain", on_delete=models.CASCADE, related_name="levels")
    level = models.PositiveSmallIntegerField()
    lot_size = models.DecimalField(max_digits=10, decimal_places=2)
    target_pips = models.DecimalField(max_digits=10, decimal_places=1)
    trade_ticket = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=TradeStatus.choices, default=TradeStatus.OPEN)
    profit = models.DecimalField(max_digits=14, decimal_places=2, default=0)

    class Meta:
        abstract = True
        db_table = "chain_levels"
        ordering = ["chain", "level"]
        constraints = [
            models.UniqueConstraint(fields=["chain", "level"], name="chain_levels_unique_level"),
            models.CheckConstraint(condition=Q(status__in=TradeStatus.values), name="chain_levels_status"),
            models.CheckConstraint(condition=Q(lot_size__gt=0), name="chain_levels_lot_size_positive"),
        ]

    def __str__(self):
        return f"Level {self.level}"


class DailyStats(PluginModel):
    date = models.DateField(unique=True)
    total_trades = models.PositiveIntegerField(default=0)
    wins = models.PositiveIntegerField(default=0)
    losses = models.PositiveIntegerField(default=0)
    breakeven = models.PositiveIntegerField(default=0)
    total_profit = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    max_drawdown = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    largest_win = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    largest_loss = models.DecimalField(max_digits=14, decimal_places=2, default=0)

    class Meta:
        abstract = True
        db_table = "daily_stats"
        ordering = ["-date"]
        verbose_name_plural = "daily stats"
        constraints = [
            models.CheckConstraint(
                condition=Q(total_trades__gte=0) & Q(wins__gte=0) & Q(losses__gte=0) & Q(breakeven__gte=0),
                name="daily_stats_counts_not_negative",
            ),
        ]

    def __str__(self):
        return str(self.date)


class Signal(PluginModel):
    received_at = models.DateTimeField(db_index=True)
    symbol = models.CharField(max_length=20)
    signal_type = models.CharField(max_length=30)
    timeframe = models.CharField(max_length=10, blank=True, default="")
    payload = models.JSONField(default=dict, blank=True)
    action = models.CharField(max_length=20, blank=True, default="", help_text="What the plugin did with it")
    trade_ticket = models.BigIntegerField(null=True, blank=True)

    class Meta:
        abstract = True
        db_table = "signals"
        ordering = ["-received_at"]

    def __str__(self):
        return f"{self.signal_type} {self.symbol} @ {self.received_at:%Y-%m-%d %H:%M}"


PLUGIN_SCHEMA = (PluginInfo, ProfitChain, Trade, ChainLevel, DailyStats, Signal)
