"""What the sync and backup jobs keep in the central database."""

from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone

from zepix_admin.core import worker


class AggregatedTrade(models.Model):
    """One row per plugin and ticket: a copy of the plugin's trade, kept up to date by the sync."""

    plugin_id = models.CharField(max_length=40)
    mt5_ticket = models.BigIntegerField()
    trade_id = models.BigIntegerField(null=True, help_text="The trade's id in its plugin's database")
    # Text the bot writes without a length limit is kept without one (PostgreSQL enforces one).
    symbol = models.TextField()
    direction = models.CharField(max_length=4)
    lot_size = models.DecimalField(max_digits=10, decimal_places=2)
    entry_price = models.DecimalField(max_digits=18, decimal_places=5)
    sl_price = models.DecimalField(max_digits=18, decimal_places=5, null=True)
    tp_price = models.DecimalField(max_digits=18, decimal_places=5, null=True)
    entry_time = models.DateTimeField()
    exit_time = models.DateTimeField(null=True)
    exit_price = models.DecimalField(max_digits=18, decimal_places=5, null=True)
    profit_pips = models.DecimalField(max_digits=12, decimal_places=1, null=True)
    profit_dollars = models.DecimalField(max_digits=14, decimal_places=2, null=True)
    commission = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    swap = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    status = models.CharField(max_length=8)
    close_reason = models.TextField(null=True)  # noqa: DJ001 - copied as the bot wrote it
    change_seq = models.BigIntegerField()
    synced_at = models.DateTimeField()

    class Meta:
        db_table = "aggregated_trades"
        ordering = ["-entry_time"]
        constraints = [models.UniqueConstraint(fields=["plugin_id", "mt5_ticket"], name="aggregated_trades_unique")]
        indexes = [
            # metrics: open trades; trade search: each filter with newest first
            models.Index(fields=["status", "entry_time"], name="agg_status_entry_idx"),
            models.Index(fields=["entry_time"], name="agg_entry_idx"),
            models.Index(fields=["symbol", "entry_time"], name="agg_symbol_entry_idx"),
            models.Index(fields=["plugin_id", "entry_time"], name="agg_plugin_entry_idx"),
            # the trade search's other sorts, keyset-paged (the id is the tie-breaker)
            models.Index(fields=["mt5_ticket", "id"], name="agg_ticket_idx"),
            models.Index(Coalesce("profit_dollars", 0), "id", name="agg_profit_idx"),
        ]

    def __str__(self):
        return f"{self.plugin_id} #{self.mt5_ticket}"


class CrossPluginStats(models.Model):
    """The seed's cross_plugin_stats (date, plugin_id, trades_count, profit), with wins and losses."""

    date = models.DateField()
    plugin_id = models.CharField(max_length=40)
    trades_count = models.PositiveIntegerField(default=0)
    wins = models.PositiveIntegerField(default=0)
    losses = models.PositiveIntegerField(default=0)
    profit = models.DecimalField(max_digits=14, decimal_places=2, default=0)

    class Meta:
        db_table = "cross_plugin_stats"
        ordering = ["-date", "plugin_id"]
        constraints = [models.UniqueConstraint(fields=["plugin_id", "date"], name="cross_plugin_stats_unique")]
        indexes = [models.Index(fields=["date"], name="cps_date_idx")]

    def __str__(self):
        return f"{self.date} {self.plugin_id}: {self.trades_count} trades, {self.profit}"


