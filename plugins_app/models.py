"""The plugin schema, defined once.

These models are abstract: ``plugins_app.plugin_apps`` turns them into concrete models
for each declared plugin, in an app of its own (label ``plugin_<id>``) whose rows live
only in that plugin's SQLite file. The tables themselves are the bot's schema
(``plugins_app.schema``); its CHECKs and triggers refuse a bad row whoever writes it.
"""

from django.db import models
from django.db.models.functions import Now

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
    CANCELLED = "CANCELLED"


class PluginModel(PluginModelMixin, models.Model):
    objects = PluginQuerySet.as_manager()

    class Meta:
        abstract = True


# The tables are the bot's (plugins_app.schema: the seed's DDL, then what the console adds),
# made by the plugin migrations in SQL: these models read and write them, Django manages none.


class PluginInfo(PluginModel):
    plugin_id = models.CharField(max_length=40, primary_key=True)
    version = models.CharField(max_length=40, null=True, blank=True)  # noqa: DJ001 - the bot's column (seed DDL)
    last_started = models.DateTimeField(null=True, blank=True)
    total_runtime_hours = models.FloatField(null=True, blank=True)
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    change_seq = models.BigIntegerField(default=0, editable=False)

    class Meta:
        abstract = True
        managed = False
        db_table = "plugin_info"
        verbose_name = "plugin info"
        verbose_name_plural = "plugin info"

    def __str__(self):
        return f"{self.plugin_id} {self.version or ''}".strip()


class Trade(PluginModel):
    mt5_ticket = models.BigIntegerField(unique=True, verbose_name="ticket", help_text="MT5 ticket")
    symbol = models.CharField(max_length=20)
    direction = models.CharField(max_length=4, choices=Direction.choices)
    lot_size = models.FloatField()
    entry_price = models.FloatField()
    sl_price = models.FloatField(null=True, blank=True)
    tp_price = models.FloatField(null=True, blank=True)
    entry_time = models.DateTimeField(db_default=Now())
    exit_time = models.DateTimeField(null=True, blank=True)
    exit_price = models.FloatField(null=True, blank=True)
    profit_pips = models.FloatField(null=True, blank=True)
    profit_dollars = models.FloatField(null=True, blank=True)
    commission = models.FloatField(default=0)
    swap = models.FloatField(default=0)
    status = models.CharField(max_length=8, choices=TradeStatus.choices, default=TradeStatus.OPEN)
    close_reason = models.CharField(max_length=8, choices=CloseReason.choices, null=True, blank=True)  # noqa: DJ001 - the bot's NULL (seed DDL)
    signal_data = models.JSONField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, editable=False)
    # Bumped by a database trigger on every insert and update (plugins_app.schema), so the
    # central sync finds changed rows with one indexed range scan, whoever wrote them.
    change_seq = models.BigIntegerField(default=0, editable=False)

    class Meta:
        abstract = True
        managed = False
        db_table = "trades"
        ordering = ["-entry_time"]

    def __str__(self):
        return f"#{self.mt5_ticket} {self.direction} {self.lot_size} {self.symbol}"


class ProfitChain(PluginModel):
    chain_id = models.CharField(max_length=64, primary_key=True)
    base_trade = models.ForeignKey(
        "Trade", null=True, blank=True, on_delete=models.DO_NOTHING, db_column="base_trade_id", related_name="chains"
    )
    created_at = models.DateTimeField(db_default=Now())
    status = models.CharField(max_length=10, choices=ChainStatus.choices, default=ChainStatus.ACTIVE)
    current_level = models.IntegerField(default=0)
    max_levels = models.IntegerField(null=True)
    total_profit_booked = models.FloatField(default=0)
    updated_at = models.DateTimeField(null=True, editable=False)
    change_seq = models.BigIntegerField(default=0, editable=False)

    class Meta:
        abstract = True
        managed = False
        db_table = "profit_chains"
        ordering = ["-created_at"]

    def __str__(self):
        return f"Chain {self.chain_id} L{self.current_level}/{self.max_levels}"


class ChainLevel(PluginModel):
    chain = models.ForeignKey(
        "ProfitChain", on_delete=models.DO_NOTHING, db_column="chain_id", related_name="levels", null=True
    )
    level_number = models.IntegerField(null=True)
    target_pips = models.FloatField(null=True)
    volume_to_close = models.FloatField(null=True)
    executed_at = models.DateTimeField(null=True, blank=True)
    profit_pips = models.FloatField(null=True, blank=True)
    profit_dollars = models.FloatField(null=True, blank=True)
    change_seq = models.BigIntegerField(default=0, editable=False)

    class Meta:
        abstract = True
        managed = False
        db_table = "chain_levels"
        ordering = ["chain", "level_number"]

    def __str__(self):
        return f"Level {self.level_number}"


class DailyStats(PluginModel):
    date = models.DateField(primary_key=True)
    total_trades = models.IntegerField(default=0)
    winning_trades = models.IntegerField(default=0)
    losing_trades = models.IntegerField(default=0)
    breakeven_trades = models.IntegerField(default=0)
    total_profit_pips = models.FloatField(default=0)
    total_profit_dollars = models.FloatField(default=0)
    max_drawdown = models.FloatField(default=0)
    largest_win = models.FloatField(default=0)
    largest_loss = models.FloatField(default=0)
    change_seq = models.BigIntegerField(default=0, editable=False)

    class Meta:
        abstract = True
        managed = False
        db_table = "daily_stats"
        ordering = ["-date"]
        verbose_name_plural = "daily stats"

    def __str__(self):
        return str(self.date)


class Signal(PluginModel):
    received_at = models.DateTimeField()
    symbol = models.CharField(max_length=20)
    signal_type = models.CharField(max_length=30)
    timeframe = models.CharField(max_length=10, blank=True, default="")
    payload = models.JSONField(default=dict, blank=True)
    action = models.CharField(max_length=20, blank=True, default="", help_text="What the plugin did with it")
    trade_ticket = models.BigIntegerField(null=True, blank=True)

    class Meta:
        abstract = True
        managed = False
        db_table = "signals"
        ordering = ["-received_at"]

    def __str__(self):
        return f"{self.signal_type} {self.symbol} @ {self.received_at:%Y-%m-%d %H:%M}"


PLUGIN_SCHEMA = (PluginInfo, ProfitChain, Trade, ChainLevel, DailyStats, Signal)
