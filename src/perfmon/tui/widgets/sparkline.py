"""A one-line sparkline renderer using the eight Unicode block elements ▁▂▃▄▅▆▇█.

Textual's ``Sparkline`` widget draws one series per widget; the metrics panel needs one series
per table row, so it renders each series to a short string that fits in a ``DataTable`` cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

BLOCKS = "▁▂▃▄▅▆▇█"
"""Levels from lowest to highest (Unicode Block Elements, U+2581..U+2588)."""


def resample(values: Sequence[float], width: int) -> list[float]:
    """Reduce ``values`` to at most ``width`` points, each the mean of an equal share of them.

    Args:
        values: the series, oldest first; NaN and infinite values are dropped.
        width: the number of points wanted (>= 1).

    Returns:
        ``min(width, len(finite values))`` means, oldest first.

    Raises:
        ValueError: if ``width`` < 1.
    """
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    finite = [v for v in values if math.isfinite(v)]
    n = len(finite)
    if n <= width:
        return finite
    out: list[float] = []
    for i in range(width):
        lo = i * n // width
        hi = (i + 1) * n // width
        chunk = finite[lo:hi]
        out.append(sum(chunk) / len(chunk))
    return out


def render_sparkline(values: Sequence[float], width: int) -> str:
    """Render a series as a string of block characters, at most ``width`` long.

    The series is resampled to ``width`` buckets (see ``resample``) and each bucket mapped
    linearly from [min, max] of the series onto the eight block levels. A flat series is drawn
    at the middle level, so that it reads as "steady" rather than "zero".

    Args:
        values: the series, oldest first.
        width: the most characters to return (>= 1).

    Returns:
        The sparkline; "" for an empty series.
    """
    points = resample(values, width)
    if not points:
        return ""
    lo = min(points)
    hi = max(points)
    if hi - lo <= abs(hi) * 1e-12:
        return BLOCKS[3] * len(points)
    top = len(BLOCKS) - 1
    scale = top / (hi - lo)
    return "".join(BLOCKS[min(top, round((v - lo) * scale))] for v in points)
