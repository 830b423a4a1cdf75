"""A hard snapshot for the tables' fitting (tests/test_table_fit.py, the split SVG snapshots):
the fixed audit of tests/fixed_run.py with long params, sample counts over a thousand and its
metrics split by variant, one variant with a long name."""

from __future__ import annotations

import dataclasses

from fixed_run import fixed_snapshot
from perfmon.core.snapshot import Snapshot


def hard_snapshot() -> Snapshot:
    """The fixed audit with long params, big sample counts and metrics split by variant."""
    base = fixed_snapshot()
    sessions = tuple(
        dataclasses.replace(
            r, samples=1_220 + r.id, params=f"{r.params} heads=16 seq=4096 dtype=bfloat16"
        )
        for r in base.sessions
    )
    split = tuple(
        dataclasses.replace(m, labels=(("variant", v),))
        for m in base.metrics
        for v in ("baseline", "candidate-with-flash-attention")
    )
    return dataclasses.replace(base, sessions=sessions, split_label="variant", split_metrics=split)
