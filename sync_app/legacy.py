"""Importing the bot's old single database (zepix_bot.db) into a plugin's database.

The old ``trades`` table has the plugin trade columns (its ticket as ``mt5_ticket``, the
seed's name, or ``ticket``) plus ``comment`` and, once a migration ran, ``migrated_to_plugin``
(added when missing, except on a dry run, which changes nothing). Matching rows
(``comment LIKE pattern``) not yet migrated are copied through the plugin's own write API,
then marked migrated in the source; nothing is deleted. A ticket already in the plugin is
not copied again, so a second run, or a run after a crash between the two steps, copies
nothing twice.
"""

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from plugins_app import plugins
from plugins_app.sqlite import immediate_transaction
from plugins_app.store import TRADE_COLUMNS, PluginStore
from zepix_admin.core.errors import Invalid

# The trade columns the old table must have, beside its ticket (either name).
LEGACY_COLUMNS = [column for column in TRADE_COLUMNS if column != "mt5_ticket"]


class LegacyError(Invalid):
    pass


@dataclass
class LegacyReport:
    matched: int = 0
    copied: int = 0
    already_in_plugin: int = 0
    marked: int = 0


def migrate_legacy(
    source: Path, plugin_id: str, pattern: str, *, since: str | None = None, dry_run: bool = False, on_rows=None
) -> LegacyReport:
    """``on_rows(n)`` hears of the trades copied as they are saved."""
    plugins.check_declared(plugin_id)
    if not Path(source).is_file():
        raise LegacyError(f"No legacy database at {source}.")
    if since is not None:
        try:
            since = date.fromisoformat(since).isoformat()
        except ValueError:
            raise LegacyError(f"--since must be a date like 2026-01-31, not {since!r}.") from None
    # A plain connection: the old database keeps its own journal mode.
    with closing(sqlite3.connect(source, isolation_level=None, timeout=20)) as legacy:
        try:
            columns = {row[1] for row in legacy.execute("PRAGMA table_info(trades)")}
        except sqlite3.DatabaseError as error:
            raise LegacyError(f"{source} is not a readable SQLite database: {error}") from None
        ticket = next((name for name in ("mt5_ticket", "ticket") if name in columns), None)
        missing = ({*LEGACY_COLUMNS, "comment"} - columns) | (set() if ticket else {"mt5_ticket"})
        if missing:
            raise LegacyError(f"{source}: its trades table lacks {', '.join(sorted(missing))}.")
        marked_before = "migrated_to_plugin" in columns
        if not marked_before and not dry_run:
            legacy.execute("ALTER TABLE trades ADD COLUMN migrated_to_plugin TEXT")
        where = "comment LIKE ?"
        if marked_before:
            where += " AND (migrated_to_plugin IS NULL OR migrated_to_plugin = '')"
        params = [pattern]
        if since:
            where, params = where + " AND entry_time >= ?", [*params, since]
        legacy.row_factory = sqlite3.Row
        selected = ", ".join([f"{ticket} AS mt5_ticket", *LEGACY_COLUMNS])
        rows = [dict(row) for row in legacy.execute(f"SELECT {selected} FROM trades WHERE {where}", params)]
        report = LegacyReport(matched=len(rows))
        with PluginStore(plugins.database_path(plugin_id)) as store:
            present = {number for (number,) in store.connection.execute("SELECT mt5_ticket FROM trades")}
            new = [row for row in rows if row["mt5_ticket"] not in present]
            report.copied, report.already_in_plugin = len(new), len(rows) - len(new)
            if dry_run:
                return report
            for row in new:
                row["signal_data"] = _json_or_empty(row["signal_data"])
            if new:
                try:
                    store.save_trades(new, on_rows)
                except sqlite3.IntegrityError as error:
                    raise LegacyError(
                        f"Nothing was copied: the plugin's database refuses one of the trades ({error}). "
                        "Fix or exclude it (--match, --since) and run again."
                    ) from None
        with immediate_transaction(legacy) as cursor:
            marked = cursor.executemany(
                f"UPDATE trades SET migrated_to_plugin = ? WHERE {ticket} = ?",
                [(plugin_id, row["mt5_ticket"]) for row in rows],
            ).rowcount
        report.marked = marked
    return report


def _json_or_empty(value):
    if isinstance(value, dict):
        return value
    try:
        return json.loads(value) if value else {}
    except (TypeError, ValueError):
        return {"legacy": value}
