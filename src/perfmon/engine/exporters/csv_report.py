"""``report.csv``: one row per session and one row per metric summary, in one table.

Columns (``COLUMNS``), all in base units (seconds, bytes):

- ``record``: ``session`` or ``metric``, saying which of the columns below are filled;
- session rows: ``session_id``, ``workload``, ``variant``, ``set``, ``params`` (``k=v`` pairs
  separated by spaces, sorted by key), ``warmup`` (0/1), ``status`` (``ok``, ``crash``, ...),
  ``status_text`` (``exit 3``, ``SIGSEGV``), ``exit_code``, ``signal``, ``start_utc``,
  ``wall_s``, ``cpu_s``, ``peak_rss_bytes``, ``samples``, ``malformed``, ``error``;
- metric rows (report.json's ``metrics``: every recorded sample but those of warm-ups and of
  attempts repeated by the noise guard): ``metric``, ``kind``, ``n``, ``min``, ``median``,
  ``p95``, ``max``, ``last``, ``total`` (the sum; meaningful for counters).

Empty cells are missing values. Numbers are written with ``repr`` precision (no rounding). A
text cell from the campaign or a workload that starts with ``=``, ``+``, ``-``, ``@``, a tab or
a carriage return is prefixed with ``'`` so that a spreadsheet shows it instead of running it
(OWASP, "CSV Injection"); numbers are never altered.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["COLUMNS", "render_csv"]

SESSION_COLUMNS = (
    "session_id",
    "workload",
    "variant",
    "set",
    "params",
    "warmup",
    "status",
    "status_text",
    "exit_code",
    "signal",
    "start_utc",
    "wall_s",
    "cpu_s",
    "peak_rss_bytes",
    "samples",
    "malformed",
    "error",
)
METRIC_COLUMNS = ("metric", "kind", "n", "min", "median", "p95", "max", "last", "total")
COLUMNS = ("record", *SESSION_COLUMNS, *METRIC_COLUMNS)
"""The header of report.csv, in order."""

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(x: Any) -> str:
    if x is None:
        return ""
    s = str(x)
    return "'" + s if s.startswith(_FORMULA_START) else s


def _number(x: Any) -> str:
    if isinstance(x, bool):
        return "1" if x else "0"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return repr(x) if math.isfinite(x) else ""
    return ""


def _utc(t: Any) -> str:
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        return ""
    try:
        return _dt.datetime.fromtimestamp(float(t), _dt.UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return ""


def _params(params: Any) -> str:
    if not isinstance(params, Mapping):
        return ""
    return " ".join(f"{k}={v}" for k, v in sorted(params.items(), key=lambda kv: str(kv[0])))


def render_csv(report: Mapping[str, Any], sessions: Sequence[Mapping[str, Any]]) -> str:
    """Render report.csv.

    Args:
        report: ``build_report``'s dict (its ``metrics`` become metric rows).
        sessions: the sessions table (``RunData.sessions``: ``session_row`` dicts), one row
            each in finishing order. Damaged rows (wrong types) give empty cells, never an
            exception.

    Returns:
        The CSV text (RFC 4180 quoting, ``\\r\\n`` line ends as the csv module writes them).
    """
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    blank_metric = [""] * len(METRIC_COLUMNS)
    for s in sessions:
        if not isinstance(s, Mapping):
            continue
        row = [
            "session",
            _number(s.get("id")),
            _text(s.get("workload")),
            _text(s.get("variant")),
            _text(s.get("set_name")),
            _text(_params(s.get("params"))),
            _number(bool(s.get("warmup"))),
            _text(s.get("status")),
            _text(s.get("status_text")),
            _number(s.get("exit_code")),
            _number(s.get("signal")),
            _utc(s.get("start_t")),
            _number(s.get("wall_s")),
            _number(s.get("cpu_s")),
            _number(s.get("peak_rss_bytes")),
            _number(s.get("samples")),
            _number(s.get("malformed")),
            _text(s.get("error") or ""),
        ]
        writer.writerow([*row, *blank_metric])
    blank_session = [""] * len(SESSION_COLUMNS)
    for m in report.get("metrics") or []:
        if not isinstance(m, Mapping):
            continue
        writer.writerow(
            [
                "metric",
                *blank_session,
                _text(m.get("name")),
                _text(m.get("kind")),
                _number(m.get("n")),
                *(_number(m.get(k)) for k in ("min", "median", "p95", "max", "last", "total")),
            ]
        )
    return buf.getvalue()