class TradeTotals(models.Model):
    """How many trades and how much profit, per plugin, entry day (UTC), symbol, direction and status:
    kept by the sync with the same deltas as cross_plugin_stats, so the trade search's totals of any
    filtered set are an exact sum over a few thousand rows instead of a scan of every trade."""

    plugin_id = models.CharField(max_length=40)
    day = models.DateField(help_text="Entry day (UTC)")
    symbol = models.TextField()
    direction = models.CharField(max_length=4)
    status = models.CharField(max_length=8)
    trades_count = models.PositiveIntegerField(default=0)
    profit = models.DecimalField(max_digits=16, decimal_places=2, default=0)

    class Meta:
        db_table = "trade_totals"
        verbose_name_plural = "trade totals"
        constraints = [
            models.UniqueConstraint(
                fields=["plugin_id", "day", "symbol", "direction", "status"], name="trade_totals_unique"
            )
        ]
        # the sync's drop of emptied groups: 1.4 ms a plugin scanning its rows, 0.05 ms with this
        indexes = [
            models.Index(fields=["plugin_id"], condition=models.Q(trades_count=0), name="trade_totals_empty_idx")
        ]

    def __str__(self):
        return f"{self.day} {self.plugin_id} {self.symbol} {self.direction} {self.status}: {self.trades_count}"


class SystemMetrics(models.Model):
    """The seed's system_metrics (timestamp, total_open_trades, total_daily_profit, active_plugins as a
    comma-separated list of plugin ids), with the total number of trades."""

    timestamp = models.DateTimeField(db_index=True)
    total_open_trades = models.PositiveIntegerField()
    total_daily_profit = models.DecimalField(max_digits=14, decimal_places=2)
    active_plugins = models.TextField(blank=True, default="")
    total_trades = models.PositiveIntegerField()

    class Meta:
        db_table = "system_metrics"
        ordering = ["-timestamp"]
        verbose_name_plural = "system metrics"

    def __str__(self):
        return f"{self.timestamp:%Y-%m-%d %H:%M}: {self.total_open_trades} open, {self.total_daily_profit} today"

    @property
    def active_plugin_ids(self) -> list[str]:
        return [plugin_id for plugin_id in self.active_plugins.split(",") if plugin_id]


# The rest of each plugin's data, copied like its trades: incremental by the plugin tables'
# change numbers, keyed by plugin and the row's own key, in the same transaction as the trades.


class AggregatedChain(models.Model):
    plugin_id = models.CharField(max_length=40)
    chain_id = models.TextField()
    base_trade_id = models.BigIntegerField(null=True)
    created_at = models.DateTimeField(null=True)
    status = models.CharField(max_length=10, null=True)  # noqa: DJ001 - copied as the bot wrote it
    current_level = models.IntegerField(null=True)
    max_levels = models.IntegerField(null=True)
    total_profit_booked = models.FloatField(null=True)
    updated_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "aggregated_chains"
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["plugin_id", "chain_id"], name="aggregated_chains_unique")]
        indexes = [
            models.Index(fields=["status", "plugin_id"], name="agg_chain_status_idx"),
            models.Index(fields=["plugin_id", "base_trade_id"], name="agg_chain_base_idx"),
        ]

    def __str__(self):
        return f"{self.plugin_id} chain {self.chain_id}"


class AggregatedChainLevel(models.Model):
    plugin_id = models.CharField(max_length=40)
    level_id = models.BigIntegerField(help_text="The level's id in its plugin's database")
    chain_id = models.TextField(null=True)  # noqa: DJ001 - copied as the bot wrote it
    level_number = models.IntegerField(null=True)
    target_pips = models.FloatField(null=True)
    volume_to_close = models.FloatField(null=True)
    executed_at = models.DateTimeField(null=True)
    profit_pips = models.FloatField(null=True)
    profit_dollars = models.FloatField(null=True)

    class Meta:
        db_table = "aggregated_chain_levels"
        ordering = ["plugin_id", "chain_id", "level_number"]
        constraints = [models.UniqueConstraint(fields=["plugin_id", "level_id"], name="aggregated_levels_unique")]
        indexes = [models.Index(fields=["plugin_id", "chain_id"], name="agg_level_chain_idx")]

    def __str__(self):
        return f"{self.plugin_id} chain {self.chain_id} level {self.level_number}"


