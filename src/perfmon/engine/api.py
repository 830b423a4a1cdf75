"""What the viewer may ask of the engine about a recorded run: its one door into the engine.

The TUI (``perfmon.tui``) shows snapshots and sends commands; where it reads a run directory
itself (the timeline zoomed in past a snapshot's buckets, gate changes of a run no longer
live) it does so through the functions here and nothing else of the engine (an import-linter
contract in pyproject.toml checks it), so that the engine's internals can change without the
viewer noticing. Live runs are reached through ``perfmon.engine.client`` (the control socket).

Importing this module imports pyarrow (the recorder's format); the viewer imports it only when
it first reads a run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from perfmon.engine.events import read_gate_changes
from perfmon.engine.recorded import Columns
from perfmon.engine.recorder import RunData, read_run

__all__ = ["RunData", "metric_samples", "read_gate_changes", "read_run"]


def metric_samples(run_dir: Path, metric: str) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Every recorded sample of one metric, sorted by time.

    Read batch by batch (each batch validated, damage skipped and counted by ``read_run``);
    only this metric's samples are kept.

    Args:
        run_dir: the run directory.
        metric: the metric name.

    Returns:
        ``(t, value)``: Unix seconds and values in the metric's base unit, as float64 arrays
        of equal length (empty when the metric has no samples).

    Raises:
        FileNotFoundError: if ``run_dir`` is not a directory.
    """
    cols = Columns.from_batches(read_run(run_dir).batches(), {metric})
    return cols.t, cols.value
