"""Statistical gate functions: speedup, regression, var/std/cv, slope; live and on recorded data.

Also the campaign keys that configure them and the scheduler's random order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perfmon.core.batch import SampleBatch
from perfmon.core.campaign import CampaignError, SetConfig, parse_campaign
from perfmon.core.datasource import ArrayMetricSource
from perfmon.core.gates import GateSyntaxError, MetricSource, parse_gate
from perfmon.core.live import LiveState
from perfmon.core.model import (
    GateState,
    MetricKind,
    Sample,
    SessionResult,
    SessionSpec,
    SessionStatus,
)
from perfmon.core.schedule import Scheduler
from perfmon.core.stats import StatsOptions, compare

# These tests check the fixed-n methods; tests/test_anytime.py checks the anytime default.
FAST = StatsOptions(resamples=1000, seed=3, inference="fixed")


def _spec(sid: int, variant: str, *, events: str = "128", warmup: bool = False) -> SessionSpec:
    return SessionSpec(
        id=sid,
        workload="tgat",
        variant=variant,
        set_name="golden",
        index=sid,
        warmup=warmup,
        argv=("true",),
        env=(),
        cwd="/tmp",
        timeout_s=None,
        params=(("events", events),),
    )


def _row(spec: SessionSpec, status: str = "ok") -> dict[str, Any]:
    return {
        "id": spec.id,
        "workload": spec.workload,
        "variant": spec.variant,
        "set_name": spec.set_name,
        "params": dict(spec.params),
        "warmup": spec.warmup,
        "status": status,
    }


class Run:
    """The same sessions and samples, fed to a LiveState and to an ArrayMetricSource."""

    def __init__(self) -> None:
        self.specs: list[SessionSpec] = []
        self.samples: list[Sample] = []
        self.status: dict[int, SessionStatus] = {}

    def session(
        self,
        variant: str,
        seconds: float,
        *,
        events: str = "128",
        warmup: bool = False,
        status: SessionStatus = SessionStatus.OK,
        extra: tuple[tuple[str, float, MetricKind], ...] = (),
    ) -> None:
        spec = _spec(len(self.specs), variant, events=events, warmup=warmup)
        self.specs.append(spec)
        self.status[spec.id] = status
        t = float(spec.id)
        self.samples.append(Sample(t, spec.id, "session_seconds", seconds, MetricKind.VALUE))
        for metric, value, kind in extra:
            self.samples.append(Sample(t, spec.id, metric, value, kind))

    def live(self) -> LiveState:
        live = LiveState(run_id="r", campaign="c", run_dir="/r", started_t=0.0)
        for spec in self.specs:
            live.add_session(spec)
        live.add_batch(SampleBatch.from_samples(self.samples))
        for spec in self.specs:
            live.update_session(SessionResult(spec=spec, status=self.status[spec.id]))
        return live

    def recorded(self) -> ArrayMetricSource:
        rows = [_row(s, self.status[s.id].value) for s in self.specs]
        return ArrayMetricSource.from_samples(self.samples, sessions=rows)

    def sources(self) -> list[MetricSource]:
        return [self.live(), self.recorded()]


def _ab(run: Run, a: list[float], b: list[float], **kw: Any) -> None:
    for x, y in zip(a, b, strict=True):
        run.session("baseline", x, **kw)
        run.session("candidate", y, **kw)


BASE = [1.00, 1.02, 0.98, 1.01, 0.99, 1.03, 0.97, 1.00, 1.02, 0.99]
FASTER = [x / 1.5 for x in [1.01, 0.99, 1.00, 1.02, 0.98, 1.00, 1.01, 0.99, 1.03, 0.97]]


def test_speedup_passes_when_the_whole_interval_clears_it() -> None:
    run = Run()
    _ab(run, BASE, FASTER)
    gate = parse_gate("speedup(session_seconds, baseline, candidate) >= 1.4x", stats=FAST)
    expected = compare(BASE, FASTER, FAST)
    for source in run.sources():
        r = gate.evaluate(source, "Perf")
        assert r.state is GateState.PASS, r.reason
        assert r.value == pytest.approx(expected.speedup)
        assert (r.ci_low, r.ci_high) == pytest.approx((expected.speedup_low, expected.speedup_high))
        assert r.n == 20
        assert f"95% ({expected.confidence:.1%}) exact rank CI (Hodges-Lehmann, log)" in r.reason
        assert "Mann-Whitney exact permutation (all 184,756 splits, ties) p < 0.0001" in r.reason
        assert "n = 10/10, provisional until the planned n, limit >= 1.4" in r.reason
        assert r.reason.startswith("speedup = 1.5")  # one group: not named
    fails = parse_gate("speedup(session_seconds, baseline, candidate) >= 2", stats=FAST)
    assert fails.evaluate(run.recorded(), "x").state is GateState.FAIL


def test_straddling_interval_is_inconclusive() -> None:
    run = Run()
    _ab(run, BASE, FASTER)
    c = compare(BASE, FASTER, FAST)
    mid = (c.speedup_low + c.speedup_high) / 2
    gate = parse_gate(f"speedup(session_seconds, baseline, candidate) >= {mid}", stats=FAST)
    for source in run.sources():
        assert gate.evaluate(source, "g").state is GateState.INCONCLUSIVE


def test_regression_is_the_relative_change_with_percent_threshold() -> None:
    run = Run()
    same = [x * 1.005 for x in BASE[::-1]]
    _ab(run, BASE, same)
    gate = parse_gate("regression(session_seconds, baseline, candidate) < 10%", stats=FAST)
    assert gate.threshold == pytest.approx(0.10)
    expected = compare(BASE, same, FAST)
    for source in run.sources():
        r = gate.evaluate(source, "No regression")
        assert r.state is GateState.PASS, r.reason
        assert r.value == pytest.approx(expected.regression)
        assert expected.estimator == "HL ratio"
        assert (r.ci_low, r.ci_high) == pytest.approx(
            (expected.regression_low, expected.regression_high)
        )
    slower = Run()
    _ab(slower, BASE, [x * 1.5 for x in BASE])
    assert gate.evaluate(slower.recorded(), "g").state is GateState.FAIL


def test_pending_until_each_variant_has_enough_sessions_and_no_warmups() -> None:
    run = Run()
    run.session("baseline", 5.0, warmup=True)
    run.session("candidate", 5.0, warmup=True)
    _ab(run, BASE[:2], FASTER[:2])
    run.session("baseline", 9.0, status=SessionStatus.EXIT)  # failed: left out
    gate = parse_gate("speedup(session_seconds, baseline, candidate) >= 1.4", stats=FAST)
    for source in run.sources():
        assert source.session_values("session_seconds", "baseline") == BASE[:2]
        r = gate.evaluate(source, "g")
        assert r.state is GateState.PENDING
        assert "2 of 5 sessions per side (min_sessions), n = 2/2" in r.reason
    empty = Run()
    assert gate.evaluate(empty.live(), "g").state is GateState.PENDING


def test_min_sessions_from_the_campaign_and_unattainable_levels_stay_pending() -> None:
    gate = "speedup(session_seconds, baseline, candidate) >= 1.2"
    run = Run()
    _ab(run, BASE[:4], FASTER[:4])
    four = StatsOptions(min_sessions=4, inference="fixed")
    for source in run.sources():
        assert parse_gate(gate).evaluate(source, "g").state is GateState.PENDING
        r = parse_gate(gate, stats=four).evaluate(source, "g")
        assert r.state is GateState.PASS, r.reason  # 4 vs 4: 97.1% exact rank interval
        assert "95% (97.1%) exact rank CI" in r.reason and "p = 0.029" in r.reason
    three = Run()
    _ab(three, BASE[:3], FASTER[:3])
    for source in three.sources():
        fixed3 = StatsOptions(min_sessions=3, inference="fixed")
        r = parse_gate(gate, stats=fixed3).evaluate(source, "g")
        assert r.state is GateState.PENDING
        assert "n = 3/3: an exact rank interval reaches at most 90.0% confidence" in r.reason
        ninety = StatsOptions(min_sessions=3, confidence=0.9, inference="fixed")
        r = parse_gate(gate, stats=ninety).evaluate(source, "g")
        assert r.state is GateState.PASS and "90% exact rank CI" in r.reason
        assert "p = 0.1," in r.reason  # never below what 3 vs 3 can reach


def test_each_matrix_value_is_judged_and_the_worst_decides() -> None:
    run = Run()
    _ab(run, BASE, FASTER, events="128")  # 1.5x
    _ab(run, BASE, [x * 1.05 for x in BASE], events="1024")  # 0.95x
    gate = parse_gate("speedup(session_seconds, baseline, candidate) >= 1.2", stats=FAST)
    for source in run.sources():
        groups = source.session_groups()
        assert [g.label for g in groups] == ["golden tgat events=128", "golden tgat events=1024"]
        r = gate.evaluate(source, "g")
        assert r.state is GateState.FAIL
        assert r.reason.startswith("golden tgat events=1024: speedup = 0.9")
        assert "(2 groups: 1 pass, 1 fail)" in r.reason
        ev = gate.lhs.evaluate(source, None)
        assert [round(g.value or 0, 2) for g in ev.groups] == [1.5, 0.95]


def test_var_std_cv_across_sessions_per_variant() -> None:
    run = Run()
    lifts = {"baseline": [0.1, 0.3, 0.2, 0.25, 0.2], "candidate": [0.1, 0.9, 0.5, 0.2, 0.4]}
    for b, c in zip(lifts["baseline"], lifts["candidate"], strict=True):
        run.session("baseline", 1.0, extra=(("motif_delta_lift", b, MetricKind.VALUE),))
        run.session("candidate", 1.0, extra=(("motif_delta_lift", c, MetricKind.VALUE),))
    var_c = float(np.var(lifts["candidate"], ddof=1))
    for source in run.sources():
        r = parse_gate("var(motif_delta_lift) < 0.05").evaluate(source, "g")
        assert r.state is GateState.FAIL
        assert r.value == pytest.approx(var_c)
        assert "candidate" in r.reason
        only_base = parse_gate("var(motif_delta_lift, baseline) < 0.05").evaluate(source, "g")
        assert only_base.state is GateState.PASS
        assert only_base.value == pytest.approx(np.var(lifts["baseline"], ddof=1))
        few = parse_gate("var(motif_delta_lift) < 0.05", stats=StatsOptions(min_sessions=6))
        r6 = few.evaluate(source, "g")
        assert r6.state is GateState.PENDING and "5 of 6 sessions (min_sessions)" in r6.reason
        std = parse_gate("std(session_seconds) < 1ms").evaluate(source, "g")
        assert std.state is GateState.PASS and std.value == 0.0
        cv = parse_gate("cv(motif_delta_lift, baseline) < 50%").evaluate(source, "g")
        base = lifts["baseline"]
        assert cv.value == pytest.approx(np.std(base, ddof=1) / np.mean(base))
    with pytest.raises(GateSyntaxError, match="threshold 5ms is time"):
        parse_gate("var(motif_delta_lift) < 5ms")


def test_session_values_by_kind() -> None:
    run = Run()
    run.session(
        "baseline",
        1.0,
        extra=(
            ("queue_depth", 4.0, MetricKind.GAUGE),
            ("queue_depth", 8.0, MetricKind.GAUGE),
            ("chunks_total", 3.0, MetricKind.COUNTER),
            ("chunks_total", 4.0, MetricKind.COUNTER),
            ("sdpa_max_abs_diff", 1e-3, MetricKind.VALUE),
            ("sdpa_max_abs_diff", 2e-5, MetricKind.VALUE),
        ),
    )
    for source in run.sources():
        assert source.session_values("queue_depth", None) == [6.0]
        assert source.session_values("chunks_total", "baseline") == [7.0]
        assert source.session_values("sdpa_max_abs_diff", None) == [2e-5]
        assert source.session_values("queue_depth", "candidate") == []


def test_slope_in_units_per_hour() -> None:
    t = np.arange(0.0, 6 * 3600.0, 60.0)
    rng = np.random.default_rng(0)
    leak = 100e6 + (2 * 2**20 / 3600.0) * t + rng.normal(0, 2e5, t.size)  # 2 MiB/h
    flat = 100e6 + rng.normal(0, 2e5, t.size)
    gate = parse_gate("slope(rss_bytes) < 1MiB/h")
    assert gate.threshold == pytest.approx(2**20 / 3600.0)
    assert gate.limit_text == "< 1 MiB/h (1MiB/h)"
    for values, state in ((leak, GateState.FAIL), (flat, GateState.PASS)):
        samples = [
            Sample(float(a), 0, "rss_bytes", float(v)) for a, v in zip(t, values, strict=True)
        ]
        recorded = ArrayMetricSource.from_samples(samples)
        live = LiveState(run_id="r", campaign="c", run_dir="/r", started_t=0.0)
        live.add_batch(SampleBatch.from_samples(samples))
        for source in (recorded, live):
            r = gate.evaluate(source, "Leak")
            assert r.state is state, r.reason
            assert "MiB/h" in r.reason and "CI over" in r.reason
        if state is GateState.FAIL:
            assert r.value is not None and r.value * 3600 / 2**20 == pytest.approx(2.0, rel=0.05)


def test_slope_bins_long_series_and_needs_points() -> None:
    t = np.arange(100_000.0)
    src = ArrayMetricSource({"rss_bytes": (MetricKind.GAUGE, t, 5.0 * t)})
    ts, vs = src.points("rss_bytes")
    assert len(ts) == len(vs) <= 512
    r = parse_gate("slope(rss_bytes) <= 5B/s").evaluate(src, "g")
    assert r.value == pytest.approx(5.0)
    short = ArrayMetricSource({"rss_bytes": (MetricKind.GAUGE, t[:2], t[:2])})
    assert parse_gate("slope(rss_bytes) < 1MiB/h").evaluate(short, "g").state is GateState.PENDING


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("slope(rss_bytes) < 1MiB", "needs a rate"),
        ("slope(rss_bytes) < 1s/h", "threshold 1s is time"),
        ("speedup(session_seconds, baseline) > 1", "expected ','"),
        ("speedup(session_seconds, a, a) > 1", "two different variants"),
        ("regression(session_seconds, a, b) < 5ms", "is time"),
        ("speedup(session_seconds, a, 3) > 1", "expected a variant name"),
    ],
)
def test_syntax_errors(expr: str, message: str) -> None:
    with pytest.raises(GateSyntaxError, match=message):
        parse_gate(expr)


def test_live_keeps_only_the_metrics_asked_for() -> None:
    live = LiveState(
        run_id="r", campaign="c", run_dir="/r", started_t=0.0, session_metrics={"session_seconds"}
    )
    spec = _spec(0, "baseline")
    live.add_session(spec)
    live.add_batch(
        SampleBatch.from_samples(
            [
                Sample(1.0, 0, "session_seconds", 2.0, MetricKind.VALUE),
                Sample(1.0, 0, "queue_depth", 3.0),
            ]
        )
    )
    live.update_session(SessionResult(spec=spec, status=SessionStatus.OK))
    assert live.session_values("session_seconds", None) == [2.0]
    assert live.session_values("queue_depth", None) == []


# -- campaign keys and the random order ---------------------------------------------------------

CAMPAIGN = """
[campaign]
name = "ab"
confidence = 0.9
test = "welch"
bootstrap_resamples = 2000
bootstrap_seed = 11
bootstrap_method = "BCa"
min_sessions = 4
interval = "bootstrap"

