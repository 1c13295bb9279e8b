"""Small server-rendered SVG charts (no JavaScript, nothing from a CDN)."""

from dataclasses import dataclass

WIDTH, HEIGHT, PAD = 300, 90, 4


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    positive: bool
    label: str


def bars(values: list[tuple[str, float]]) -> dict:
    """Daily profit bars around a zero line: {'bars': [...], 'zero': y}."""
    if not values:
        return {"bars": [], "zero": HEIGHT / 2}
    top = max(max(v for _, v in values), 0.0)
    bottom = min(min(v for _, v in values), 0.0)
    span = (top - bottom) or 1.0
    scale = (HEIGHT - 2 * PAD) / span
    zero = PAD + top * scale
    slot = WIDTH / len(values)
    result = []
    for index, (label, value) in enumerate(values):
        height = abs(value) * scale
        result.append(
            Bar(
                x=index * slot + 1,
                y=zero - height if value >= 0 else zero,
                width=max(slot - 2, 1),
                height=max(height, 0.5),
                positive=value >= 0,
                label=f"{label}: {value:,.2f}",
            )
        )
    return {"bars": result, "zero": zero}


def line(values: list[float]) -> str:
    """Polyline points for an equity curve."""
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = WIDTH / (len(values) - 1)
    return " ".join(
        f"{index * step:.1f},{HEIGHT - PAD - (value - low) / span * (HEIGHT - 2 * PAD):.1f}"
        for index, value in enumerate(values)
    )
