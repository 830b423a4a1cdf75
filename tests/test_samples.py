"""The bundled sample workloads: they run alone, speak the probe protocol, and are deterministic.

The scripts are run as perfmon runs them: subprocesses of this interpreter, with cwd = samples/,
and (for the probe tests) a real pipe whose write end is named in ``PERFMON_FD``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from perfmon.core.protocol import Decoder

pytestmark = pytest.mark.slow  # real processes (see README: the fast suite)

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
PIPELINE = "streaming_pipeline.py"
PARQUET = "parquet_io.py"

# Small sizes: a few tenths of a second each on 2 cores.
PIPELINE_SMALL = ["--chunks", "60", "--chunk-size", "32", "--compress-threshold", "12"]
PARQUET_SMALL = ["--rows", "5000", "--repeat", "3", "--row-group-size", "1000"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERFMON_", "PIPELINE_"))}
    env.pop("PARQUET_CODEC", None)
    env.update(extra)
    return env


def run_standalone(script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a sample with no probe channel, as a person would."""
    return subprocess.run(
        [sys.executable, script, *args],
        cwd=SAMPLES,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass
class Channel:
    """What a sample sent over its probe channel."""

    returncode: int
    stdout: str
    kinds: dict[str, str] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    header: list[str] = field(default_factory=list)


def run_with_probe(script: str, *args: str, **env: str) -> Channel:
    """Run a sample with a real probe channel (os.pipe, PERFMON_FD, pass_fds) and parse it.

    The channel is decoded with ``perfmon.core.protocol.Decoder`` (the probe sends binary
    frames); the ``# PERFMON`` version line it starts with is kept as the header.
    """
    r, w = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, script, *args],
            cwd=SAMPLES,
            env=_env(PERFMON_FD=str(w), PERFMON_PROTOCOL="2", PERFMON_SESSION="0", **env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(w,),
            text=True,
        )
    finally:
        os.close(w)
    chunks = []
    with os.fdopen(r, "rb") as reader:
        while data := reader.read(65536):
            chunks.append(data)
    out, _ = proc.communicate(timeout=60)
    channel = Channel(proc.returncode, out)
    data = b"".join(chunks)
    if data.startswith(b"# PERFMON"):
        channel.header.append(data[: data.index(b"\n")].decode("ascii"))
    # The probe sends binary frames (protocol version 2): decode with perfmon's decoder.
    decoder = Decoder(0)
    samples = list(decoder.feed_batch(data, 0.0)) + list(decoder.close_batch(0.0))
    assert decoder.malformed == 0, decoder.last_error
    for sample in samples:
        channel.kinds[sample.metric] = sample.kind.value
        channel.values[sample.metric].append(sample.value)
    return channel


