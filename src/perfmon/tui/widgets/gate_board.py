"""The gate board: one row per gate with a coloured state marker, its name and its reason line."""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

from perfmon.core.model import GateResult, GateState
from perfmon.tui.widgets.keyed_table import Cell, Column, KeyedTable

GATE_MARKS: dict[GateState, tuple[str, str]] = {
    GateState.PASS: ("● pass", "success"),
    GateState.FAIL: ("✗ fail", "error"),
    GateState.PENDING: ("… pending", "muted"),
    GateState.INCONCLUSIVE: ("? unsure", "warning"),
}
"""Gate state -> (marker text, style role). The word is spelled out for colour-blind readers."""


class GateBoard(KeyedTable[GateResult]):
    """Gates in campaign order, keyed by name. ``summary()`` counts them by state."""

    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("state", "state"),
        Column("gate", "gate"),
        Column("reason", "reason"),
    )

    def key_of(self, item: GateResult) -> str:
        """Row key: the gate's name (unique within a campaign)."""
        return item.name

    def cells_of(self, item: GateResult) -> tuple[Cell, ...]:
        """The marker, the name in bold, and the reason (or the expression while pending)."""
        mark, role = GATE_MARKS.get(item.state, ("?", "warning"))
        reason = item.reason or item.expr
        return (
            Cell(mark, role),
            Cell(item.name, "bold"),
            Cell(reason, "muted" if item.state is GateState.PENDING else ""),
        )

    @staticmethod
    def summary(gates: tuple[GateResult, ...]) -> str:
        """Return e.g. ``"2 pass · 1 fail · 1 pending"`` (states with no gate left out)."""
        counts = Counter(g.state for g in gates)
        parts = [f"{counts[s]} {s.value}" for s in GATE_MARKS if counts[s]]
        return " · ".join(parts) if parts else "none"
