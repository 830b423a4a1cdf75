"""Numbers with units: parsing thresholds and durations, formatting values for people.

Units follow SI and IEC 80000-13: ``KB``/``MB``/``GB`` are powers of 1000, ``KiB``/``MiB``/``GiB``
powers of 1024 (``K`` alone, as in ``KB``, is accepted for ``kB``). Time units are ``ns``,
``us`` (or ``µs``), ``ms``, ``s``, ``min``, ``h``, ``d``. ``%`` is a percentage.

Values are kept in base units: seconds, bytes, percent points for ``*_percent`` metrics and
plain ratios otherwise (``10%`` of a ratio is ``0.10``); see ``perfmon.core.gates`` for how a
``%`` threshold meets a metric.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from perfmon.core.model import Dimension

_TIME_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_BYTE_UNITS: dict[str, float] = {
    "B": 1.0,
    "KB": 1e3,
    "kB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "TB": 1e12,
    "KiB": 1024.0,
    "MiB": 1024.0**2,
    "GiB": 1024.0**3,
    "TiB": 1024.0**4,
}
UNITS: dict[str, tuple[float, Dimension]] = {
    **{u: (f, Dimension.TIME) for u, f in _TIME_UNITS.items()},
    **{u: (f, Dimension.BYTES) for u, f in _BYTE_UNITS.items()},
    "%": (1.0, Dimension.PERCENT),
}
"""Unit suffix -> (factor to the base unit, dimension)."""

_QUANTITY_RE = re.compile(
    r"\s*(?P<num>[+-]?(?:\d+(?:_\d+)*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>[A-Za-zµ%]*)\s*\Z"
)


def parse_quantity(text: str) -> tuple[float, Dimension]:
    """Parse a number with an optional unit, e.g. ``"50MB"``, ``"1e-4"``, ``"250 ms"``, ``"70%"``.

    Args:
        text: the number as written.

    Returns:
        ``(value, dimension)``: the value in base units (seconds, bytes; percent stays in
        percent points) and its dimension (``Dimension.NONE`` for a bare number).

    Raises:
        ValueError: if the text is not a number or the unit is unknown.
    """
    m = _QUANTITY_RE.match(text)
    if not m:
        raise ValueError(f"not a number: {text!r}")
    value = float(m.group("num").replace("_", ""))
    unit = m.group("unit")
    if not unit:
        return value, Dimension.NONE
    if unit not in UNITS:
        known = ", ".join(UNITS)
        raise ValueError(f"unknown unit {unit!r} in {text!r} (known: {known})")
    factor, dim = UNITS[unit]
    return value * factor, dim


def parse_duration(text: str | int | float) -> float:
    """Parse a duration such as ``"72h"``, ``"120s"``, ``"1.5min"`` or a bare number of seconds.

    Returns:
        seconds, a float >= 0.

    Raises:
        ValueError: if the text is not a duration or is negative.
    """
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        value, dim = parse_quantity(text)
        if dim not in (Dimension.TIME, Dimension.NONE):
            raise ValueError(f"not a duration: {text!r}")
        seconds = value
    if seconds < 0 or math.isnan(seconds):
        raise ValueError(f"a duration must be >= 0, got {text!r}")
    return seconds


def parse_size(text: str | int) -> int:
    """Parse a size in bytes such as ``"10MB"``, ``"1GiB"`` or a bare integer.

    Raises:
        ValueError: if the text is not a size or is negative.
    """
    if isinstance(text, bool):
        raise ValueError(f"not a size: {text!r}")
    if isinstance(text, int):
        value = float(text)
    else:
        value, dim = parse_quantity(text)
        if dim not in (Dimension.BYTES, Dimension.NONE):
            raise ValueError(f"not a size: {text!r}")
    if value < 0:
        raise ValueError(f"a size must be >= 0, got {text!r}")
    return int(value)


def _sig(value: float, digits: int = 3) -> str:
    """Format with ``digits`` significant digits, no exponent for ordinary magnitudes."""
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return str(value)
    mag = abs(value)
    if mag >= 1e6 or mag < 1e-3:
        return f"{value:.{digits - 1}e}"
    decimals = max(0, digits - 1 - math.floor(math.log10(mag)))
    text = f"{value:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_bytes(value: float) -> str:
    """Format a byte count with IEC units, e.g. ``12.3 MiB``."""
    mag = abs(value)
    for unit, factor in (
        ("TiB", 1024.0**4),
        ("GiB", 1024.0**3),
        ("MiB", 1024.0**2),
        ("KiB", 1024.0),
    ):
        if mag >= factor:
            return f"{_sig(value / factor)} {unit}"
    return f"{_sig(value)} B"


def format_seconds(value: float) -> str:
    """Format a time in seconds with a readable unit, e.g. ``152 µs``, ``1.3 ms``, ``2.5 s``."""
    mag = abs(value)
    if mag == 0:
        return "0 s"
    for unit, factor in (("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3)):
        if mag < factor * 1000:
            return f"{_sig(value / factor)} {unit}"
    if mag < 600:
        return f"{_sig(value)} s"
    return format_duration(value)


def format_duration(seconds: float) -> str:
    """Format an elapsed time as ``H:MM:SS`` (or ``Dd H:MM:SS`` past a day)."""
    s = int(max(0.0, seconds))
    days, rem = divmod(s, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}d {text}" if days else text


def format_quantity(value: float | None, dimension: Dimension) -> str:
    """Format a value in base units for people, e.g. ``"1.3 ms"``, ``"48 MiB"``, ``"63.2%"``.

    Args:
        value: the value in base units (seconds, bytes, percent points, ratio); None gives "–".
        dimension: its dimension (see ``perfmon.core.model.metric_dimension``).
    """
    if value is None:
        return "–"
    if dimension is Dimension.TIME:
        return format_seconds(value)
    if dimension is Dimension.BYTES:
        return format_bytes(value)
    if dimension is Dimension.PERCENT:
        return f"{_sig(value)}%"
    if dimension is Dimension.COUNT and float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    if math.isfinite(value) and abs(value) >= 1e6:
        return format_si(value)
    return _sig(value, 4) if abs(value) < 1 else _sig(value)


# --- humanised rates and large numbers (issue 14) ----------------------------------------------

_SI_PREFIXES: tuple[tuple[str, float], ...] = (
    ("E", 1e18),
    ("P", 1e15),
    ("T", 1e12),
    ("G", 1e9),
    ("M", 1e6),
    ("k", 1e3),
)
"""SI prefixes (BIPM, The International System of Units, 9th ed., 2019, table 7)."""


def format_si(value: float, unit: str = "", *, min_prefix: float = 1e6) -> str:
    """Format a number with an SI prefix, e.g. ``92.7 M``, ``92.7 MB/s``, ``1.2 k/s``.

    Args:
        value: the number, in ``unit``.
        unit: the unit written after the prefix ("" for a bare number).
        min_prefix: the smallest prefix used (1e3 gives ``k``; the default starts at ``M``,
            so that numbers below a million keep their digits, e.g. ``412,000``).

    Returns:
        Three significant digits with the prefix, e.g. ``format_si(9.27e7, "B/s")`` gives
        ``"92.7 MB/s"``; non-finite values as Python writes them.
    """
    if not math.isfinite(value):
        return f"{value} {unit}".rstrip()
    mag = abs(value)
    for prefix, factor in _SI_PREFIXES:
        if factor >= min_prefix and mag >= factor * 0.9995:
            if mag / factor >= 999.5 and prefix == "E":
                return f"{value:.3g} {unit}".rstrip()
            return f"{_sig(value / factor)} {prefix}{unit}"
    return f"{_sig(value)} {unit}".rstrip()


_RATE_UNITS: tuple[tuple[str, str], ...] = (
    ("_bytes_per_second", "B/s"),
    ("_per_second", "/s"),
    ("_per_sec", "/s"),
    ("_per_s", "/s"),
)


def metric_rate_unit(name: str) -> str | None:
    """The unit of a rate metric from its name's suffix, or None for a metric that is no rate.

    Args:
        name: a metric name, e.g. ``"parquet_read_bytes_per_second"``.

    Returns:
        ``"B/s"`` for ``*_bytes_per_second`` (Prometheus' base-unit naming,
        https://prometheus.io/docs/practices/naming/), ``"/s"`` for other ``*_per_second``
        (``_per_sec``, ``_per_s``) names, else None.
    """
    for suffix, unit in _RATE_UNITS:
        if name.endswith(suffix):
            return unit
    return None


def format_rate(value: float | None, unit: str = "/s") -> str:
    """Format a rate with an SI prefix: ``92.7 MB/s``, ``12.3 k/s``, ``0.5/s``.

    Args:
        value: the rate in base units per second; None gives "–".
        unit: ``"B/s"`` for bytes per second, ``"/s"`` for events per second.
    """
    if value is None:
        return "–"
    text = format_si(value, unit, min_prefix=1e3)
    return text.replace(" /s", "/s")


def format_metric(value: float | None, name: str) -> str:
    """Format a value of metric ``name`` for people, in the unit its name gives.

    Rates (``metric_rate_unit``) get an SI prefix and their unit (``92.7 MB/s``, never
    ``9.27e+07``); every other metric goes through ``format_quantity`` with the dimension of
    its suffix (``perfmon.core.model.metric_dimension``: ``1.3 ms``, ``48 MiB``, ``63.2%``).

    Args:
        value: the value in the metric's base unit; None gives "–".
        name: the metric's name.
    """
    from perfmon.core.model import metric_dimension

    if value is None:
        return "–"
    unit = metric_rate_unit(name)
    if unit is not None:
        return format_rate(value, unit)
    return format_quantity(value, metric_dimension(name))


def format_counter(total: float, span_s: float, name: str) -> str:
    """A counter as people read it: its total and its rate, e.g. ``Σ 1,234 · 41.1/s``.

    Args:
        total: the sum of the counter's increments, in the metric's unit.
        span_s: the seconds the increments were counted over (<= 0: no rate shown).
        name: the metric's name (``*_bytes_total`` gives ``Σ 12 MiB · 3.1 MB/s``).
    """
    from perfmon.core.model import Dimension, metric_dimension

    bytes_ = name.endswith(("_bytes_total", "_bytes"))
    dim = Dimension.BYTES if bytes_ else metric_dimension(name)
    text = f"Σ {format_quantity(total, dim)}"
    if span_s > 0 and math.isfinite(span_s):
        text += f" · {format_rate(total / span_s, 'B/s' if bytes_ else '/s')}"
    return text


# --- direction: is a metric better lower or higher? (issue 11) ---------------------------------

LOWER = "lower"
"""Lower is better: times, sizes, memory."""
HIGHER = "higher"
"""Higher is better: rates and throughputs."""
DIRECTIONS: tuple[str, ...] = (LOWER, HIGHER)
"""Values of ``[metric.NAME] better`` in a campaign."""

_HIGHER_SUFFIXES: tuple[str, ...] = ("_per_second", "_per_sec", "_per_s", "_throughput")
_LOWER_SUFFIXES: tuple[str, ...] = ("_seconds", "_bytes", "_ms", "_us", "_ns")
_RATE_SUFFIXES: tuple[str, ...] = _HIGHER_SUFFIXES


def metric_direction(name: str, overrides: Mapping[str, str] | None = None) -> str | None:
    """Whether a metric is better lower or higher.

    Args:
        name: the metric name, e.g. ``"session_seconds"`` or ``"read_bytes_per_second"``.
        overrides: metric name -> ``"lower"`` or ``"higher"`` (the campaign's
            ``[metric.NAME] better``), which wins over the name.

    Returns:
        ``LOWER`` for names ending in a time or size unit (``_seconds``, ``_bytes``, ``_ms``,
        ``_us``, ``_ns``: Prometheus base-unit suffixes, https://prometheus.io/docs/practices/
        naming/), ``HIGHER`` for rates (``_per_second``, ``_per_sec``, ``_per_s``,
        ``_throughput``; checked first, so ``read_bytes_per_second`` is a rate), else None:
        a count, ratio or percentage says nothing about which way is better.
    """
    if overrides and name in overrides:
        return overrides[name]
    if name.endswith(_HIGHER_SUFFIXES):
        return HIGHER
    if name.endswith(_LOWER_SUFFIXES):
        return LOWER
    return None


def judgement_words(name: str) -> tuple[str, str]:
    """``(better, worse)`` as people say it of this metric: ``faster``/``slower`` for times and
    rates, ``better``/``worse`` otherwise."""
    if name.endswith(_RATE_SUFFIXES) or name.endswith(("_seconds", "_ms", "_us", "_ns")):
        return "faster", "slower"
    return "better", "worse"