def load_sample(name: str) -> ModuleType:
    """Import a sample script as a module (its probe calls are no-ops without PERFMON_FD)."""
    spec = importlib.util.spec_from_file_location(f"sample_{name}", SAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# --- standalone ------------------------------------------------------------------------------


@pytest.mark.parametrize("script", [PIPELINE, PARQUET])
def test_help(script: str) -> None:
    proc = run_standalone(script, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--seed" in proc.stdout


@pytest.mark.parametrize("impl", ["python", "numpy"])
def test_pipeline_runs_standalone(impl: str) -> None:
    proc = run_standalone(PIPELINE, *PIPELINE_SMALL, PIPELINE_IMPL=impl)
    assert proc.returncode == 0, proc.stderr
    assert f"impl={impl}" in proc.stdout
    assert "60 chunks" in proc.stdout


@pytest.mark.parametrize("codec", ["none", "snappy", "zstd"])
def test_parquet_runs_standalone_and_cleans_up(codec: str, tmp_path: Path) -> None:
    proc = run_standalone(PARQUET, *PARQUET_SMALL, PARQUET_CODEC=codec, TMPDIR=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"parquet_io {codec}")
    assert "3 round trips verified" in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_bad_impl_is_a_usage_error() -> None:
    proc = run_standalone(PIPELINE, *PIPELINE_SMALL, PIPELINE_IMPL="fortran")
    assert proc.returncode == 2
    assert "PIPELINE_IMPL" in proc.stderr


def test_bad_codec_is_a_usage_error() -> None:
    proc = run_standalone(PARQUET, *PARQUET_SMALL, PARQUET_CODEC="zip")
    assert proc.returncode == 2
    assert "PARQUET_CODEC" in proc.stderr


# --- probe channel ---------------------------------------------------------------------------


FEATURE_METRICS = {
    "events": {"events_emitted_total": "counter"},
    "trace": {"causal_trace_bytes": "gauge", "trace_record_seconds": "histogram"},
    "carryover": {"carryover_seconds": "histogram"},
    "experts": {"expert_selection_seconds": "histogram"},
    "compression": {
        "compression_checks_total": "counter",
        "compressions_total": "counter",
        "compression_seconds": "histogram",
    },
}
BASE_METRICS = {
    "event_queue_depth": "gauge",
    "chunks_total": "counter",
    "events_total": "counter",
    "chunk_seconds": "histogram",
    "pipeline_features_enabled": "value",
}


def test_pipeline_metrics_arrive() -> None:
    ch = run_with_probe(PIPELINE, *PIPELINE_SMALL, "--impl", "numpy")
    assert ch.returncode == 0, ch.stdout
    assert ch.header[:1] == ["# PERFMON 2"]
    expected = dict(BASE_METRICS)
    for metrics in FEATURE_METRICS.values():
        expected.update(metrics)
    assert ch.kinds == expected  # every feature is on by default
    assert ch.values["pipeline_features_enabled"] == [5.0]
    assert sum(ch.values["chunks_total"]) == 60
    assert sum(ch.values["events_total"]) == 60 * 32  # full chunks: the consumer waits for them
    assert sum(ch.values["compression_checks_total"]) == 60
    for per_chunk in ("event_queue_depth", "causal_trace_bytes", "chunk_seconds"):
        assert len(ch.values[per_chunk]) == 60
    assert len(ch.values["expert_selection_seconds"]) == 60
    compressions = sum(ch.values["compressions_total"])
    assert compressions == len(ch.values["compression_seconds"]) > 0
    assert f"{int(compressions)} compressions" in ch.stdout
    # The trace only grows, and the timings are positive durations.
    trace = ch.values["causal_trace_bytes"]
    assert trace == sorted(trace) and trace[0] > 0
    assert all(v > 0 for v in ch.values["chunk_seconds"])


@pytest.mark.parametrize("feature", ["none", *FEATURE_METRICS])
def test_each_feature_switch_adds_only_its_own_work(feature: str) -> None:
    features = "carryover,compression" if feature == "compression" else feature
    ch = run_with_probe(PIPELINE, *PIPELINE_SMALL, "--impl", "numpy", PIPELINE_FEATURES=features)
    assert ch.returncode == 0, ch.stdout
    expected = dict(BASE_METRICS)
    if feature == "compression":
        expected.update(FEATURE_METRICS["carryover"])
    expected.update(FEATURE_METRICS.get(feature, {}))
    assert ch.kinds == expected
    assert f"features={features}" in ch.stdout
    assert ch.values["pipeline_features_enabled"] == [
        float(len(features.split(",")) * (feature != "none"))
    ]
    if feature == "events":
        assert sum(ch.values["events_emitted_total"]) == 60 * 32


def test_bad_feature_is_a_usage_error() -> None:
    proc = run_standalone(PIPELINE, *PIPELINE_SMALL, PIPELINE_FEATURES="trace,telepathy")
    assert proc.returncode == 2
    assert "telepathy" in proc.stderr


NON_TIMING = ("causal_trace_bytes", "chunks_total", "events_total")


def _non_timing(ch: Channel) -> dict[str, list[float]]:
    out = {name: ch.values[name] for name in NON_TIMING}
    out["compressions_total"] = [sum(ch.values["compressions_total"])]
    return out


def test_pipeline_work_is_deterministic_for_a_seed() -> None:
    # The queue depth depends on the consumer's real speed; everything the chunks carry does not.
    a = run_with_probe(PIPELINE, *PIPELINE_SMALL, "--seed", "7")
    b = run_with_probe(PIPELINE, *PIPELINE_SMALL, "--seed", "7")
    c = run_with_probe(PIPELINE, *PIPELINE_SMALL, "--seed", "8")
    assert a.returncode == b.returncode == c.returncode == 0
    assert _non_timing(a) == _non_timing(b)
    assert a.values["causal_trace_bytes"] != c.values["causal_trace_bytes"]


def test_pipeline_variants_do_the_same_work() -> None:
    py = run_with_probe(PIPELINE, *PIPELINE_SMALL, "--seed", "3", PIPELINE_IMPL="python")
    np_ = run_with_probe(PIPELINE, *PIPELINE_SMALL, "--seed", "3", PIPELINE_IMPL="numpy")
    assert py.returncode == np_.returncode == 0
    assert "impl=python" in py.stdout and "impl=numpy" in np_.stdout
    assert _non_timing(py) == _non_timing(np_)


# --- the pipeline's pieces, in process -------------------------------------------------------


@pytest.fixture(scope="module")
def sp() -> ModuleType:
    return load_sample("streaming_pipeline")


def _event(eid: int, tokens: tuple[int, ...], ts: float | None = None) -> tuple[object, ...]:
    return (eid, float(eid) if ts is None else ts, 0, tokens)


def test_jaccard_implementations_agree(sp: ModuleType) -> None:
    import numpy as np

    producer = sp.Producer(np.random.default_rng(5), 40.0, 2.0, 64)
    events: list[tuple[object, ...]] = []
    while len(events) < 120:
        events.extend(producer.tick())
    cands, targets = events[:70], events[70:120]
    py = sp.best_jaccard_python(cands, targets)
    vec = sp.best_jaccard_numpy(cands, targets, 64)
    assert py == vec
    # Against a hand computation: {1,2,3} vs {2,3,4} is 2/4; vs {1,2,3} is 1.
    a, b, c = _event(0, (1, 2, 3)), _event(1, (2, 3, 4)), _event(2, (7,))
    assert sp.best_jaccard_python([a, c], [b]) == [0.5, 0.0]
    assert sp.best_jaccard_numpy([a, c], [b], 8) == [0.5, 0.0]
    assert sp.best_jaccard_numpy([a], [b, a], 8) == [1.0]
    assert sp.best_jaccard_numpy([a], [], 8) == [0.0]


def test_select_carry(sp: ModuleType) -> None:
    carry = [_event(0, (1,)), _event(1, (2,))]
    previous = [_event(2, (3,)), _event(3, (4,)), _event(4, (5,))]
    scores = [0.9, 0.1, 0.5, 0.8, 0.6]
    chosen = sp.select_carry(carry, previous, scores, 0.3, 2)
    # event 1 drops (0.1 < 0.3); of the previous chunk the best two (3, then 4) join in order.
    assert [e[0] for e in chosen] == [0, 3, 4]


def test_compress_summarises_clusters(sp: ModuleType) -> None:
    group_a = [_event(i, (1, 2, 3, 9 + i)) for i in range(6)]
    group_b = [_event(10 + i, (40, 41, 42, 50 + i)) for i in range(6)]
    carry = [e for pair in zip(group_a, group_b, strict=True) for e in pair]
    out = sp.compress(carry, 2, 64)
    assert len(out) == 2
    assert {e[3] for e in out} == {(1, 2, 3), (40, 41, 42)}
    assert {e[0] for e in out} == {5, 15}  # each cluster keeps its most recent member's id


def test_causal_trace_links_shared_tokens_within_horizon(sp: ModuleType) -> None:
    trace = sp.CausalTrace(horizon=1.0, max_fanin=8)
    trace.record(_event(0, (1, 2), ts=0.0))
    trace.record(_event(1, (2, 3), ts=0.5))
    trace.record(_event(2, (4,), ts=0.6))
    trace.record(_event(3, (1, 3), ts=1.2))  # event 0 is out of the horizon by now
    assert trace.edges == {0: [], 1: [0], 2: [], 3: [1]}
    assert trace.edge_count == 2
    before = trace.nbytes
    trace.record(_event(4, (2, 3), ts=1.3))
    assert trace.nbytes > before


def test_quickstart_campaign_is_well_formed() -> None:
    with (SAMPLES / "quickstart.toml").open("rb") as f:
        doc = tomllib.load(f)
    scripts = {w["command"][1] for w in doc["workload"]}
    assert scripts == {PIPELINE}
    assert all((SAMPLES / s).is_file() for s in scripts)
    assert set(doc["variant"]) == {"baseline", "monitored"}
    envs = [doc["variant"][v]["env"] for v in ("baseline", "monitored")]
    # one change between the variants: the monitoring features
    assert envs == [{"PIPELINE_FEATURES": "none"}, {"PIPELINE_FEATURES": "all"}]
    from perfmon.core.gates import parse_gate

    for gate in doc["gate"]:
        parse_gate(gate["expr"])
    exprs = " ".join(g["expr"] for g in doc["gate"])
    # the streaming report's watch-limits, all of them
    for limit in (
        'p95(event_queue_depth{variant="monitored"}) < 100',
        "max(causal_trace_bytes) < 50MB",
        "< 0.10",
        'p95(chunk_seconds{variant="monitored"}) < 1ms',
        "p95(expert_selection_seconds) < 10us",
        "regression(chunk_seconds, baseline, monitored) < 5%",
    ):
        assert limit in exprs


def test_quickstart_campaign_loads() -> None:
    from perfmon.core.campaign import load_campaign

    parsed = load_campaign(SAMPLES / "quickstart.toml")
    assert [w.name for w in parsed.workloads] == ["pipeline"]
    assert [v.name for v in parsed.variants] == ["baseline", "monitored"]
    assert [(s.name, s.sessions, s.warmup) for s in parsed.sets] == [("golden", 5, 1)]
    assert len(parsed.gates) == 7


# --- the real-time queue ---------------------------------------------------------------------


def _queue_depths(sp: ModuleType, monkeypatch: pytest.MonkeyPatch, work_s: float) -> list[int]:
    """Run the pipeline in process against 16,000 events/s (one 32-event chunk every 2 ms,
    no bursts), with the consumer's work replaced by a sleep of ``work_s`` per chunk."""
    import time

    monkeypatch.setattr(sp, "pipeline_work", lambda *a: time.sleep(work_s))
    args = sp.parse_args(
        [
            *("--chunks", "120", "--chunk-size", "32", "--rate", "16000", "--burstiness", "1"),
            *("--features", "none"),
        ]
    )
    depths: list[int] = sp.run(args).depths
    return depths


@pytest.mark.quiet  # real-time: a starved consumer falls behind (8,915 once in CI)
def test_a_faster_consumer_drains_the_queue(
    sp: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    depths = _queue_depths(sp, monkeypatch, 0.0002)  # 0.2 ms of work per 2 ms of arrivals
    late = depths[len(depths) // 2 :]
    assert sorted(late)[len(late) // 2] <= 32  # median: at most a chunk's worth behind


@pytest.mark.quiet  # real-time, as above
def test_a_slower_consumer_lets_the_queue_grow(
    sp: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    depths = _queue_depths(sp, monkeypatch, 0.004)  # 4 ms of work per 2 ms of arrivals
    # Each chunk takes 4 ms while 64 events arrive and 32 leave: about +32 per chunk.
    assert depths[-1] > depths[10] + 500
    assert depths[-1] > 1000


def test_expert_router_picks_the_closest_centroids(sp: ModuleType) -> None:
    import numpy as np

    router = sp.ExpertRouter(np.random.default_rng(0), 4, 8, 2)
    router.centroids = np.eye(4, 8)  # expert i holds token i only
    chunk = [_event(0, (2,)), _event(1, (2, 3)), _event(2, (2,))]
    assert router.select(chunk).tolist() == [2, 3]
    assert router.load.tolist() == [0, 0, 1, 1]
    assert router.select([]).tolist() == []


def test_parse_features(sp: ModuleType) -> None:
    assert sp.parse_features("none") == frozenset()
    assert sp.parse_features("all") == frozenset(sp.FEATURES)
    assert sp.parse_features(" trace , experts") == {"trace", "experts"}
    with pytest.raises(ValueError, match="bogus"):
        sp.parse_features("trace,bogus")


# --- Parquet: each setting changes the file ---------------------------------------------------


def _parquet(tmp_path: Path, **env: str) -> Channel:
    return run_with_probe(PARQUET, "--rows", "20000", "--repeat", "1", TMPDIR=str(tmp_path), **env)


BASE_PARQUET = {"PARQUET_CODEC": "snappy", "PARQUET_ROW_GROUP_SIZE": "0", "PARQUET_CDC": "off"}


def test_parquet_codec_changes_the_file_size(tmp_path: Path) -> None:
    snappy = _parquet(tmp_path, **BASE_PARQUET)
    zstd = _parquet(tmp_path, **{**BASE_PARQUET, "PARQUET_CODEC": "zstd"})
    none = _parquet(tmp_path, **{**BASE_PARQUET, "PARQUET_CODEC": "none"})
    sizes = [ch.values["parquet_file_bytes"][0] for ch in (none, snappy, zstd)]
    assert sizes[0] > sizes[1] > sizes[2]
    assert "parquet_io zstd level 3" in zstd.stdout


def test_parquet_level_changes_the_file(tmp_path: Path) -> None:
    zstd = {**BASE_PARQUET, "PARQUET_CODEC": "zstd"}
    l1 = _parquet(tmp_path, **zstd, PARQUET_LEVEL="1")
    l19 = _parquet(tmp_path, **zstd, PARQUET_LEVEL="19")
    assert "level 1," in l1.stdout and "level 19," in l19.stdout
    assert l19.values["parquet_file_bytes"][0] < l1.values["parquet_file_bytes"][0]


def test_parquet_row_group_size_sets_the_row_groups(tmp_path: Path) -> None:
    default = _parquet(tmp_path, **BASE_PARQUET)
    small = _parquet(tmp_path, **{**BASE_PARQUET, "PARQUET_ROW_GROUP_SIZE": "3000"})
    assert default.values["parquet_row_groups"] == [1.0]  # pyarrow's default: 1 Mi rows
    assert small.values["parquet_row_groups"] == [7.0]  # ceil(20000 / 3000)


def test_parquet_cdc_switch_reaches_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pio = load_sample("parquet_io")
    if not pio.cdc_supported():
        pytest.skip("this pyarrow has no content-defined chunking")
    calls: list[dict[str, object]] = []
    real = pio.pq.write_table

    def spy(*a: object, **kw: object) -> None:
        calls.append(kw)
        real(*a, **kw)

    monkeypatch.setattr(pio.pq, "write_table", spy)
    table = pio.build_table(2000, 4, 0)
    for cdc in ("off", "on"):
        args = pio.parse_args(["--cdc", cdc, "--compression", "snappy"])
        args.use_cdc = cdc == "on"
        pio.round_trip(table, tmp_path / f"{cdc}.parquet", args)
    assert "use_content_defined_chunking" not in calls[0]
    assert calls[1]["use_content_defined_chunking"] is True
    # only that setting differs between the two writes
    assert {k: v for k, v in calls[1].items() if k != "use_content_defined_chunking"} == calls[0]
