"""The run's event log: ``events.jsonl`` in the run directory (gate state changes).

One JSON object per line, appended and flushed as each event happens, so that a crash loses at
most the line being written. A torn or undecodable line (the tail after kill -9, typically) is
skipped and counted when reading, never fatal.

A gate change line::

    {"v": 1, "event": "gate", "t": 1718000000.25, "gate": "RAM", "old": "pending",
     "new": "pass", "reason": "max = 41.2% over 120 samples, limit <= 70%"}

``t`` is Unix seconds; ``old`` and ``new`` are ``GateState`` values.
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from perfmon.core.model import GateResult, GateState

log = logging.getLogger(__name__)

EVENTS_JSONL = "events.jsonl"
EVENTS_VERSION = 1
KEEP_GATE_CHANGES = 200
"""How many gate changes a running campaign keeps in memory (published in snapshots)."""


class GateChangeLog:
    """Tracks gate states and records each change to ``run_dir/events.jsonl``.

    Every gate is taken to start ``pending`` (no data yet), so its first change is the first
    time it is evaluated to something else.

    Args:
        run_dir: the run directory (the file is created on the first change).
        keep: how many of the latest changes ``recent`` keeps (bounded memory).
    """

    def __init__(self, run_dir: Path, *, keep: int = KEEP_GATE_CHANGES) -> None:
        self.path = run_dir / EVENTS_JSONL
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        """The latest changes, oldest first: ``{t, gate, old, new, reason}`` dicts."""
        self._states: dict[str, str] = {}
        self._file: IO[str] | None = None
        self.write_error: str | None = None
        """The last error writing the file, None while all went well."""

    def observe(self, gates: Sequence[GateResult], t: float) -> list[dict[str, Any]]:
        """Compare gate results with the states last seen; record and return the changes.

        Args:
            gates: the gates as just evaluated.
            t: the evaluation time, Unix seconds.

        Returns:
            The new changes (``{t, gate, old, new, reason}``), in ``gates`` order. A write
            error is logged and kept in ``write_error``; it never raises (the run goes on).
        """
        changes: list[dict[str, Any]] = []
        for g in gates:
            new = g.state.value
            old = self._states.get(g.name, GateState.PENDING.value)
            self._states[g.name] = new
            if new != old:
                changes.append({"t": t, "gate": g.name, "old": old, "new": new, "reason": g.reason})
        for change in changes:
            self.recent.append(change)
            self._write(change)
        return changes

    def _write(self, change: dict[str, Any]) -> None:
        line = json.dumps({"v": EVENTS_VERSION, "event": "gate", **change}, allow_nan=False)
        try:
            if self._file is None:
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(line + "\n")
            self._file.flush()
        except (OSError, ValueError) as exc:
            self.write_error = str(exc)
            log.error("could not record a gate change: %s", exc)

    def close(self) -> None:
        """Close the file (later changes reopen it)."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                log.error("could not close %s: %s", self.path, exc)
            self._file = None


def read_gate_changes(run_dir: Path) -> tuple[list[dict[str, Any]], int]:
    """Read the gate changes recorded in ``run_dir/events.jsonl``.

    Args:
        run_dir: the run directory.

    Returns:
        ``(changes, dropped)``: ``{t, gate, old, new, reason}`` dicts in recording order (none
        when the file does not exist), and how many lines could not be decoded (a torn last
        line after a crash, typically). Lines of other events or versions are skipped.
    """
    try:
        data = (run_dir / EVENTS_JSONL).read_bytes()
    except FileNotFoundError:
        return [], 0
    except OSError as exc:
        log.error("could not read %s: %s", run_dir / EVENTS_JSONL, exc)
        return [], 1
    changes: list[dict[str, Any]] = []
    dropped = 0
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")  # strict: a damaged byte is a damaged line
        except UnicodeDecodeError:
            dropped += 1
            continue
        try:
            obj = json.loads(line)
            if obj.get("event") != "gate" or obj.get("v") != EVENTS_VERSION:
                continue
            if not math.isfinite(float(obj["t"])):
                raise ValueError("time is not finite")
            changes.append(
                {
                    "t": float(obj["t"]),
                    "gate": str(obj["gate"]),
                    "old": str(obj["old"]),
                    "new": str(obj["new"]),
                    "reason": str(obj.get("reason", "")),
                }
            )
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            dropped += 1
    return changes, dropped
