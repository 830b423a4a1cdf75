"""The probe protocol decoder and encoder (perfmon.core.protocol), against docs/protocol.md."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmon.core.model import MetricKind, Sample
from perfmon.core.protocol import (
    MAX_FRAME_VALUES,
    MAX_LINE,
    Decoder,
    encode_frame,
    encode_header,
    encode_sample,
    encode_type,
)

NOW = 1000.0


def decode(data: bytes, session: int = 7) -> tuple[list[Sample], Decoder]:
    dec = Decoder(session)
    out = list(dec.feed_batch(data, NOW))
    out += list(dec.close_batch(NOW))
    return out, dec


def test_valid_lines() -> None:
    out, dec = decode(
        b"# PERFMON 1\n"
        b"event_queue_depth 12\n"
        b"  chunk_seconds\t0.00131   1764000000.25  \n"
        b"\n"
        b"# a comment\n"
        b"neg_ratio -3.5\n"
        b"diff_value 1e-4\r\n"
        b"ns:colon_name +.5\n"
    )
    assert dec.malformed == 0
    assert dec.last_error == ""
    assert out == [
        Sample(NOW, 7, "event_queue_depth", 12.0, MetricKind.GAUGE),
        Sample(1764000000.25, 7, "chunk_seconds", 0.00131, MetricKind.GAUGE),
        Sample(NOW, 7, "neg_ratio", -3.5, MetricKind.GAUGE),
        Sample(NOW, 7, "diff_value", 1e-4, MetricKind.GAUGE),
        Sample(NOW, 7, "ns:colon_name", 0.5, MetricKind.GAUGE),
    ]


def test_type_applies_to_later_samples_only() -> None:
    out, dec = decode(
        b"chunks_total 1\n"
        b"# TYPE chunks_total counter\n"
        b"chunks_total 2\n"
        b"# TYPE lat_seconds histogram\n"
        b"lat_seconds 0.5\n"
        b"# TYPE parity_value value\n"
        b"parity_value 1e-6\n"
        b"# TYPE chunks_total gauge\n"
        b"chunks_total 3\n"
    )
    assert dec.malformed == 0
    assert [(s.metric, s.value, s.kind) for s in out] == [
        ("chunks_total", 1.0, MetricKind.GAUGE),
        ("chunks_total", 2.0, MetricKind.COUNTER),
        ("lat_seconds", 0.5, MetricKind.HISTOGRAM),
        ("parity_value", 1e-6, MetricKind.VALUE),
        ("chunks_total", 3.0, MetricKind.GAUGE),
    ]
    assert dec.kinds == {
        "chunks_total": MetricKind.GAUGE,
        "lat_seconds": MetricKind.HISTOGRAM,
        "parity_value": MetricKind.VALUE,
    }


def test_kinds_are_per_session() -> None:
    a, b = Decoder(1), Decoder(2)
    list(a.feed_batch(b"# TYPE n_total counter\n", NOW))
    assert next(iter(b.feed_batch(b"n_total 1\n", NOW))).kind is MetricKind.GAUGE
    assert next(iter(a.feed_batch(b"n_total 1\n", NOW))).kind is MetricKind.COUNTER


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"event_queue_depth abc", 'line 2: bad value "abc" for event_queue_depth'),
        (b"event_queue_depth NaN", 'bad value "NaN"'),
        (b"event_queue_depth nan", 'bad value "nan"'),
        (b"event_queue_depth inf", 'bad value "inf"'),
        (b"event_queue_depth -Infinity", 'bad value "-Infinity"'),
        (b"event_queue_depth 1_000", 'bad value "1_000"'),
        (b"event_queue_depth 0x10", 'bad value "0x10"'),
        (b"event_queue_depth 1 nan", 'bad timestamp "nan"'),
        (b"event_queue_depth 1 abc", 'bad timestamp "abc"'),
        (b"event_queue_depth 1 2 3", "too many fields (4)"),
        (b"event_queue_depth", "no value for event_queue_depth"),
        (b"9lives 1", 'bad metric name "9lives"'),
        (b"bad-name 1", 'bad metric name "bad-name"'),
        (b"caf\xc3\xa9 1", "bad metric name"),
        (b"x \xff", "invalid UTF-8"),
        (b"# comment \xff\xfe", "invalid UTF-8"),
        (b"# TYPE x", "# TYPE needs a name and a kind"),
        (b"# TYPE x gauge extra", "# TYPE needs a name and a kind"),
        (b"# TYPE x summary", 'unknown kind "summary" for x'),
        (b"# TYPE 1x gauge", 'bad metric name "1x" in # TYPE'),
        (b"a" * (MAX_LINE - 1) + b" 1", f"longer than {MAX_LINE} bytes"),
    ],
)
def test_malformed_lines_are_counted_and_dropped(line: bytes, error: str) -> None:
    out, dec = decode(b"good_one 1\n" + line + b"\ngood_two 2\n")
    assert [s.metric for s in out] == ["good_one", "good_two"]
    assert dec.malformed == 1
    assert error in dec.last_error
    assert dec.last_error.startswith("line 2: ")


def test_line_of_exactly_max_line_bytes_is_accepted() -> None:
    name = b"a" * (MAX_LINE - 2)
    out, dec = decode(name + b" 1\n")
    assert dec.malformed == 0
    assert out[0].metric == name.decode()


def test_over_long_line_counted_once_across_many_feeds_and_not_buffered() -> None:
    dec = Decoder(1)
    out = list(dec.feed_batch(b"ok_a 1\nzz", NOW))
    for _ in range(1000):
        out += list(dec.feed_batch(b"z" * 1000, NOW))
        assert len(dec._buf) <= MAX_LINE
    out += list(dec.feed_batch(b"z 1\nok_b 2\n", NOW))
    assert [s.metric for s in out] == ["ok_a", "ok_b"]
    assert dec.malformed == 1
    assert dec.last_error == f"line 2: longer than {MAX_LINE} bytes"
    assert dec.lines == 3


def test_unterminated_final_line_decoded_on_close() -> None:
    dec = Decoder(3)
    assert list(dec.feed_batch(b"a_bytes 5", NOW)) == []
    assert list(dec.close_batch(NOW + 1)) == [Sample(NOW + 1, 3, "a_bytes", 5.0)]
    assert list(dec.close_batch(NOW + 2)) == []


def test_partial_line_stamped_when_completed() -> None:
    dec = Decoder(3)
    assert list(dec.feed_batch(b"a_by", 1.0)) == []
    assert list(dec.feed_batch(b"tes 5\n", 2.0)) == [Sample(2.0, 3, "a_bytes", 5.0)]


@pytest.mark.parametrize(
    "header", [b"# PERFMON 3", b"# PERFMON 2.0", b"# PERFMON", b"# PERFMON 1 x"]
)
def test_foreign_version_header_poisons_the_channel(header: bytes) -> None:
    out, dec = decode(b"early_one 1\n" + header + b"\nlate_one 1\n\n# TYPE x gauge\nlate_two 2\n")
    assert [s.metric for s in out] == ["early_one"]
    assert dec.malformed == 4  # the header and the three non-blank lines after it
    assert "unsupported protocol version" in dec.last_error


def test_version_1_header_anywhere_is_fine() -> None:
    out, dec = decode(b"# PERFMON 1\na 1\n# PERFMON 1\nb 2\n")
    assert dec.malformed == 0
    assert [s.metric for s in out] == ["a", "b"]


def test_encode_round_trip() -> None:
    text = (
        encode_header()
        + encode_type("chunks_total", MetricKind.COUNTER)
        + encode_sample("chunks_total", 1)
        + encode_sample("chunk_seconds", 0.1 + 0.2, timestamp=1764000000.123456)
        + encode_sample("tiny_value", 5e-324)
    )
    assert text.endswith("\n")
    out, dec = decode(text.encode())
    assert dec.malformed == 0
    assert out == [
        Sample(NOW, 7, "chunks_total", 1.0, MetricKind.COUNTER),
        Sample(1764000000.123456, 7, "chunk_seconds", 0.1 + 0.2),
        Sample(NOW, 7, "tiny_value", 5e-324),
    ]


def test_encode_rejects_what_the_decoder_would_drop() -> None:
    with pytest.raises(ValueError, match="bad metric name"):
        encode_sample("bad name", 1.0)
    with pytest.raises(ValueError, match="finite"):
        encode_sample("x", math.nan)
    with pytest.raises(ValueError, match="finite"):
        encode_sample("x", 1.0, timestamp=math.inf)
    with pytest.raises(ValueError, match="bad metric name"):
        encode_type("1x", MetricKind.GAUGE)
    assert encode_type("x", MetricKind.HISTOGRAM) == "# TYPE x histogram\n"


def _decode_in_chunks(data: bytes, cuts: list[int]) -> tuple[list[Sample], int, str, int]:
    dec = Decoder(1)
    out: list[Sample] = []
    points = sorted({min(c, len(data)) for c in cuts})
    prev = 0
    for p in [*points, len(data)]:
        out += list(dec.feed_batch(data[prev:p], NOW))
        prev = p
    out += list(dec.close_batch(NOW))
    return out, dec.malformed, dec.last_error, dec.lines


_LINE_PARTS = st.sampled_from(
    [
        b"a_bytes 1\n",
        b"# TYPE a_bytes counter\n",
        b"b 2 3\n",
        b"b nan\n",
        b"\n",
        b"\xff\xfe\n",
        b"# PERFMON 2\n",
        b"# PERFMON 2\n",
        b"#B a_bytes gauge 2\n" + struct.pack("<2d", 1.5, -2.0),
        b"#B c counter 1\n" + struct.pack("<d", math.nan),
        b"#B 9bad gauge 1\n\x00\x00\x00\x00\x00\x00\xf0?",
        b"#B a_bytes gauge 0\n",
        b"#B a_bytes gauge 3\n" + b"\n#B " * 6,
        b"x" * 3000,
        b"y" * (MAX_LINE + 1),
        b"  c\t4 ",
        b"\n\n",
    ]
)
_STREAMS = st.one_of(
    st.binary(max_size=3000),
    st.lists(_LINE_PARTS, max_size=12).map(b"".join),
)


@settings(max_examples=300, deadline=None)
@given(data=_STREAMS, cuts=st.lists(st.integers(0, 40000), max_size=20))
def test_any_bytes_never_raise_and_chunking_does_not_matter(data: bytes, cuts: list[int]) -> None:
    whole = _decode_in_chunks(data, [])
    chunked = _decode_in_chunks(data, cuts)
    assert chunked == whole
    bytewise = _decode_in_chunks(data, list(range(len(data))))
    assert bytewise == whole
    for s in whole[0]:
        assert math.isfinite(s.value) and math.isfinite(s.t)


@given(
    name=st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,30}", fullmatch=True),
    value=st.floats(allow_nan=False, allow_infinity=False),
    ts=st.none() | st.floats(allow_nan=False, allow_infinity=False),
)
def test_encoded_samples_decode_exactly(name: str, value: float, ts: float | None) -> None:
    out, dec = decode(encode_sample(name, value, ts).encode())
    assert dec.malformed == 0
    assert out == [Sample(NOW if ts is None else ts, 7, name, value)]


# --- version 2: binary frames ------------------------------------------------------------


def _frame(name: bytes, kind: bytes, *values: float) -> bytes:
    return b"#B %s %s %d\n" % (name, kind, len(values)) + struct.pack(f"<{len(values)}d", *values)


def test_frames_mixed_with_text_lines() -> None:
    data = (
        b"# PERFMON 2\n"
        b"a 1\n"
        + _frame(b"lat_seconds", b"histogram", 0.5, 1e-300, -0.0)
        + b"# TYPE c_total counter\nc_total 2\n"
        + _frame(b"q", b"gauge", 7.0)
        + _frame(b"q", b"gauge", 8.0)
        + b"lat_seconds 3\n"  # the frame declared the kind for later text samples
    )
    out, dec = decode(data)
    assert dec.malformed == 0, dec.last_error
    assert out == [
        Sample(NOW, 7, "a", 1.0),
        Sample(NOW, 7, "lat_seconds", 0.5, MetricKind.HISTOGRAM),
        Sample(NOW, 7, "lat_seconds", 1e-300, MetricKind.HISTOGRAM),
        Sample(NOW, 7, "lat_seconds", -0.0, MetricKind.HISTOGRAM),
        Sample(NOW, 7, "c_total", 2.0, MetricKind.COUNTER),
        Sample(NOW, 7, "q", 7.0),
        Sample(NOW, 7, "q", 8.0),
        Sample(NOW, 7, "lat_seconds", 3.0, MetricKind.HISTOGRAM),
    ]
    assert dec.lines == 8  # header, a, three frame headers, TYPE, c_total, lat_seconds
    assert dec.kinds["lat_seconds"] == MetricKind.HISTOGRAM


def test_payload_bytes_that_look_like_text_are_never_read_as_lines() -> None:
    # 0x0a is "\n", "#B " and "a 1\n" inside a payload: only the count decides where it ends.
    tricky = struct.unpack("<d", b"\n#B a 1\n")[0]
    out, dec = decode(b"# PERFMON 2\n" + _frame(b"x", b"gauge", tricky, tricky) + b"y 2\n")
    assert dec.malformed == 0
    assert [(s.metric, s.value) for s in out] == [("x", tricky), ("x", tricky), ("y", 2.0)]


def test_frame_stamped_when_its_last_byte_arrives() -> None:
    dec = Decoder(1)
    data = b"# PERFMON 2\n" + _frame(b"x", b"gauge", 1.0, 2.0)
    assert list(dec.feed_batch(data[:-3], 1.0)) == []
    assert list(dec.feed_batch(data[-3:], 2.0)) == [
        Sample(2.0, 1, "x", 1.0),
        Sample(2.0, 1, "x", 2.0),
    ]


def test_frames_only_after_version_2_header() -> None:
    # Version 1 is unchanged: without "# PERFMON 2" a "#B" line is a comment.
    out, dec = decode(b"#B x gauge 1\nabc 1\n")
    assert dec.malformed == 0
    assert out == [Sample(NOW, 7, "abc", 1.0)]


def test_non_finite_values_in_a_frame_are_counted_and_dropped() -> None:
    out, dec = decode(b"# PERFMON 2\n" + _frame(b"x", b"gauge", 1.0, math.nan, math.inf, 2.0))
    assert [s.value for s in out] == [1.0, 2.0]
    assert dec.malformed == 2
    assert dec.last_error == "line 2: 2 non-finite value(s) in frame for x"


@pytest.mark.parametrize(
    ("name", "kind", "why"),
    [(b"9x", b"gauge", 'bad metric name "9x"'), (b"x", b"summary", 'unknown kind "summary"')],
)
def test_frame_with_bad_name_or_kind_skips_its_payload(name: bytes, kind: bytes, why: str) -> None:
    out, dec = decode(b"# PERFMON 2\n" + _frame(name, kind, 1.0, 2.0) + b"ok 3\n")
    assert out == [Sample(NOW, 7, "ok", 3.0)]
    assert dec.malformed == 1
    assert why in dec.last_error


@pytest.mark.parametrize(
    "header",
    [
        b"#B x gauge 0",
        b"#B x gauge -1",
        b"#B x gauge 1.0",
        b"#B x gauge",
        b"#B x gauge 1 2",
        b"#B  x gauge 1",
        b"#B x gauge 1\r",
        b"#B x gauge %d" % (MAX_FRAME_VALUES + 1),
        b"#B x gauge 99999999999999999999",
    ],
)
def test_unreadable_frame_count_poisons_the_channel(header: bytes) -> None:
    out, dec = decode(b"# PERFMON 2\na 1\n" + header + b"\n" + b"b 2\nc 3\n")
    assert [s.metric for s in out] == ["a"]
    assert dec.malformed == 3  # the header and every later line
    assert "framing lost" in dec.last_error or "unsupported protocol" in dec.last_error


def test_frame_cut_short_by_the_end_of_the_channel() -> None:
    dec = Decoder(1)
    assert list(dec.feed_batch(b"# PERFMON 2\n" + _frame(b"x", b"gauge", 1.0, 2.0)[:-1], NOW)) == []
    assert list(dec.close_batch(NOW)) == []
    assert dec.malformed == 1
    assert dec.last_error == "line 2: frame cut short by the end of the channel"


def test_over_long_frame_header_poisons_without_buffering_it() -> None:
    dec = Decoder(1)
    list(dec.feed_batch(b"# PERFMON 2\n#B ", NOW))
    for _ in range(10):
        list(dec.feed_batch(b"x" * 1000, NOW))
        assert len(dec._buf) <= MAX_LINE
    assert dec.malformed == 1
    assert dec.last_error == (
        f"line 2: frame header longer than {MAX_LINE} bytes; framing lost, "
        "the rest of the channel is dropped"
    )
    assert list(dec.feed_batch(b" gauge 1\n" + b"\x00" * 8 + b"\nok 1\n", NOW)) == []
    assert dec.malformed == 3  # the payload's line and "ok 1": the channel is poisoned


def test_encode_frame_round_trip_and_split() -> None:
    values = [float(i) * 0.37 for i in range(MAX_FRAME_VALUES + 5)]
    data = encode_header().encode() + encode_frame("x_bytes", MetricKind.COUNTER, values)
    assert data.count(b"#B x_bytes counter ") == 2
    out, dec = decode(data)
    assert dec.malformed == 0
    assert [s.value for s in out] == values
    assert {s.kind for s in out} == {MetricKind.COUNTER}
    assert encode_frame("x", MetricKind.GAUGE, []) == b""
    with pytest.raises(ValueError, match="finite"):
        encode_frame("x", MetricKind.GAUGE, [1.0, math.nan])
    with pytest.raises(ValueError, match="bad metric name"):
        encode_frame("x y", MetricKind.GAUGE, [1.0])


@settings(max_examples=200, deadline=None)
@given(
    frames=st.lists(
        st.tuples(
            st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,12}", fullmatch=True),
            st.sampled_from(list(MetricKind)),
            st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=20),
        ),
        max_size=6,
    ),
    texts=st.lists(st.sampled_from([b"t_a 1\n", b"# c\n", b"t_b 2 3\n", b"\n"]), max_size=6),
    cuts=st.lists(st.integers(0, 3000), max_size=10),
)
def test_frames_and_text_decode_the_same_in_any_chunking(
    frames: list[tuple[str, MetricKind, list[float]]], texts: list[bytes], cuts: list[int]
) -> None:
    data = encode_header().encode()
    expected: list[tuple[str, float]] = []
    for i in range(max(len(frames), len(texts))):
        if i < len(texts):
            data += texts[i]
            if texts[i].startswith(b"t_"):
                name, value, *_ts = texts[i].split()
                expected.append((name.decode(), float(value)))
        if i < len(frames):
            name_s, kind, values = frames[i]
            data += encode_frame(name_s, kind, values)
            expected += [(name_s, v) for v in values]
    out, malformed, _, _ = _decode_in_chunks(data, cuts)
    assert malformed == 0
    assert [(s.metric, s.value) for s in out] == expected


def test_declared_names_are_bounded_in_bytes_and_long_names_are_not_cached() -> None:
    from perfmon.core.protocol import _CACHED_NAME_MAX, MAX_DECLARED_BYTES, Decoder

    d = Decoder(0)
    name_len = 4000
    per = name_len + 1
    n = MAX_DECLARED_BYTES // name_len + 5
    data = b"".join(
        b"# TYPE " + f"{i:05d}".encode().join([b"m", b"x" * (name_len - 6)]) + b" counter\n"
        for i in range(n)
    )
    list(d.feed_batch(data, 1.0))
    assert len(d.kinds) == MAX_DECLARED_BYTES // name_len
    assert d.malformed == n - len(d.kinds)
    assert "exceed" in d.last_error
    assert sum(map(len, d.kinds)) <= MAX_DECLARED_BYTES < per * n
    # Samples of a long name still decode (validated each time), but are not cached.
    long_name = "y" * (_CACHED_NAME_MAX + 1)
    got = list(d.feed_batch(f"{long_name} 1\n{long_name} 2\n".encode(), 2.0))
    assert [s.value for s in got] == [1.0, 2.0]
    assert all(len(k) <= _CACHED_NAME_MAX for k in d._names)
