"""Hand-written SVG charts for the report (no plotting library).

`bar_chart` draws grouped bars on a log scale (one group per workload, one
bar per series); `line_chart` draws series of points on log-log axes.  Both
return the SVG document as text.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple
from xml.sax.saxutils import escape

#: Colour-blind-friendly palette (Okabe-Ito), then greys.
PALETTE = [
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
    "#999999",
]

FONT = 'font-family="sans-serif" font-size="11"'


def _fmt(value: float) -> str:
    if value >= 1000 or value < 0.01:
        exponent = int(round(math.log10(value)))
        if abs(value - 10**exponent) < 1e-9 * value:
            return "1e%d" % exponent
        return "%.0e" % value
    return ("%g" % value) if value >= 1 else ("%.2g" % value)


def _log_ticks(lo: float, hi: float, steps: Sequence[int] = (1,)) -> List[float]:
    ticks = []
    for exponent in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for step in steps:
            value = step * 10.0**exponent
            if lo * 0.999 <= value <= hi * 1.001:
                ticks.append(value)
    return ticks


def _header(width: int, height: int, title: str) -> List[str]:
    return [
        '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
        'viewBox="0 0 %d %d">' % (width, height, width, height),
        '<rect width="100%" height="100%" fill="white"/>',
        '<text x="%d" y="18" text-anchor="middle" font-family="sans-serif" '
        'font-size="14" font-weight="bold">%s</text>' % (width // 2, escape(title)),
    ]


def _legend(names: Sequence[str], x: float, y: float) -> List[str]:
    out = []
    for i, name in enumerate(names):
        yy = y + i * 16
        out.append(
            '<rect x="%.1f" y="%.1f" width="12" height="10" fill="%s"/>'
            % (x, yy - 9, PALETTE[i % len(PALETTE)])
        )
        out.append(
            '<text x="%.1f" y="%.1f" %s>%s</text>' % (x + 16, yy, FONT, escape(name))
        )
    return out


def bar_chart(
    title: str,
    groups: Sequence[str],
    series: Sequence[str],
    values: Dict[Tuple[str, str], Optional[float]],
    ylabel: str,
    baseline: float = 1.0,
) -> str:
    """Grouped bars, log-scale y axis, bars drawn from *baseline*.
    ``values[(group, series)]`` (None: no bar)."""
    present = [v for v in values.values() if v]
    lo = min(present + [baseline]) / 1.2
    hi = max(present + [baseline * 2]) * 1.3
    left, right, top, bottom = 60, 170, 30, 90
    group_width = max(60, 12 * len(series) + 14)
    width = left + right + group_width * len(groups)
    height = 420
    plot_h = height - top - bottom
    log_lo, log_hi = math.log10(lo), math.log10(hi)

    def y_of(value: float) -> float:
        return top + plot_h * (1 - (math.log10(value) - log_lo) / (log_hi - log_lo))

    out = _header(width, height, title)
    for tick in _log_ticks(lo, hi, (1, 2, 5)):
        y = y_of(tick)
        out.append(
            '<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>'
            % (left, y, width - right, y)
        )
        out.append(
            '<text x="%d" y="%.1f" text-anchor="end" %s>%sx</text>'
            % (left - 4, y + 4, FONT, _fmt(tick))
        )
    out.append(
        '<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="black"/>'
        % (left, y_of(baseline), width - right, y_of(baseline))
    )
    bar_w = (group_width - 14) / max(1, len(series))
    for g, group in enumerate(groups):
        x0 = left + g * group_width + 7
        for s, name in enumerate(series):
            value = values.get((group, name))
            if not value:
                continue
            y1, y2 = sorted((y_of(value), y_of(baseline)))
            out.append(
                '<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s">'
                "<title>%s, %s: %.2fx</title></rect>"
                % (
                    x0 + s * bar_w,
                    y1,
                    max(bar_w - 1, 1),
                    max(y2 - y1, 0.5),
                    PALETTE[s % len(PALETTE)],
                    escape(group),
                    escape(name),
                    value,
                )
            )
        cx = x0 + (group_width - 14) / 2
        out.append(
            '<text x="%.1f" y="%d" text-anchor="end" transform="rotate(-35 %.1f %d)" '
            "%s>%s</text>"
            % (cx, height - bottom + 14, cx, height - bottom + 14, FONT, escape(group))
        )
    out.append(
        '<text x="14" y="%d" transform="rotate(-90 14 %d)" text-anchor="middle" '
        "%s>%s</text>" % (top + plot_h // 2, top + plot_h // 2, FONT, escape(ylabel))
    )
    out.extend(_legend(series, width - right + 12, top + 12))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def line_chart(
    title: str,
    series: Dict[str, List[Tuple[float, float]]],
    xlabel: str,
    ylabel: str,
    yunit: str = "s",
) -> str:
    """Series of (x, y) points joined by lines, log-log axes."""
    xs = [x for points in series.values() for x, _ in points if x > 0]
    ys = [y for points in series.values() for _, y in points if y > 0]
    if not xs or not ys:
        xs, ys = [1.0, 10.0], [1.0, 10.0]
    x_lo, x_hi = min(xs) / 1.5, max(xs) * 1.5
    y_lo, y_hi = min(ys) / 2, max(ys) * 2
    left, right, top, bottom = 70, 330, 30, 50
    width, height = 860, 400
    plot_w, plot_h = width - left - right, height - top - bottom

    def x_of(value: float) -> float:
        return left + plot_w * (math.log10(value) - math.log10(x_lo)) / (
            math.log10(x_hi) - math.log10(x_lo)
        )

    def y_of(value: float) -> float:
        return top + plot_h * (
            1
            - (math.log10(value) - math.log10(y_lo))
            / (math.log10(y_hi) - math.log10(y_lo))
        )

    out = _header(width, height, title)
    for tick in _log_ticks(x_lo, x_hi):
        x = x_of(tick)
        out.append(
            '<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>'
            % (x, top, x, top + plot_h)
        )
        out.append(
            '<text x="%.1f" y="%d" text-anchor="middle" %s>%s</text>'
            % (x, top + plot_h + 14, FONT, _fmt(tick))
        )
    for tick in _log_ticks(y_lo, y_hi):
        y = y_of(tick)
        out.append(
            '<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>'
            % (left, y, left + plot_w, y)
        )
        out.append(
            '<text x="%d" y="%.1f" text-anchor="end" %s>%s %s</text>'
            % (left - 4, y + 4, FONT, _fmt(tick), yunit)
        )
    out.append(
        '<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>'
        % (left, top, plot_w, plot_h)
    )
    for i, (name, points) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        pts = sorted((x, y) for x, y in points if x > 0 and y > 0)
        if len(pts) > 1:
            out.append(
                '<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                % (colour, " ".join("%.1f,%.1f" % (x_of(x), y_of(y)) for x, y in pts))
            )
        for x, y in pts:
            out.append(
                '<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s: %s at %s'
                "</title></circle>"
                % (x_of(x), y_of(y), colour, escape(name), _fmt(y), _fmt(x))
            )
    out.append(
        '<text x="%d" y="%d" text-anchor="middle" %s>%s</text>'
        % (left + plot_w // 2, height - 12, FONT, escape(xlabel))
    )
    out.append(
        '<text x="14" y="%d" transform="rotate(-90 14 %d)" text-anchor="middle" '
        "%s>%s</text>" % (top + plot_h // 2, top + plot_h // 2, FONT, escape(ylabel))
    )
    out.extend(_legend(list(series), left + plot_w + 14, top + 12))
    out.append("</svg>")
    return "\n".join(out) + "\n"
