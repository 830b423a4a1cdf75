"""The report's verdict rule, which intervals it shows, and what stop_when saved (issue 11)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from perfmon.engine.report import _inference, _stop_when
from perfmon.engine.report_md import _stop_when_lines


def _data(inference: str, sets: list[dict[str, Any]], rows: list[dict[str, Any]]) -> Any:
    manifest = {"campaign": {"name": "c", "stats": {"inference": inference}, "sets": sets}}
    return SimpleNamespace(manifest=manifest, sessions=rows)


def _rows(set_name: str, pairs: int, wall: float = 2.0) -> list[dict[str, Any]]:
    return [
        {
            "set_name": set_name,
            "workload": "w",
            "params": {},
            "variant": v,
            "warmup": False,
            "wall_s": wall,
            "start_t": 10.0 * i,
            "end_t": 10.0 * i + wall,
        }
        for i in range(pairs)
        for v in ("baseline", "candidate")
    ]


SETS = [
    {"name": "golden", "sessions": 20, "stop_when": "planned"},
    {"name": "canary", "sessions": 120, "stop_when": "decided"},
]


def test_stop_when_savings_are_counted_from_the_recording() -> None:
    data = _data("anytime", SETS, _rows("golden", 20) + _rows("canary", 14, wall=3.0))
    (entry,) = _stop_when(data)
    assert entry == {
        "set": "canary",
        "ran": 28,
        "planned": 240,
        "sessions_saved": 212,
        "seconds_saved": 636.0,
    }
    (line, _) = _stop_when_lines([entry])
    assert "28 of 240 planned measured sessions, 212 saved, about 0:10:36" in line


def test_the_report_says_which_intervals_hold() -> None:
    rows = _rows("golden", 20) + _rows("canary", 14)
    assert _inference(_data("anytime", SETS, rows))["valid"]
    fixed = _inference(_data("fixed", SETS, rows))
    assert not fixed["valid"] and "canary (28 of 240)" in fixed["line"]
    full = _inference(_data("fixed", SETS, _rows("golden", 20) + _rows("canary", 120)))
    assert full["valid"] and "every set reached" in full["line"]