class AggregatedDailyStats(models.Model):
    plugin_id = models.CharField(max_length=40)
    date = models.DateField()
    total_trades = models.IntegerField(null=True)
    winning_trades = models.IntegerField(null=True)
    losing_trades = models.IntegerField(null=True)
    breakeven_trades = models.IntegerField(null=True)
    total_profit_pips = models.FloatField(null=True)
    total_profit_dollars = models.FloatField(null=True)
    max_drawdown = models.FloatField(null=True)
    largest_win = models.FloatField(null=True)
    largest_loss = models.FloatField(null=True)

    class Meta:
        db_table = "aggregated_daily_stats"
        ordering = ["-date", "plugin_id"]
        verbose_name_plural = "aggregated daily stats"
        constraints = [models.UniqueConstraint(fields=["plugin_id", "date"], name="aggregated_daily_unique")]

    def __str__(self):
        return f"{self.plugin_id} {self.date}"


class AggregatedPluginInfo(models.Model):
    plugin_id = models.CharField(max_length=40, unique=True)
    version = models.TextField(null=True)  # noqa: DJ001 - copied as the bot wrote it
    last_started = models.DateTimeField(null=True)
    total_runtime_hours = models.FloatField(null=True)
    last_heartbeat = models.DateTimeField(null=True)

    class Meta:
        db_table = "aggregated_plugin_info"
        verbose_name = "aggregated plugin info"
        verbose_name_plural = "aggregated plugin info"

    def __str__(self):
        return f"{self.plugin_id} {self.version or ''}".strip()


class PluginSyncState(models.Model):
    """Where the sync of one plugin stands: its high-water mark and its failures."""

    plugin_id = models.CharField(max_length=40, unique=True)
    high_water_mark = models.BigIntegerField(default=0, help_text="Largest change_seq copied")
    last_ticket = models.BigIntegerField(null=True, help_text="The trade that carried the high-water mark")
    table_marks = models.JSONField(
        default=dict, help_text="Largest change_seq copied of each other table: {table: change_seq}"
    )
    incarnation = models.CharField(max_length=64, blank=True, default="", help_text="Identity of the file last synced")
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True)
    last_success_at = models.DateTimeField(null=True)
    last_error = models.TextField(blank=True, default="")

    def __str__(self):
        return f"{self.plugin_id} @ {self.high_water_mark}"


class JobRun(models.Model):
    """A sync or backup run, saved as it goes, with the process running it (``ran_by``,
    ``worker.process_stamp``): a run whose process has ended, a consumer killed in the middle,
    is no longer shown running (it held the page's button until the next run marked it aborted,
    an hour later for a backup)."""

    RUNNING, ABORTED = "RUNNING", "ABORTED"

    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True)
    ran_by = models.TextField(blank=True, default="", help_text="The process running it: host and pid")
    status = models.CharField(max_length=10, default=RUNNING)  # each kind of run gives its own choices

    class Meta:
        abstract = True
        ordering = ["-started_at", "-id"]

    @classmethod
    def begin(cls, **fields):
        """A new run of this process, once the runs a worker that died left RUNNING are marked
        aborted (a run begins under its job's lock: none other runs)."""
        cls._default_manager.filter(status=cls.RUNNING).update(status=cls.ABORTED, finished_at=timezone.now())
        return cls._default_manager.create(started_at=timezone.now(), ran_by=worker.process_stamp(), **fields)

    @property
    def duration_seconds(self) -> float | None:
        return (self.finished_at - self.started_at).total_seconds() if self.finished_at else None

    @property
    def running_now(self) -> bool:
        return self.status == self.RUNNING and worker.still_running(self.ran_by)

    @property
    def status_now(self) -> str:
        return self.ABORTED if self.status == self.RUNNING and not self.running_now else self.status


class SyncRun(JobRun):
    class Status(models.TextChoices):
        RUNNING = "RUNNING"
        OK = "OK"
        PARTIAL = "PARTIAL", "Some plugins failed"
        FAILED = "FAILED"
        ABORTED = "ABORTED", "Stopped before it finished"

    trigger = models.CharField(max_length=20, help_text="schedule, manual or command")
    actor = models.CharField(max_length=150, default="system")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    plugins = models.JSONField(default=dict, help_text="{plugin_id: {inserted, updated, retries, error}}")
    error = models.TextField(blank=True, default="")

    class Meta(JobRun.Meta):
        pass

    def __str__(self):
        return f"Sync {self.pk} {self.status}"


