"""Typed snapshots (issue 12, point 6): the run-side state is typed fields, the format version
is 2, and version 1 snapshots (with their untyped ``extra`` dict) still decode."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from perfmon.core.snapshot import (
    SNAPSHOT_VERSION,
    GateChange,
    GateEvaluationStats,
    NoiseCounts,
    ProfileEntry,
    Snapshot,
)

PROFILE = {
    "name": "s0007-p01",
    "session": 7,
    "workload": "tgat",
    "variant": "candidate",
    "params": "events=512",
    "set_name": "golden",
    "started_t": 100.0,
    "seconds": 5.0,
    "rate_hz": 100,
    "nonblocking": True,
    "reason": "on demand",
    "status": "ok",
    "samples": 480,
    "errors": 0,
    "message": "480 samples",
    "pyspy_cpu_s": 0.25,
}
CHANGE = {"t": 120.0, "gate": "Parity", "old": "pending", "new": "pass", "reason": "max = 0"}


def _snapshot(**fields: Any) -> Snapshot:
    return Snapshot(SNAPSHOT_VERSION, "r", "c", "/r", "running", 0.0, 1.0, 4, 2, 10, 0, **fields)


def _wire(snap: Snapshot) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(snap.to_dict()))
    return out


def test_the_version_is_bumped() -> None:
    assert SNAPSHOT_VERSION == 3
    assert "extra" not in {f.name for f in dataclasses.fields(Snapshot)}


def test_typed_fields_round_trip_through_json() -> None:
    snap = _snapshot(
        profiles=(ProfileEntry.from_dict(PROFILE),),
        profiling=(7, 9),
        noise=NoiseCounts(measured=4, busy=1, repeated=1, limit=0.1, unavailable=0),
        disk_bytes=3 * 2**20,
        gate_changes=(GateChange.from_dict(CHANGE),),
        gate_evaluation=GateEvaluationStats(3, 12, 0.01, 0.05),
    )
    back = Snapshot.from_dict(_wire(snap))
    assert back == snap
    assert back.profiles[0].to_dict() == PROFILE
    assert back.gate_changes is not None and back.gate_changes[0].to_dict() == CHANGE


def test_defaults_say_what_is_not_known() -> None:
    back = Snapshot.from_dict(_wire(_snapshot()))
    assert back.profiles == () and back.profiling == ()
    assert back.noise is None and back.disk_bytes is None and back.gate_evaluation is None
    assert back.gate_changes is None  # not carried: a viewer reads events.jsonl
    assert Snapshot.from_dict(_wire(_snapshot(gate_changes=()))).gate_changes == ()


def test_version_2_snapshots_still_decode_without_groups() -> None:
    v2 = _wire(_snapshot())
    v2["version"] = 2
    for key in [k for k in v2 if k.startswith("group_")]:
        del v2[key]  # version 2 has no group fields
    snap = Snapshot.from_dict(v2)
    assert snap.version == SNAPSHOT_VERSION
    assert (snap.group_metrics, snap.group_since_t, snap.group_rows_max) == ((), 0.0, 0)


def test_version_1_snapshots_still_decode() -> None:
    v1 = _wire(_snapshot())
    for key in ("profiles", "profiling", "noise", "disk_bytes", "gate_changes", "gate_evaluation"):
        del v1[key]
    v1["version"] = 1
    v1["extra"] = {
        "profiles": [{**PROFILE, "added_later": 1}],  # keys it does not know are dropped
        "profiling": [7],
        "noise": {"measured": 4, "busy": 3, "repeated": 0},
        "disk_bytes": 1024,
        "gate_changes": [CHANGE],
        "gate_evaluation": {"evaluations": 2, "gate_evaluations": 6, "last_s": 0.1, "busy_s": 0.2},
        "something_else": "ignored",
    }
    snap = Snapshot.from_dict(v1)
    assert snap.version == SNAPSHOT_VERSION
    assert snap.profiles == (ProfileEntry.from_dict(PROFILE),)
    assert snap.profiling == (7,)
    assert snap.noise == NoiseCounts(measured=4, busy=3, repeated=0)
    assert snap.disk_bytes == 1024
    assert snap.gate_changes == (GateChange.from_dict(CHANGE),)
    assert snap.gate_evaluation == GateEvaluationStats(2, 6, 0.1, 0.2)
    del v1["extra"]  # a version 1 snapshot without extra: all unknown
    assert Snapshot.from_dict(v1).noise is None


@pytest.mark.parametrize(
    "bad",
    [
        {"version": 4},
        {"version": None},
        {"version": 1, "extra": ["not", "a", "dict"]},
        {"version": 2, "profiles": [{"name": "x"}]},  # a profile missing its fields
        {"version": 2, "noise": "loud"},
        {"version": 2, "gate_changes": [{"t": 1.0}]},
        {"version": 2, "extra": {}},  # version 2 has no extra
    ],
)
def test_bad_snapshots_raise_a_clear_error(bad: dict[str, Any]) -> None:
    wire = {**_wire(_snapshot()), **bad}
    with pytest.raises(ValueError, match="snapshot"):
        Snapshot.from_dict(wire)
