"""Server-rendered SVG charts with axes (no JavaScript, nothing from a CDN).

Each chart is a dict the partial templates/partials/chart.html draws: axis ticks with labels,
lines or bars whose <title> gives the value on hover, and the same figures as a table for
screen readers. Rendering one costs well under a millisecond: the overview keeps its speed.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from zepix_admin.core.templatetags.zepix_format import count, money

LEFT, RIGHT, TOP, BOTTOM = 70, 10, 10, 24  # room for the axes' labels
TICKS = 4


def seconds(value: float) -> str:
    return f"{value:,.1f} s"


def file_size(value: float) -> str:
    return str(filesizeformat(value))


def lots(value: float) -> str:
    return f"{'−' if value < 0 else ''}{abs(value):,.2f} lots"


FORMATS: dict[str, Callable] = {"money": money, "count": count, "seconds": seconds, "bytes": file_size, "lots": lots}


@dataclass
class Series:
    name: str
    points: list[tuple[date | datetime, float]] = field(default_factory=list)


def _moment(when: date | datetime) -> float:
    if not isinstance(when, datetime):
        when = timezone.make_aware(datetime.combine(when, time.min))
    return when.timestamp()


def _when_label(when: date | datetime, span_seconds: float) -> str:
    if isinstance(when, datetime) and span_seconds < 2 * 86400:
        return timezone.localtime(when).strftime("%d %b %H:%M")
    return when.strftime("%d %b %Y") if span_seconds > 200 * 86400 else when.strftime("%d %b")


def time_chart(
    title: str, series: list[Series], *, unit: str, kind: str = "line", width: int = 640, height: int = 220
) -> dict:
    """A chart of values over time: one or more lines, or the bars of a single series."""
    chart: dict[str, Any] = {"title": title, "width": width, "height": height, "kind": kind, "series": [], "bars": []}
    points = [point for one in series for point in one.points]
    if not points:
        return {**chart, "empty": True}
    shown = FORMATS[unit]
    moments = [_moment(when) for when, _ in points]
    first, last = min(moments), max(moments)
    if kind == "bars":  # a bar is centred on its time: room for half a bar at each end
        half = (last - first) / max(len(points) - 1, 1) / 2 or 43200
        first, last = first - half, last + half
    span = (last - first) or 1.0
    low, high = min(0.0, *(value for _, value in points)), max(0.0, *(value for _, value in points))
    if high == low:
        high = low + 1
    plot_width, plot_height = width - LEFT - RIGHT, height - TOP - BOTTOM

    def x(when) -> float:
        return round(LEFT + (_moment(when) - first) / span * plot_width, 1)

    def y(value: float) -> float:
        return round(TOP + (high - value) / (high - low) * plot_height, 1)

    chart["zero"] = y(0.0)
    chart["y_ticks"] = [
        {"y": y(low + (high - low) * n / TICKS), "label": shown(low + (high - low) * n / TICKS)}
        for n in range(TICKS + 1)
    ]
    ordered = sorted({when for when, _ in points}, key=_moment)
    step = max(1, (len(ordered) - 1) // TICKS) if len(ordered) > 1 else 1
    chart["x_ticks"] = [{"x": x(when), "label": _when_label(when, span)} for when in ordered[::step]]
    if kind == "bars":
        slot = plot_width / max(len(points), 1)
        for when, value in series[0].points:
            chart["bars"].append(
                {
                    "x": round(x(when) - slot * 0.4, 1),
                    "y": min(y(value), chart["zero"]),
                    "width": round(max(slot * 0.8, 1), 1),
                    "height": round(max(abs(y(value) - chart["zero"]), 0.5), 1),
                    "negative": value < 0,
                    "title": f"{_when_label(when, 0)}: {shown(value)}",
                }
            )
    else:
        for index, one in enumerate(series):
            chart["series"].append(
                {
                    "name": one.name,
                    "index": index % 6,
                    "points": " ".join(f"{x(when)},{y(value)}" for when, value in one.points),
                    "dots": [
                        {"x": x(when), "y": y(value), "title": f"{one.name}, {_when_label(when, 0)}: {shown(value)}"}
                        for when, value in one.points[-200:]  # hover on the newest; the table has them all
                    ],
                }
            )
    chart["table"] = _table(series, shown)
    return chart


def _table(series: list[Series], shown: Callable) -> dict:
    moments = sorted({when for one in series for when, _ in one.points}, key=_moment)
    values = [dict(one.points) for one in series]
    return {
        "columns": [one.name for one in series],
        "rows": [
            (_when_label(when, 0), [shown(column[when]) if when in column else "" for column in values])
            for when in moments
        ],
    }


def category_chart(title: str, values: list[tuple[str, float]], *, unit: str, width: int = 640) -> dict:
    """Horizontal bars, one per category (a symbol), around a zero line."""
    shown = FORMATS[unit]
    row = 26
    height = TOP + BOTTOM + row * max(len(values), 1)
    chart: dict[str, Any] = {"title": title, "width": width, "height": height, "kind": "categories", "bars": []}
    if not values:
        return {**chart, "empty": True}
    low, high = min(0.0, *(v for _, v in values)), max(0.0, *(v for _, v in values))
    if high == low:
        high = low + 1
    plot_width = width - LEFT - RIGHT

    def x(value: float) -> float:
        return round(LEFT + (value - low) / (high - low) * plot_width, 1)

    chart["zero"] = x(0.0)
    chart["x_ticks"] = [
        {"x": x(low + (high - low) * n / TICKS), "label": shown(low + (high - low) * n / TICKS)}
        for n in range(TICKS + 1)
    ]
    for index, (label, value) in enumerate(values):
        chart["bars"].append(
            {
                "label": label,
                "label_y": TOP + index * row + row * 0.65,
                "x": min(x(value), chart["zero"]),
                "y": TOP + index * row + 4,
                "width": round(max(abs(x(value) - chart["zero"]), 0.5), 1),
                "height": row - 8,
                "negative": value < 0,
                "title": f"{label}: {shown(value)}",
            }
        )
    chart["table"] = {"columns": [title], "rows": [(label, [shown(value)]) for label, value in values]}
    return chart
