"""The probe protocol decoder and encoder (perfmon.core.protocol), against docs/protocol.md."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmon.core.model import MetricKind, Sample
from perfmon.core.protocol import (
    MAX_LINE,
    Decoder,
    encode_header,
    encode_sample,
    encode_type,
)

NOW = 1000.0


def decode(data: bytes, session: int = 7) -> tuple[list[Sample], Decoder]:
    dec = Decoder(session)
    out = dec.feed(data, NOW)
    out += dec.close(NOW)
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
    a.feed(b"# TYPE n_total counter\n", NOW)
    assert b.feed(b"n_total 1\n", NOW)[0].kind is MetricKind.GAUGE
    assert a.feed(b"n_total 1\n", NOW)[0].kind is MetricKind.COUNTER


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
    out = dec.feed(b"ok_a 1\nzz", NOW)
    for _ in range(1000):
        out += dec.feed(b"z" * 1000, NOW)
        assert len(dec._buf) <= MAX_LINE
    out += dec.feed(b"z 1\nok_b 2\n", NOW)
    assert [s.metric for s in out] == ["ok_a", "ok_b"]
    assert dec.malformed == 1
    assert dec.last_error == f"line 2: longer than {MAX_LINE} bytes"
    assert dec.lines == 3


def test_unterminated_final_line_decoded_on_close() -> None:
    dec = Decoder(3)
    assert dec.feed(b"a_bytes 5", NOW) == []
    assert dec.close(NOW + 1) == [Sample(NOW + 1, 3, "a_bytes", 5.0)]
    assert dec.close(NOW + 2) == []


def test_partial_line_stamped_when_completed() -> None:
    dec = Decoder(3)
    assert dec.feed(b"a_by", 1.0) == []
    assert dec.feed(b"tes 5\n", 2.0) == [Sample(2.0, 3, "a_bytes", 5.0)]


@pytest.mark.parametrize(
    "header", [b"# PERFMON 2", b"# PERFMON 2.0", b"# PERFMON", b"# PERFMON 1 x"]
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
        out += dec.feed(data[prev:p], NOW)
        prev = p
    out += dec.close(NOW)
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
