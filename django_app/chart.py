"""The admin's picture of delivery: 24 hourly groups of bars, drawn on the server as SVG.

No JavaScript and nothing fetched: ``delivery_chart()`` returns an inline ``<svg>`` built
from ``DeliveryStatus.hourly``. Its only text is numbers and times, and every value goes
through ``format_html``, so nothing in it can become markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from django_app.status import HourlyDelivery

WIDTH, HEIGHT = 600, 220
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 34, 44  # margins: y labels, legend, x labels and caption
PLOT_WIDTH = WIDTH - LEFT - RIGHT
PLOT_HEIGHT = HEIGHT - TOP - BOTTOM
MIN_BAR = 1.5  # a count above zero stays visible however tall the others are

# (attribute, legend text, fill): the bars of each hour, left to right, in this order.
SERIES = (
    ("delivered", "delivered", "#3a7d44"),
    ("retried", "retried", "#c98a00"),
    ("dead", "dead", "url(#ta-chart-dead)"),
)
DEAD_COLOUR = "#ba2121"


def nice_top(largest: int) -> int:
    """The top of the scale: 1, 2 or 5 times a power of ten, at least ``largest``."""
    if largest <= 0:
        return 0
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= largest:
                return step * magnitude
        magnitude *= 10


def bar_height(count: int, top: int) -> float:
    """The height of a bar for ``count`` on a scale from 0 to ``top`` (0 when ``top`` is)."""
    if count <= 0 or top <= 0:
        return 0.0
    return round(max(MIN_BAR, PLOT_HEIGHT * count / top), 2)


def _hour_label(hour: Any) -> str:
    return str(timezone.localtime(hour).strftime("%H:%M"))


def delivery_chart(hourly: Sequence[HourlyDelivery]) -> SafeString:
    """The last 24 hours (oldest first, as ``delivery_status()`` gives them) as an SVG."""
    totals = {name: sum(getattr(h, name) for h in hourly) for name, _, _ in SERIES}
    top = nice_top(max((getattr(h, name) for h in hourly for name, _, _ in SERIES), default=0))
    zone = timezone.get_current_timezone_name()
    label = (
        f"Delivery over the last {len(hourly)} hours, per hour: "
        f"{totals['delivered']} delivered, {totals['retried']} retried, {totals['dead']} dead."
    )

    parts: list[str] = [
        format_html(
            '<svg xmlns="http://www.w3.org/2000/svg" class="ta-chart-svg" role="img" '
            'aria-label="{}" viewBox="0 0 {} {}" width="{}" height="{}" '
            'font-family="sans-serif" font-size="12">',
            label,
            WIDTH,
            HEIGHT,
            WIDTH,
            HEIGHT,
        ),
        format_html("<title>{}</title>", label),
        format_html(
            '<defs><pattern id="ta-chart-dead" patternUnits="userSpaceOnUse" width="4" '
            'height="4" patternTransform="rotate(45)"><rect width="4" height="4" fill="{}"/>'
            '<rect width="1.4" height="4" fill="#fff" fill-opacity="0.55"/></pattern></defs>',
            DEAD_COLOUR,
        ),
    ]

    # Legend, top right: a swatch and a word per series (the words carry the meaning).
    x = WIDTH - RIGHT - 3 * 84
    for name, text, fill in SERIES:
        parts.append(
            format_html(
                '<g class="legend {}"><rect x="{}" y="8" width="12" height="12" fill="{}"/>'
                '<text x="{}" y="18" fill="currentColor">{}</text></g>',
                name,
                x,
                fill,
                x + 17,
                text,
            )
        )
        x += 84

    # Scale: gridlines and labels at 0, the middle (when a whole number) and the top.
    ticks = [0] if top == 0 else [0, top // 2, top] if top % 2 == 0 else [0, top]
    for tick in ticks:
        y = TOP + PLOT_HEIGHT - (PLOT_HEIGHT * tick / top if top else 0)
        parts.append(
            format_html(
                '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}" stroke="currentColor" '
                'stroke-opacity="{}"/><text class="y-label" x="{}" y="{}" text-anchor="end" '
                'fill="currentColor">{}</text>',
                LEFT,
                WIDTH - RIGHT,
                round(y, 2),
                round(y, 2),
                "0.6" if tick == 0 else "0.15",
                LEFT - 6,
                round(y + 4, 2),
                f"{tick:,}",
            )
        )

    group = PLOT_WIDTH / max(len(hourly), 1)
    bar = group * 0.8 / len(SERIES)
    baseline = TOP + PLOT_HEIGHT
    for index, hour in enumerate(hourly):
        left = LEFT + index * group
        start, end = _hour_label(hour.hour), _hour_label(hour.hour + timedelta(hours=1))
        counts = {name: getattr(hour, name) for name, _, _ in SERIES}
        bars = []
        for position, (name, text, fill) in enumerate(SERIES):
            height = bar_height(counts[name], top)
            if not height:
                continue
            bars.append(
                format_html(
                    '<rect class="bar {}" data-count="{}" x="{}" y="{}" width="{}" '
                    'height="{}" fill="{}"><title>{}\u2013{}: {} {}</title></rect>',
                    name,
                    counts[name],
                    round(left + group * 0.1 + position * bar, 2),
                    round(baseline - height, 2),
                    round(bar, 2),
                    height,
                    fill,
                    start,
                    end,
                    counts[name],
                    text,
                )
            )
        parts.append(
            format_html(
                '<g class="hour" data-hour="{}"><title>{}\u2013{} {}: {} delivered, {} retried, '
                '{} dead</title><rect class="hit" x="{}" y="{}" width="{}" height="{}" '
                'fill="transparent"/>{}</g>',
                timezone.localtime(hour.hour).isoformat(),
                start,
                end,
                zone,
                counts["delivered"],
                counts["retried"],
                counts["dead"],
                round(left, 2),
                TOP,
                round(group, 2),
                PLOT_HEIGHT,
                mark_safe("".join(bars)),  # each built by format_html above
            )
        )
        if index % 3 == 0:
            parts.append(
                format_html(
                    '<text class="x-label" x="{}" y="{}" text-anchor="middle" '
                    'fill="currentColor">{}</text>',
                    round(left + group / 2, 2),
                    baseline + 15,
                    start,
                )
            )

    parts.append(
        format_html(
            '<text class="caption" x="{}" y="18" fill="currentColor" fill-opacity="0.75">'
            "events per hour</text>",
            4,
        )
    )
    parts.append(
        format_html(
            '<text class="caption" x="{}" y="{}" text-anchor="middle" fill="currentColor" '
            'fill-opacity="0.75">hour starting ({})</text>',
            LEFT + PLOT_WIDTH / 2,
            HEIGHT - 6,
            zone,
        )
    )
    if top == 0:
        parts.append(
            format_html(
                '<text class="empty" x="{}" y="{}" text-anchor="middle" fill="currentColor" '
                'fill-opacity="0.75">Nothing delivered, retried or dead in these hours</text>',
                LEFT + PLOT_WIDTH / 2,
                TOP + PLOT_HEIGHT / 2,
            )
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # each part built by format_html above
