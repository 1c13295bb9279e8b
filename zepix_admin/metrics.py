"""/metrics in the Prometheus text format: what the pages show, for Grafana. Read from the
central database at each scrape (a few small, indexed queries), never from a plugin's file."""

from django.db.models import Count, Max, Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from config_app import rollout
from config_app.models import ConfigVersion
from sync_app import sync
from sync_app.models import Backup, ShippingState, SyncRun, TradeTotals
from zepix_admin.core import worker
from zepix_admin.core.alerts import open_alerts

HEALTH_LEVELS = {sync.OK: 0, sync.DEGRADED: 1, sync.FAILING: 2}


def _age(when, now) -> float:
    return (now - when).total_seconds()


class ConsoleCollector(Collector):
    def collect(self):
        now = timezone.now()
        yield from self._sync(now)
        yield from self._backups(now)
        yield from self._config()
        yield from self._worker_and_alerts(now)
        yield from self._hosts(now)

    def _sync(self, now):
        runs = CounterMetricFamily("zepix_sync_runs", "Sync runs by how they ended", labels=["status"])
        for status, count in SyncRun.objects.values_list("status").annotate(count=Count("id")).order_by():
            runs.add_metric([status], count)
        yield runs
        last = SyncRun.objects.exclude(finished_at=None).first()
        duration = GaugeMetricFamily("zepix_sync_last_run_seconds", "Duration of the newest finished sync run")
        rows = GaugeMetricFamily("zepix_sync_last_run_rows", "Trades the newest run copied", labels=["plugin"])
        seconds = GaugeMetricFamily("zepix_sync_last_run_plugin_seconds", "Its time per plugin", labels=["plugin"])
        if last:
            duration.add_metric([], last.duration_seconds or 0)
            for plugin_id, result in last.plugins.items():
                rows.add_metric([plugin_id], result.get("inserted", 0) + result.get("updated", 0))
                seconds.add_metric([plugin_id], result.get("seconds", 0) or 0)
        yield from (duration, rows, seconds)
        report = sync.health()["plugins"]
        health = GaugeMetricFamily("zepix_sync_health", "0 OK, 1 DEGRADED, 2 FAILING", labels=["plugin"])
        failures = GaugeMetricFamily(
            "zepix_sync_consecutive_failures", "Failed syncs in a row per plugin", labels=["plugin"]
        )
        success = GaugeMetricFamily(
            "zepix_sync_last_success_age_seconds", "Since the plugin last synced", labels=["plugin"]
        )
        for plugin_id, entry in report.items():
            health.add_metric([plugin_id], HEALTH_LEVELS[entry["health"]])
            failures.add_metric([plugin_id], entry["consecutive_failures"])
            if entry["last_success_at"]:
                success.add_metric([plugin_id], _age(entry["last_success_at"], now))
        trades = GaugeMetricFamily("zepix_trades", "Trades in the central copy per plugin", labels=["plugin"])
        for plugin_id, total in TradeTotals.objects.values_list("plugin_id").annotate(total=Sum("trades_count")):
            trades.add_metric([plugin_id], total)
        yield from (health, failures, success, trades)

    def _backups(self, now):
        size = GaugeMetricFamily("zepix_backup_size_bytes", "The newest verified backup's size", labels=["database"])
        age = GaugeMetricFamily("zepix_backup_age_seconds", "Since the newest verified backup", labels=["database"])
        newest: dict[str, Backup] = {}
        for backup in Backup.objects.filter(verified=True).order_by("database", "-created_at"):
            newest.setdefault(backup.database, backup)
        for database, backup in newest.items():
            size.add_metric([database], backup.size_bytes)
            age.add_metric([database], _age(backup.created_at, now))
        yield from (size, age)

    def _config(self):
        version = GaugeMetricFamily("zepix_config_version", "The active version per scope", labels=["scope"])
        subscribers = GaugeMetricFamily(
            "zepix_config_subscribers", "Subscribers per scope by state", labels=["scope", "state"]
        )
        for scope, number in ConfigVersion.objects.values_list("scope").annotate(latest=Max("version")).order_by():
            version.add_metric([scope], number)
            states: dict[str, int] = {}
            for entry in rollout.rollout(scope, number):
                if entry["connected"]:
                    states[entry["state"]] = states.get(entry["state"], 0) + 1
            for state, count in states.items():
                subscribers.add_metric([scope, state], count)
        yield from (version, subscribers)

    def _worker_and_alerts(self, now):
        beat = GaugeMetricFamily("zepix_worker_heartbeat_age_seconds", "Since the Huey consumer's last heartbeat")
        last = worker.state(now).last_beat
        if last:
            beat.add_metric([], _age(last, now))
        yield beat
        alerts = GaugeMetricFamily("zepix_open_alerts", "Open alerts by severity", labels=["severity"])
        for level, count in open_alerts().values_list("level").annotate(count=Count("id")).order_by():
            alerts.add_metric([level], count)
        yield alerts

    def _hosts(self, now):
        batch = GaugeMetricFamily(
            "zepix_host_last_batch_age_seconds", "Since a bot host last shipped", labels=["plugin", "host"]
        )
        for state in ShippingState.objects.all():
            batch.add_metric([state.plugin_id, state.host], _age(state.last_batch_at, now))
        yield batch
