"""Which backups to keep: grandfather-father-son by the calendar, per database.

Kept: every backup of the last 24 hours; the newest backup of each of the last
``daily`` days, ``weekly`` ISO weeks and ``monthly`` months (today, this week and this
month included), the newest verified one where there is one; and always the newest verified
backup, however old.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from django.utils import timezone

from config_app.service import global_settings
from sync_app.models import Backup
from zepix_admin.core import home


@dataclass(frozen=True)
class Policy:
    daily: int = 7
    weekly: int = 4
    monthly: int = 12


def configured_policy() -> Policy:
    chosen = global_settings("backup")
    return Policy(daily=chosen["keep_daily"], weekly=chosen["keep_weekly"], monthly=chosen["keep_monthly"])


def _month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def backups_to_keep(backups: list[tuple[int, datetime, bool]], now: datetime, policy: Policy) -> set[int]:
    """backups: (id, created_at, verified) of one database. Returns the ids to keep."""
    today = now.date()
    this_week = today - timedelta(days=today.weekday())
    buckets = {
        "day": lambda day: (today - day).days < policy.daily,
        "week": lambda day: (this_week - (day - timedelta(days=day.weekday()))).days // 7 < policy.weekly,
        "month": lambda day: _month_index(today) - _month_index(day) < policy.monthly,
    }
    keys = {
        "day": lambda day: day,
        "week": lambda day: day.isocalendar()[:2],
        "month": lambda day: (day.year, day.month),
    }
    keep: set[int] = set()
    seen: dict[str, set] = {kind: set() for kind in buckets}
    # Sound ones first, each kind newest first: a day's (week's, month's) backup is its newest
    # sound one (a newer one found damaged on disk held the day, and the day's sound backup was
    # deleted); only a period with no sound backup keeps its newest damaged one.
    sound_first = sorted(backups, key=lambda backup: (backup[2], backup[1]), reverse=True)
    for backup_id, created_at, _ in sound_first:
        day = created_at.date()
        if now - created_at < timedelta(hours=24):
            keep.add(backup_id)
        for kind, in_window in buckets.items():
            key = keys[kind](day)
            if in_window(day) and key not in seen[kind]:
                seen[kind].add(key)
                keep.add(backup_id)
    if sound_first and sound_first[0][2]:  # the newest verified backup, however old
        keep.add(sound_first[0][0])
    return keep


def apply_retention(*, now: datetime | None = None, policy: Policy | None = None) -> list[Backup]:
    """Delete the backups (files and records) the policy does not keep; returns them."""
    home.check()
    now, policy = now or timezone.now(), policy or configured_policy()
    deleted = []
    for database in Backup.objects.values_list("database", flat=True).distinct():
        backups = list(Backup.objects.filter(database=database))
        keep = backups_to_keep([(b.pk, b.created_at, b.verified) for b in backups], now, policy)
        for backup in backups:
            if backup.pk not in keep:
                Path(backup.path).unlink(missing_ok=True)
                Backup.objects.filter(pk=backup.pk).delete()
                deleted.append(backup)
    return deleted
