"""Columnar ingest: SampleBatch, the decoder's vectorised fast path, LiveState/Recorder batches."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmon.core.batch import SampleBatch
from perfmon.core.live import LiveState
from perfmon.core.model import MetricKind, Sample, SessionSpec
from perfmon.core.protocol import Decoder, _Columns
from perfmon.engine.recorder import Recorder, read_run

NOW = 1000.0


def rows() -> list[Sample]:
    return [
        Sample(1.0, 0, "a_bytes", 1.0),
        Sample(2.0, 1, "n_total", 2.0, MetricKind.COUNTER),
        Sample(3.0, 0, "a_bytes", 3.0),
        Sample(4.0, 2, "n_total", 4.0, MetricKind.GAUGE),  # same name, another kind
    ]


def test_from_samples_keeps_rows_order_and_kinds() -> None:
    b = SampleBatch.from_samples(rows())
    assert len(b) == 4
    assert list(b) == rows()
    assert b[3] == rows()[3]
    assert b[1:3] == rows()[1:3]
    assert b.metrics == ("a_bytes", "n_total", "n_total")
    assert b.kinds == (MetricKind.GAUGE, MetricKind.COUNTER, MetricKind.GAUGE)
    assert b == rows()


def test_concat_merges_key_tables() -> None:
    a = SampleBatch.from_samples(rows()[:2])
    b = SampleBatch.from_samples(rows()[2:])
    c = SampleBatch.concat([a, SampleBatch.empty(), b])
    assert list(c) == rows()
    assert len(c.metrics) == 3
    assert len(SampleBatch.concat([])) == 0


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        SampleBatch(
            np.zeros(2),
            np.zeros(1, np.int64),
            np.zeros(2, np.int32),
            np.zeros(2),
            ("a",),
            (MetricKind.GAUGE,),
        )


def slow(body: bytes) -> tuple[list[Sample], int, int]:
    """Decode complete lines line by line (the reference path)."""
    dec = Decoder(5)
    cols = _Columns()
    dec._decode(body[:-1].split(b"\n"), NOW, cols)
    return list(cols.batch(5)), dec.malformed, dec.lines


def fast(body: bytes) -> tuple[list[Sample], int, int] | None:
    dec = Decoder(5)
    cols = _Columns()
    if not dec._fast(body, NOW, cols):
        return None
    return list(cols.batch(5)), dec.malformed, dec.lines


def test_fast_path_takes_canonical_probe_output() -> None:
    body = b"".join(f"m{i % 3}_seconds {i * 0.37!r}\n".encode() for i in range(1000))
    got = fast(body)
    assert got is not None
    assert got == slow(body)
    assert got[0][999] == Sample(NOW, 5, "m0_seconds", 999 * 0.37)


@pytest.mark.parametrize(
    "body",
    [
        b"a 1\nb\n",  # one field
        b"a 1 2\nb 3\n",  # timestamp
        b"a 1\n\nb 2\n",  # blank line
        b"a  1\n",  # two spaces
        b"a\t1\n",  # tab
        b" a 1\n",  # leading space
        b"a 1 \n",  # trailing space
        b"a 1\r\n",  # CR
        b"a 1_0\n",  # underscore in the value
        b"a inf\n",  # not finite
        b"a nan\n",
        b"9a 1\n",  # bad name
        b"a 1\n# TYPE a counter\n",  # comment
        b"a x\n",  # bad number
        b"x 1 inf\n5\n",  # fields that would pair up across lines
        b"foo\n5\n",
        b"a " + b"1" * 5000 + b"\n",  # over-long line
        "é 1\n".encode(),  # non-ASCII name
    ],
)
def test_fast_path_declines_what_it_cannot_decode_exactly(body: bytes) -> None:
    assert fast(body) is None


_field = st.sampled_from(
    [b"a", b"b_bytes", b"n:x", b"9z", b"1", b"-2.5", b"1e-4", b"1_0", b"inf", b"nan", b"#", b""]
)
_sep = st.sampled_from([b" ", b" ", b" ", b"  ", b"\t"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.tuples(_field, _sep), min_size=0, max_size=4), max_size=12))
def test_fast_path_agrees_with_the_line_by_line_path(
    lines: list[list[tuple[bytes, bytes]]],
) -> None:
    body = b"".join(b"".join(f + s for f, s in line).rstrip(b" ") + b"\n" for line in lines)
    if not body:
        return
    got = fast(body)
    if got is not None:
        assert got == slow(body)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_feed_batch_is_chunking_invariant(data: st.DataObject) -> None:
    text = b"# TYPE c_total counter\nc_total 1\na 2.5\nb_bytes 7 1764000000.5\nbad line here\n" * 20
    text += b"a 3\n" * 50 + b"c_total 2"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    whole = Decoder(1)
    expect = list(whole.feed_batch(text, NOW)) + list(whole.close_batch(NOW))
    dec = Decoder(1)
    got: list[Sample] = []
    prev = 0
    for c in [*cuts, len(text)]:
        got += list(dec.feed_batch(text[prev:c], NOW))
        prev = c
    got += list(dec.close_batch(NOW))
    assert got == expect
    assert (dec.malformed, dec.lines) == (whole.malformed, whole.lines) == (20, 151)


def spec(sid: int, warmup: bool = False) -> SessionSpec:
    return SessionSpec(sid, "w", "v", "golden", sid, warmup, ("x",), (), "/", None)


def test_live_add_batch_counts_sessions_and_skips_warmups() -> None:
    live = LiveState(run_id="r", campaign="c", run_dir="/r", started_t=0.0)
    live.add_session(spec(0, warmup=True))
    live.add_session(spec(1))
    samples = [
        Sample(float(i), i % 3, "x_seconds" if i % 2 else "y_bytes", float(i)) for i in range(300)
    ]
    live.add_batch(SampleBatch.from_samples(samples))
    kept = [s for s in samples if s.session != 0]
    assert live.samples_total == 300
    for name in ("x_seconds", "y_bytes"):
        vals = [s.value for s in kept if s.metric == name]
        assert live.reduce("count", name) == (float(len(vals)), len(vals))
        assert live.reduce("sum", name)[0] == pytest.approx(math.fsum(vals))
        assert live.reduce("max", name)[0] == max(vals)
        assert live.reduce("last", name)[0] == vals[-1]
    rows_ = {r.id: r.samples for r in live.snapshot(now=1.0, state="running").sessions}
    assert rows_ == {0: 100, 1: 100}


def test_recorder_add_batch_round_trips(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    rec.add_batch(SampleBatch.from_samples(rows()[:2]))
    rec.add_batch(SampleBatch.from_samples(rows()[2:]))
    assert rec.buffered == 4
    rec.flush()
    rec.add_batch(SampleBatch.from_samples([Sample(5.0, 3, "z_ratio", 0.5)]))
    rec.close()
    table = read_run(tmp_path).samples.to_pylist()
    got = [
        Sample(r["t"], r["session"], r["metric"], r["value"], MetricKind(r["kind"])) for r in table
    ]
    assert sorted(got, key=lambda s: s.t) == [*rows(), Sample(5.0, 3, "z_ratio", 0.5)]


def test_closed_recording_is_sorted_per_series_and_split_encoded(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    rec = Recorder(tmp_path)
    rec.add_batch(SampleBatch.from_samples(rows()))
    rec.add_batch(SampleBatch.from_samples([Sample(0.5, 0, "a_bytes", 9.0)]))
    rec.close()
    table = read_run(tmp_path).samples.to_pylist()
    keys = [(r["metric"], r["session"], r["t"]) for r in table]
    assert [k[0] for k in keys] == ["a_bytes"] * 3 + ["n_total"] * 2
    assert keys == sorted(keys)
    meta = pq.ParquetFile(tmp_path / "samples.parquet").metadata
    value_col = meta.schema.names.index("value")
    assert "BYTE_STREAM_SPLIT" in meta.row_group(0).column(value_col).encodings
