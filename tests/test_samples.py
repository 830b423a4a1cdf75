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
    samples = decoder.feed(data, 0.0) + decoder.close(0.0)
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


def test_pipeline_metrics_arrive() -> None:
    ch = run_with_probe(PIPELINE, *PIPELINE_SMALL, "--impl", "numpy")
    assert ch.returncode == 0, ch.stdout
    assert ch.header[:1] == ["# PERFMON 2"]
    expected = {
        "event_queue_depth": "gauge",
        "causal_trace_bytes": "gauge",
        "chunks_total": "counter",
        "events_total": "counter",
        "compressions_total": "counter",
        "chunk_seconds": "histogram",
        "carryover_seconds": "histogram",
        "compression_seconds": "histogram",
        "trace_record_seconds": "histogram",
    }
    assert {name: ch.kinds.get(name) for name in expected} == expected
    assert set(ch.values) == set(expected)
    assert sum(ch.values["chunks_total"]) == 60
    for per_chunk in ("event_queue_depth", "causal_trace_bytes", "chunk_seconds"):
        assert len(ch.values[per_chunk]) == 60
    compressions = sum(ch.values["compressions_total"])
    assert compressions == len(ch.values["compression_seconds"]) > 0
    assert f"{int(compressions)} compressions" in ch.stdout
    # The trace only grows, and the timings are positive durations.
    trace = ch.values["causal_trace_bytes"]
    assert trace == sorted(trace) and trace[0] > 0
    assert all(v > 0 for v in ch.values["chunk_seconds"])


def test_parquet_metrics_arrive() -> None:
    ch = run_with_probe(PARQUET, *PARQUET_SMALL, "--compression", "zstd")
    assert ch.returncode == 0, ch.stdout
    assert ch.kinds == {
        "write_seconds": "histogram",
        "read_seconds": "histogram",
        "parquet_write_bytes_per_second": "gauge",
        "parquet_read_bytes_per_second": "gauge",
        "rows_total": "counter",
        "parquet_file_bytes": "value",
        "parquet_compression_ratio": "value",
        "parquet_cdc_enabled": "value",
        "arrow_pool_peak_bytes": "value",
        "parquet_peak_rss_bytes": "value",
    }
    assert ch.values["parquet_cdc_enabled"] == [0.0]  # --cdc defaults to off
    assert len(ch.values["write_seconds"]) == len(ch.values["read_seconds"]) == 3
    assert sum(ch.values["rows_total"]) == 3 * 5000
    [size] = ch.values["parquet_file_bytes"]
    [ratio] = ch.values["parquet_compression_ratio"]
    assert size > 0 and ratio > 1.0  # zstd shrinks the dictionary-encoded table


NON_TIMING = ("event_queue_depth", "causal_trace_bytes", "chunks_total", "events_total")


def _non_timing(ch: Channel) -> dict[str, list[float]]:
    out = {name: ch.values[name] for name in NON_TIMING}
    out["compressions_total"] = [sum(ch.values["compressions_total"])]
    return out


def test_pipeline_is_deterministic_for_a_seed() -> None:
    a = run_with_probe(PIPELINE, *PIPELINE_SMALL, "--seed", "7")
    b = run_with_probe(PIPELINE, *PIPELINE_SMALL, "--seed", "7")
    c = run_with_probe(PIPELINE, *PIPELINE_SMALL, "--seed", "8")
    assert a.returncode == b.returncode == c.returncode == 0
    assert _non_timing(a) == _non_timing(b)
    assert a.values["event_queue_depth"] != c.values["event_queue_depth"]


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
    assert scripts == {PIPELINE, PARQUET}
    assert all((SAMPLES / s).is_file() for s in scripts)
    assert set(doc["variant"]) == {"baseline", "candidate"}
    envs = [doc["variant"][v]["env"] for v in ("baseline", "candidate")]
    assert [e["PIPELINE_IMPL"] for e in envs] == ["python", "numpy"]
    assert [e["PARQUET_CODEC"] for e in envs] == ["snappy", "zstd"]
    from perfmon.core.gates import parse_gate

    for gate in doc["gate"]:
        parse_gate(gate["expr"])


def test_quickstart_campaign_loads() -> None:
    from perfmon.core import campaign

    load = getattr(campaign, "load_campaign", None)
    if load is None:
        pytest.skip("perfmon.core.campaign.load_campaign is not written yet")
    parsed = load(SAMPLES / "quickstart.toml")
    assert [w.name for w in parsed.workloads] == ["pipeline", "parquet"]
    assert [v.name for v in parsed.variants] == ["baseline", "candidate"]
    assert [(s.name, s.sessions, s.warmup) for s in parsed.sets] == [("golden", 3, 1)]
    assert len(parsed.gates) == 5
