"""What every exporter shares: a gate's numbers in the unit its parser gave them.

Kept apart from the package's ``__init__`` (which imports every exporter) so that an exporter
importing it forms no import cycle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from perfmon.core.gates import format_gate_value

__all__ = ["gate_quantity"]


def gate_quantity(gate: Mapping[str, Any], x: Any) -> str:
    """A gate's value, interval end or threshold from report.json, in the unit the gate's
    parser gave it (its ``unit`` and ``rate``; ``perfmon.core.gates.format_gate_value``), so
    that every format shows one gate alike and none parses its expression.

    Args:
        gate: one entry of the report's ``gates`` (or ``gates_by_set``) list.
        x: the number, in the gate's base unit; anything else (None, NaN) reads ``"–"``.

    Returns:
        E.g. ``"1.3 ms"``, ``"48 MiB"``, ``"1.2 MiB/h"``; a gate without a unit (a report
        written before gates carried one) gives the number to 4 significant digits.
    """
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return "–"
    unit = str(gate.get("unit") or "")
    if not unit:
        return f"{x:.4g}" if isinstance(x, float) else f"{x:,}"
    metrics = list(gate.get("metrics") or [])
    metric = str(metrics[0]) if len(metrics) == 1 else ""
    func = str(gate.get("func") or "")
    return format_gate_value(float(x), unit, bool(gate.get("rate")), func, metric)