class Backup(models.Model):
    database = models.CharField(max_length=60, help_text="Database alias: default or plugin_<id>")
    created_at = models.DateTimeField(db_index=True)
    path = models.CharField(max_length=500)
    size_bytes = models.BigIntegerField(default=0, help_text="Compressed size")
    database_bytes = models.BigIntegerField(default=0, help_text="Size of the consistent copy")
    sha256 = models.CharField(max_length=64)
    row_counts = models.JSONField(default=dict)
    verified = models.BooleanField(default=False)
    verified_at = models.DateTimeField(null=True)
    verify_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        # overview, health and retention: the newest backups of one database
        indexes = [models.Index(fields=["database", "-created_at"], name="backup_database_created_idx")]

    def __str__(self):
        return f"{self.database} @ {self.created_at:%Y-%m-%d %H:%M}"

    @property
    def recorded_counts(self) -> dict | None:
        """The row counts taken when it was made; None for a file recorded again after a restore
        of the central database (backup.reconcile_records: its counts are unknown)."""
        return self.row_counts or None


class ArchivedPlugin(models.Model):
    plugin_id = models.CharField(max_length=40)
    archived_at = models.DateTimeField()
    path = models.CharField(max_length=500, blank=True, help_text="Empty when its database was already missing")
    sha256 = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField()
    purged_at = models.DateTimeField(null=True)
    restored_at = models.DateTimeField(
        null=True, help_text="Brought back by archive_plugin --undo (the archive is kept)"
    )

    class Meta:
        ordering = ["-archived_at"]

    def __str__(self):
        return f"{self.plugin_id} archived {self.archived_at:%Y-%m-%d %H:%M}"


class JobState(models.Model):
    """When each scheduled job last started (the scheduler tick reads it to find what is due), and
    each job's marker while it is queued or running, a scheduled one's or one asked for by hand
    (``task_id``: its task, then "running <process>"; sync_app.tasks.in_flight reads it)."""

    name = models.CharField(max_length=60, unique=True)  # a job's, or a marker's: "manual_sync:<plugin id>"
    last_started_at = models.DateTimeField()
    task_id = models.TextField(blank=True, default="", help_text="A marker's task, or the process running it")
    relaunched = models.BooleanField(
        default=False,
        help_text="A scheduled job started again once its task was lost: lost again, it waits its interval",
    )

    def __str__(self):
        return f"{self.name} last started {self.last_started_at:%Y-%m-%d %H:%M}"


class BackupRun(JobRun):
    """One backup job over several databases, saved as it goes so that the backups page shows it
    live: each database waiting, backing up, done (seconds, size) or failed."""

    class Status(models.TextChoices):
        RUNNING = "RUNNING"
        OK = "OK"
        PARTIAL = "PARTIAL", "Some databases failed"
        FAILED = "FAILED"
        ABORTED = "ABORTED", "Stopped before it finished"

    trigger = models.CharField(max_length=20, help_text="schedule or manual")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    databases = models.JSONField(default=dict, help_text="{alias: {state, seconds, size_bytes, error}}")

    class Meta(JobRun.Meta):
        pass

    def __str__(self):
        return f"Backup run {self.pk} {self.status}"


class ShippingState(models.Model):
    """A plugin whose bot runs on another host: when its changes last arrived (ship_changes)."""

    plugin_id = models.CharField(max_length=40, unique=True)
    host = models.CharField(max_length=60, blank=True, default="", help_text="The shipping token's name")
    every_seconds = models.FloatField(
        null=True,
        help_text="How often the host says it ships (ship_changes --every); none for a host that ships now and then",
    )
    last_batch_at = models.DateTimeField()
    batches = models.PositiveBigIntegerField(default=0)
    rows = models.PositiveBigIntegerField(default=0)

    def __str__(self):
        return f"{self.plugin_id} shipped by {self.host or '?'} at {self.last_batch_at:%Y-%m-%d %H:%M:%S}"
