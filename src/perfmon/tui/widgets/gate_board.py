"""The gate board: one row per gate with a coloured state marker, its name and its reason line.

A gate judged per set of sessions shows every set's state side by side before its reason
(``golden ● pass 6.21 [5.71, 19.1] │ canary … pending n = 3``), so a set's decided state stays
visible while another set runs; the subtitle counts the gates by state and writes the rule that
makes the verdict."""

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

SET_MARKS: dict[str, str] = {
    "pass": "●",
    "fail": "✗",
    "pending": "…",
    "inconclusive": "?",
    "not started": "○",
}
"""A set's state in a gate's per-set line (``GateResult.per_set``), before the word itself."""

VERDICT_SHORT = "verdict: every gate must pass in every set"
"""The verdict rule as the board's subtitle says it (``perfmon.core.gates.VERDICT_RULE``)."""

BAR_WIDTH = 15
"""Characters of the interval bar shown before a statistical gate's reason."""


def interval_bar(low: float, high: float, value: float, threshold: float, width: int = 15) -> str:
    """A confidence interval against a threshold in ``width`` characters, e.g. ``··━━●━━··│··``.

    The scale spans the interval and the threshold with a margin: ``━`` is the interval,
    ``●`` the value, ``│`` the threshold, ``·`` the rest. As sessions come in the interval
    narrows; the gate passes or fails once it no longer touches the threshold.

    Args:
        low / high: the interval, base units.
        value: the point estimate.
        threshold: the gate's limit, same units.
        width: characters (>= 5).
    """
    lo, hi = min(low, threshold), max(high, threshold)
    span = hi - lo or abs(hi) or 1.0
    lo, hi = lo - 0.1 * span, hi + 0.1 * span

    def pos(x: float) -> int:
        return max(0, min(width - 1, round((x - lo) / (hi - lo) * (width - 1))))

    cells = ["·"] * width
    for i in range(pos(low), pos(high) + 1):
        cells[i] = "━"
    cells[pos(value)] = "●"
    cells[pos(threshold)] = "│"
    return "".join(cells)


def group_summary(item: GateResult) -> str:
    """Every group of a gate judged per group, for the board: ``" · events=117 pass (p95 =
    410 µs) · events=1024 fail (p95 = 3 ms)"`` (empty for a gate with fewer than two)."""
    if len(item.groups) < 2:
        return ""
    parts = []
    for g in item.groups:
        head = g.reason.split(", limit ")[0].split(" over ")[0]
        shown = f" ({head})" if g.value is not None and head else ""
        parts.append(f"{g.label} {g.state.value}{shown}")
    return " · " + " · ".join(parts)


def per_set_text(per_set: tuple[tuple[str, str, str], ...]) -> str:
    """Each set's state side by side, e.g. ``"golden ● pass 6.21 [5.71, 19.1] │ canary …
    pending n = 3"``; ``""`` for a gate not judged per set."""
    parts = []
    for name, state, text in per_set:
        mark = SET_MARKS.get(state, "?")
        parts.append(" ".join(p for p in (name, mark, state, text) if p))
    return " │ ".join(parts)


class GateBoard(KeyedTable[GateResult]):
    """Gates in campaign order, keyed by name. ``summary()`` counts them by state."""

    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("state", "state"),
        Column("gate", "gate"),
        Column("reason", "reason", fit=True),
    )

    def key_of(self, item: GateResult) -> str:
        """Row key: the gate's name (unique within a campaign)."""
        return item.name

    def cells_of(self, item: GateResult) -> tuple[Cell, ...]:
        """The marker, the name in bold, and the reason (or the expression while pending).

        A gate with a confidence interval gets an ``interval_bar`` before its reason (the
        reason itself gives the interval, n per variant and the p-value).
        """
        mark, role = GATE_MARKS.get(item.state, ("?", "warning"))
        reason = item.reason or item.expr
        threshold = item.threshold  # as the gate's parser gave it: never parsed here
        if (
            item.ci_low is not None
            and item.ci_high is not None
            and item.value is not None
            and threshold is not None
        ):
            bar = interval_bar(item.ci_low, item.ci_high, item.value, threshold, BAR_WIDTH)
            reason = f"{bar} {reason}"
        reason += group_summary(item)

        if item.per_set:
            # Every set's own state first: a set that passed stays visible while another runs.
            reason = f"{per_set_text(item.per_set)} ─ {reason}"
        return (
            Cell(mark, role),
            Cell(item.name, "bold"),
            Cell(reason, "muted" if item.state is GateState.PENDING else ""),
        )

    @staticmethod
    def summary(gates: tuple[GateResult, ...]) -> str:
        """Return e.g. ``"2 pass · 1 fail · 1 pending · verdict: every gate must pass in
        every set"`` (states with no gate left out; the rule that makes the verdict last)."""
        counts = Counter(g.state for g in gates)
        parts = [f"{counts[s]} {s.value}" for s in GATE_MARKS if counts[s]]
        return " · ".join([*parts, VERDICT_SHORT]) if parts else "none"