[[workload]]
name = "w"
command = ["true"]
matrix = { n = [1, 2] }

[variant.A]
[variant.B]

[set.golden]
sessions = 4
warmup = 1
order = "random"
seed = 5

[[gate]]
name = "Perf"
expr = "speedup(session_seconds, A, B) >= 1.4"
"""


def test_campaign_stats_keys_reach_the_gates() -> None:
    c = parse_campaign(CAMPAIGN, Path("/camp/ab.toml"))
    expected = StatsOptions(
        confidence=0.9,
        test="welch",
        resamples=2000,
        seed=11,
        method="BCa",
        min_sessions=4,
        interval="bootstrap",
    )
    assert c.stats == expected
    assert c.gates[0].gate.lhs.options == expected  # type: ignore[attr-defined]
    assert c.sets[0] == SetConfig("golden", 4, None, 1, "random", 5)


@pytest.mark.parametrize(
    ("line", "key", "message"),
    [
        ("confidence = 1.5", "campaign.confidence", "must be in [0.5, 1)"),
        ('test = "ks"', "campaign.test", "unknown test"),
        ("bootstrap_resamples = 5", "campaign.bootstrap_resamples", "must be >= 100"),
        ('bootstrap_method = "x"', "campaign.bootstrap_method", "unknown method"),
        ("min_sessions = 2", "campaign.min_sessions", "must be >= 3"),
        ('min_sessions = "5"', "campaign.min_sessions", "expected an integer"),
        ('interval = "bca"', "campaign.interval", "unknown interval"),
    ],
)
def test_campaign_stats_key_errors(line: str, key: str, message: str) -> None:
    text = f'[campaign]\nname = "x"\n{line}\n[[workload]]\nname = "w"\ncommand = ["true"]\n'
    with pytest.raises(CampaignError) as info:
        parse_campaign(text, Path("/camp/x.toml"))
    assert info.value.key == key and info.value.line == 3 and message in info.value.message


def _order(seed: int) -> list[tuple[str, str, bool]]:
    text = CAMPAIGN.replace("seed = 5", f"seed = {seed}")
    s = Scheduler(parse_campaign(text, Path("/camp/ab.toml")), "py")
    out = []
    while (spec := s.next_session()) is not None:
        out.append((spec.variant, dict(spec.params)["n"], spec.warmup))
    return out


def test_random_order_is_seeded_balanced_per_round_and_warmups_first() -> None:
    first = _order(5)
    assert first == _order(5)
    assert first != _order(6)
    assert len(first) == 2 * 2 * 5
    assert all(w for _, _, w in first[:4]) and not any(w for _, _, w in first[4:])
    rounds = [first[i : i + 4] for i in range(0, len(first), 4)]
    for r in rounds:  # each round runs every (variant, value) once
        assert sorted((v, n) for v, n, _ in r) == [("A", "1"), ("A", "2"), ("B", "1"), ("B", "2")]
    assert len({tuple(r) for r in rounds}) > 1  # not the same order every round
