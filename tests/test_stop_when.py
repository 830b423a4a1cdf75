"""``stop_when = "decided"`` (issue 11, point 3): a set ends once every gate on it is decided."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfmon.core.campaign import CampaignError, parse_campaign
from perfmon.core.model import GateResult, GateState
from perfmon.core.schedule import Scheduler, set_decided

CAMPAIGN = """
[campaign]
name = "s"
[[workload]]
name = "w"
command = ["true"]
[variant.baseline]
[variant.candidate]
[set.golden]
sessions = 5
stop_when = "decided"
[set.canary]
sessions = 10
[[gate]]
name = "Perf"
expr = "speedup(session_seconds, baseline, candidate) >= 1.4"
"""


def _gate(per_set: tuple[tuple[str, str, str], ...], reason: str = "") -> GateResult:
    return GateResult(
        "Perf", "speedup(...) >= 1.4", GateState.PENDING, None, 0, reason, per_set=per_set
    )


def test_stop_when_is_parsed_and_checked(tmp_path: Path) -> None:
    c = parse_campaign(CAMPAIGN, tmp_path / "c.toml")
    assert [s.stop_when for s in c.sets] == ["decided", "planned"]
    with pytest.raises(CampaignError, match="stop_when"):
        parse_campaign(CAMPAIGN.replace('"decided"', '"bored"'), tmp_path / "c.toml")


def test_a_set_is_decided_when_every_gate_on_it_is() -> None:
    golden_pass = _gate((("golden", "pass", "6.2 [5.7, 19]"), ("canary", "not started", "")))
    assert set_decided([golden_pass], "golden")
    assert not set_decided([golden_pass], "canary")
    assert not set_decided([golden_pass], "other")  # no state for it: not decided
    unsure = _gate((("golden", "inconclusive", "1.3 [1.1, 1.6]"),))
    assert not set_decided([golden_pass, unsure], "golden")
    provisional = _gate((("golden", "pass", "2"),), reason="..., provisional until the planned n")
    assert not set_decided([provisional], "golden")
    pooled = GateResult("RAM", "max(x) < 1", GateState.PASS, 0.5, 10, "max = 0.5")
    assert set_decided([golden_pass, pooled], "golden")
    assert not set_decided([], "golden")


def test_a_set_judged_per_host_is_decided_once_every_host_is() -> None:
    both = _gate((("golden @ a", "pass", "2x"), ("golden @ b", "fail", "0.6x")))
    assert set_decided([both], "golden")
    one_open = _gate((("golden @ a", "pass", "2x"), ("golden @ b", "inconclusive", "1.1x")))
    assert not set_decided([one_open], "golden")
    other_set = _gate((("golden @ a", "pass", "2x"), ("canary @ a", "pending", "")))
    assert set_decided([other_set], "golden") and not set_decided([other_set], "canary")
    assert not set_decided([both], "gold")  # a set named by a prefix of another is not it


def test_ending_a_set_skips_its_sessions_and_starts_the_next(tmp_path: Path) -> None:
    c = parse_campaign(CAMPAIGN, tmp_path / "c.toml")
    sched = Scheduler(c, "python")
    first = [sched.next_session() for _ in range(4)]
    assert {s.set_name for s in first if s} == {"golden"}
    sched.end_set("golden")
    rest = []
    while (spec := sched.next_session()) is not None:
        rest.append(spec)
    assert {s.set_name for s in rest} == {"canary"}
    assert len(rest) == 20
    assert sched.ended == {"golden": 4}  # of 8 planned: 4 saved
