"""The probe protocol, version 2: decoding a session's channel into samples, and encoding.

The wire format is specified in ``docs/protocol.md``; in short, ``\n``-terminated UTF-8 text
lines borrowing Prometheus' text exposition format
(https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format), plus, once the
channel has announced ``# PERFMON 2``, binary frames of raw float64 values::

    # PERFMON 2                          version header; enables binary frames
    # TYPE chunks_total counter          declares a metric's kind for later samples
    event_queue_depth 12                 a sample, stamped on receipt
    chunk_seconds 0.00131 1764000000.25  a sample with its own timestamp (Unix seconds)
    #B chunk_seconds histogram 3         a frame header: 3 values follow as 24 raw bytes
    <3 little-endian IEEE 754 float64>   (stamped on receipt, like a text sample)

A line that does not parse is counted and dropped (``Decoder.malformed``), never raised: the
decoder accepts any bytes in any chunking, and the chunking does not change what it decodes
(except the receipt time given to samples without a timestamp, which is the ``now`` of the
``feed_batch`` call that completes the line or frame).

Decisions where the spec leaves room (all documented here so the encoder can match):

- a line is "longer than 4096 bytes" when its bytes before ``\n`` (``\r`` included) number
  more than ``MAX_LINE``; such a line is counted once, however many feeds it spans, and only
  ``MAX_LINE`` bytes of it are ever buffered;
- a ``# PERFMON ...`` line other than exactly ``# PERFMON 1`` or ``# PERFMON 2`` (version 3,
  ``2.0``, a missing or extra field) poisons the channel wherever it appears: it and every
  later non-blank line are malformed; ``# PERFMON 1`` and ``# PERFMON 2`` are accepted
  anywhere, and the first ``# PERFMON 2`` enables frames for the rest of the channel;
- before ``# PERFMON 2`` a ``#B ...`` line is an ordinary comment (version 1 is unchanged);
- a frame header is exactly ``#B``, name, kind and count separated by single spaces; a header
  whose count is not 1..``MAX_FRAME_VALUES`` in plain ASCII digits (or which is longer than
  ``MAX_LINE``) loses the framing, so it poisons the channel; a header with a good count but a
  bad name or kind skips its payload and counts as one malformed line; a frame declares its
  name's kind as ``# TYPE`` would; each non-finite value in a frame counts as one malformed
  sample; a frame cut short by the end of the channel counts as one malformed line;
- ``# TYPE`` lines with a bad name, an unknown kind or a missing/extra field are malformed;
- numbers are ASCII decimal or exponent floats as Python's ``float`` reads them, minus
  underscores (``1_000`` is malformed, as in Prometheus); NaN and infinities are malformed, in
  the value and in the timestamp;
- comment lines (``#`` but not ``# TYPE``/``# PERFMON``) must still be valid UTF-8;
- field separators are ASCII whitespace (``bytes.split()``: space and tab, and also the
  vertical tab and form feed, which the spec does not mention and no emitter writes).

Decoding returns a ``perfmon.core.batch.SampleBatch`` (columns: ``feed_batch``,
``close_batch``); iterating it gives row ``Sample`` objects where those are handier.

This module is pure: no I/O; NumPy is its only third-party import.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import numpy as np

from perfmon.core.batch import SampleBatch
from perfmon.core.model import METRIC_NAME_RE, MetricKind

PROTOCOL_VERSION = 2
"""The protocol version this module speaks (``PERFMON_PROTOCOL`` in a workload's env)."""

MAX_FRAME_VALUES = 65536
"""Most values one binary frame may carry (512 KiB of payload): bounds what a session's
decoder buffers for a frame in progress."""

MAX_LINE = 4096
"""Longest accepted line in bytes, not counting its ``\\n`` (docs/protocol.md)."""

MAX_METRICS = 65536
"""Most distinct metric names one session may declare with ``# TYPE``; later ones are
malformed. Bounds a session's memory against a runaway emitter."""

MAX_DECLARED_BYTES = 1 << 20
"""Most bytes of distinct metric names one session may declare (``# TYPE`` lines and frame
headers, 1 MiB); later declarations are malformed. With ``MAX_METRICS`` this bounds a
session's declared kinds however long the names (up to ``MAX_LINE`` bytes each)."""

_NAME_CACHE_SIZE = 4096  # distinct names whose validated ``str`` is cached per session
_CACHED_NAME_MAX = 256  # longer names are validated on every use, never cached (memory)
_NAME_RE_B = re.compile(METRIC_NAME_RE.pattern.encode("ascii"))
_KINDS: dict[bytes, MetricKind] = {k.value.encode("ascii"): k for k in MetricKind}
_HASH = 35  # ord("#")
_GAUGE = MetricKind.GAUGE
_isfinite = math.isfinite
_SP = 32  # ord(" ")
_LF = 10  # ord("\n")
_OTHER_SPACE = (b"\t", b"\r", b"\x0b", b"\x0c")  # whitespace bytes.split() also splits on
_EMPTY = SampleBatch.empty()


class _Columns:
    """Samples of one feed, gathered in order: row by row (slow path) or in blocks (fast)."""

    __slots__ = ("_blocks", "_keys", "_pos", "_t", "_v")

    def __init__(self) -> None:
        self._pos: dict[tuple[str, MetricKind], int] = {}
        self._t: list[float] = []
        self._keys: list[int] = []
        self._v: list[float] = []
        self._blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def key(self, entry: tuple[str, MetricKind]) -> int:
        """The key index of a ``(name, kind)`` pair, adding it on first use."""
        i = self._pos.get(entry)
        if i is None:
            i = self._pos[entry] = len(self._pos)
        return i

    def add(self, t: float, entry: tuple[str, MetricKind], value: float) -> None:
        """Add one sample."""
        self._t.append(t)
        self._keys.append(self.key(entry))
        self._v.append(value)

    def _rows_to_block(self) -> None:
        if self._t:
            self._blocks.append(
                (
                    np.asarray(self._t, np.float64),
                    np.asarray(self._keys, np.int32),
                    np.asarray(self._v, np.float64),
                )
            )
            self._t, self._keys, self._v = [], [], []

    def add_block(self, t: np.ndarray, keys: np.ndarray, values: np.ndarray) -> None:
        """Add samples as columns (after every sample added so far)."""
        self._rows_to_block()
        self._blocks.append((t, keys, values))

    def batch(self, session: int) -> SampleBatch:
        """The gathered samples as a batch stamped with ``session``."""
        self._rows_to_block()
        blocks = self._blocks
        if not blocks:
            return _EMPTY
        if len(blocks) == 1:
            t, keys, values = blocks[0]
        else:
            t = np.concatenate([b[0] for b in blocks])
            keys = np.concatenate([b[1] for b in blocks])
            values = np.concatenate([b[2] for b in blocks])
        pairs = list(self._pos)
        return SampleBatch(
            t,
            np.full(len(t), session, np.int64),
            keys,
            values,
            tuple(p[0] for p in pairs),
            tuple(p[1] for p in pairs),
        )


def _number(field: bytes) -> float | None:
    """A protocol number: a finite float literal without ``_`` separators, else None."""
    try:
        value = float(field)
    except ValueError:
        return None
    if not _isfinite(value) or b"_" in field:
        return None
    return value


def _show(field: bytes, limit: int = 40) -> str:
    """A short printable rendering of a bad field for ``last_error``."""
    text = field[:limit].decode("utf-8", "backslashreplace")
    text = text.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    return text + ("..." if len(field) > limit else "")


class Decoder:
    """Incremental decoder for one session's channel.

    Feed it the bytes read from the channel as they come, in any chunking; it returns the
    samples of every line completed by that feed.

    Args:
        session: the session id stamped on every decoded sample.

    Attributes:
        session: the session id.
        malformed: lines dropped so far (bad syntax, over-long, invalid UTF-8, poisoned).
        last_error: why the latest malformed line was dropped, e.g.
            ``'line 17: bad value "abc" for event_queue_depth'``; ``""`` while none was.
        lines: complete lines seen so far (including dropped ones).
    """

    __slots__ = (
        "_buf",
        "_declared_bytes",
        "_frame",
        "_kinds",
        "_names",
        "_need",
        "_payload",
        "_poisoned",
        "_skipping",
        "_v2",
        "last_error",
        "lines",
        "malformed",
        "session",
    )

    def __init__(self, session: int) -> None:
        self.session = session
        self.malformed = 0
        self.last_error = ""
        self.lines = 0
        self._buf = b""  # partial trailing line, at most MAX_LINE bytes
        self._skipping = False  # inside an over-long line already counted
        self._poisoned = False  # a foreign "# PERFMON" header was seen
        self._kinds: dict[str, MetricKind] = {}  # declared kinds by name
        self._declared_bytes = 0  # bytes of the names in _kinds (<= MAX_DECLARED_BYTES)
        self._names: dict[bytes, tuple[str, MetricKind]] = {}  # validated name cache
        self._v2 = False  # "# PERFMON 2" seen: binary frames are recognised
        self._need = 0  # payload bytes still to come for the frame in progress
        self._payload: list[bytes] = []  # payload bytes received so far for that frame
        # the frame in progress: (name, kind) or why it is malformed, and its header's line
        self._frame: tuple[tuple[str, MetricKind] | str, int] = ("", 0)

    @property
    def kinds(self) -> dict[str, MetricKind]:
        """The kinds declared so far with ``# TYPE`` (a copy), by metric name."""
        return dict(self._kinds)

    def feed_batch(self, data: bytes, now: float) -> SampleBatch:
        """Decode the lines completed by ``data`` into columns; buffer a partial trailing line.

        The ingest hot path. A run of complete lines in the canonical form the probe writes
        (``name value``, one space, no comment, no timestamp) is decoded with a handful of
        whole-buffer operations: one NumPy pass checks that spaces and newlines alternate,
        ``bytes.split`` cuts the fields, ``float`` parses the values and one dict lookup per
        sample maps names to keys. Anything else (comments, timestamps, tabs, blank or bad
        lines) goes line by line, with the same result.

        Args:
            data: bytes read from the channel (any length, any split point).
            now: wall-clock receipt time, Unix seconds, stamped on samples without a
                timestamp.

        Returns:
            The samples of the lines completed by this feed, in order (possibly empty).
            Never raises on any input.
        """
        cols = _Columns()
        buf = self._buf
        if (
            self._v2
            or self._need
            or b"PERFMON" in data
            or (buf and (b"PERFMON" in buf or b"PERFMON" in buf[-7:] + data[:7]))
        ):
            self._mixed(data, now, cols)
        else:
            self._text(data, now, cols)
        return cols.batch(self.session)

    def _text(self, data: bytes, now: float, cols: _Columns) -> None:
        """Decode text lines completed by ``data`` into ``cols``; buffer a partial last line.

        Frame headers are not recognised here: ``_mixed`` cuts the stream so that only text
        reaches this method.
        """
        end = data.rfind(b"\n")
        if end < 0:
            if self._skipping:
                return
            buf = self._buf + data
            if len(buf) > MAX_LINE:
                self._too_long(self.lines + 1)
                self._skipping = True
                buf = b""
            self._buf = buf
            return
        body_start = 0
        if self._skipping or self._buf:
            # The first line continues a buffered one (or ends an over-long one).
            first_end = data.index(b"\n")
            if self._skipping:
                self._skipping = False
                self.lines += 1
            else:
                self._decode([self._buf + data[:first_end]], now, cols)
            self._buf = b""
            body_start = first_end + 1
        if body_start <= end:
            body = data[body_start : end + 1] if body_start or end + 1 < len(data) else data
            if not self._fast(body, now, cols):
                self._decode(body[:-1].split(b"\n"), now, cols)
        tail = data[end + 1 :]
        if len(tail) > MAX_LINE:
            self._too_long(self.lines + 1)
            self._skipping = True
        else:
            self._buf = tail

    def _mixed(self, data: bytes, now: float, cols: _Columns) -> None:
        """Decode ``data`` where binary frames may appear (or a version header may enable them).

        Walks the feed: the payload of a frame in progress is collected by its byte count;
        text runs go to ``_text`` cut at the next frame header (``\n#B ``) once frames are
        enabled, or just after the line holding ``PERFMON`` before that, so that a
        ``# PERFMON 2`` header takes effect for the very next byte.
        """
        pos, n = 0, len(data)
        while pos < n:
            if self._need:
                stop = min(n, pos + self._need)
                self._payload.append(data[pos:stop])
                self._need -= stop - pos
                pos = stop
                if not self._need:
                    self._end_frame(now, cols)
                continue
            if self._skipping or self._poisoned:
                if self._poisoned:
                    self._text(data[pos:], now, cols)
                    return
                nl = data.find(b"\n", pos)
                if nl < 0:
                    self._text(data[pos:], now, cols)
                    return
                self._text(data[pos : nl + 1], now, cols)
                pos = nl + 1
                continue
            if self._buf:  # complete the pending partial line first
                nl = data.find(b"\n", pos)
                if nl < 0:
                    if self._v2 and (self._buf + data[pos : pos + 3]).startswith(b"#B "):
                        self._partial_header(data[pos:])
                    else:
                        self._text(data[pos:], now, cols)
                    return
                line, self._buf = self._buf + data[pos:nl], b""
                pos = nl + 1
                if self._v2 and line.startswith(b"#B "):
                    self._start_frame(line)
                else:
                    self._decode([line], now, cols)
                continue
            # At a line start, nothing pending.
            if not self._v2:
                k = data.find(b"PERFMON", pos)
                nl = data.find(b"\n", k) if k >= 0 else -1
                if nl < 0:
                    self._text(data[pos:], now, cols)
                    return
                self._text(data[pos : nl + 1], now, cols)
                pos = nl + 1
                continue
            if data.startswith(b"#B ", pos):
                nl = data.find(b"\n", pos)
                if nl < 0:
                    self._partial_header(data[pos:])
                    return
                self._start_frame(data[pos:nl])
                pos = nl + 1
                continue
            j = data.find(b"\n#B ", pos)
            if j < 0:
                self._text(data[pos:], now, cols)
                return
            self._text(data[pos : j + 1], now, cols)
            pos = j + 1

    def _partial_header(self, part: bytes) -> None:
        """Buffer the start of a frame header line (``part`` continues ``_buf``)."""
        buf = self._buf + part
        if len(buf) > MAX_LINE:
            self._buf = b""
            self._lose_framing(self.lines + 1, f"frame header longer than {MAX_LINE} bytes")
            self._skipping = True
        else:
            self._buf = buf

    def _lose_framing(self, lineno: int, why: str) -> None:
        """A frame header that cannot be read: its payload length is unknown, so poison."""
        self._poisoned = True
        self._bad(lineno, f"{why}; framing lost, the rest of the channel is dropped")

    def _start_frame(self, header: bytes) -> None:
        """Read a frame header line ``#B <name> <kind> <count>`` (without its ``\n``).

        A header whose count cannot be read poisons the channel (the payload's end is
        unknown); one with a bad name or kind but a good count skips its payload and counts the
        frame as one malformed line.
        """
        self.lines += 1
        lineno = self.lines
        parts = header.split(b" ")
        count_b = parts[-1]
        if (
            len(header) > MAX_LINE
            or len(parts) != 4
            or not count_b.isdigit()
            or len(count_b) > 9
            or not 1 <= int(count_b) <= MAX_FRAME_VALUES
        ):
            self._lose_framing(lineno, f'bad frame header "{_show(header)}"')
            return
        name_b, kind_b = parts[1], parts[2]
        entry: tuple[str, MetricKind] | str
        kind = _KINDS.get(kind_b)
        if _NAME_RE_B.match(name_b) is None:
            entry = f'bad metric name "{_show(name_b)}" in frame'
        elif kind is None:
            entry = f'unknown kind "{_show(kind_b)}" for {name_b.decode()} in frame'
        else:
            name = name_b.decode("ascii")
            why = self._declare(name, kind)
            if why:
                entry = why
            else:
                entry = (name, kind)
                if name_b in self._names or self._cacheable(name_b):
                    self._names[name_b] = entry
        self._frame = (entry, lineno)
        self._need = 8 * int(count_b)
        self._payload = []

    def _end_frame(self, now: float, cols: _Columns) -> None:
        """Decode a completed frame's payload: little-endian float64 values, stamped ``now``."""
        entry, lineno = self._frame
        payload = b"".join(self._payload)
        self._payload = []
        if isinstance(entry, str):
            self._bad(lineno, entry)
            return
        values = np.frombuffer(payload, "<f8").astype(np.float64)
        finite = np.isfinite(values)
        if not finite.all():
            bad = int(len(values) - np.count_nonzero(finite))
            self.malformed += bad
            self.last_error = f"line {lineno}: {bad} non-finite value(s) in frame for {entry[0]}"
            values = values[finite]
        m = len(values)
        if m:
            cols.add_block(np.full(m, now), np.full(m, cols.key(entry), np.int32), values)

    def close_batch(self, now: float) -> SampleBatch:
        """Decode a final line left without ``\\n`` when the channel ends.

        Args:
            now: wall-clock time, Unix seconds, for a sample without a timestamp.

        Returns:
            The sample of that last line, if it is one (an empty batch otherwise); a binary
            frame cut short is counted malformed.
        """
        if self._need:
            _, lineno = self._frame
            self._need, self._payload = 0, []
            self._bad(lineno, "frame cut short by the end of the channel")
            return _EMPTY
        if self._skipping:
            self._skipping = False
            self.lines += 1
            return _EMPTY
        buf, self._buf = self._buf, b""
        if not buf:
            return _EMPTY
        cols = _Columns()
        self._decode([buf], now, cols)
        return cols.batch(self.session)

    def _too_long(self, lineno: int) -> None:
        self.malformed += 1
        self.last_error = f"line {lineno}: longer than {MAX_LINE} bytes"

    def _bad(self, lineno: int, why: str) -> None:
        self.malformed += 1
        self.last_error = f"line {lineno}: {why}"

    def _fast(self, body: bytes, now: float, cols: _Columns) -> bool:
        """Decode ``body`` (complete lines, ending with ``\\n``) if it is all canonical.

        Canonical: every line is ``name SP value`` with a valid, cached-or-valid name and a
        finite float value without underscores; no ``#``, tab, CR, VT, FF, blank line, or
        line over ``MAX_LINE``. Returns False, having changed nothing, otherwise.
        """
        if self._poisoned or b"#" in body:
            return False
        for c in _OTHER_SPACE:
            if c in body:
                return False
        raw = np.frombuffer(body, np.uint8)
        seps = np.flatnonzero((raw == _SP) | (raw == _LF))
        kinds = raw[seps]
        n = len(seps) // 2
        if (
            len(seps) != 2 * n
            or seps[0] == 0
            or not (kinds[0::2] == _SP).all()
            or not (kinds[1::2] == _LF).all()
            or np.diff(seps).min(initial=2) < 2
        ):
            return False
        ends = seps[1::2]
        if int(np.diff(ends, prepend=-1).max()) > MAX_LINE + 1:
            return False
        fields = body.split()
        names_b = fields[0::2]
        if b"_" in b" ".join(fields[1::2]):  # float() reads "1_000"; the protocol does not
            return False
        try:
            values = np.fromiter(map(float, fields[1::2]), np.float64, n)
        except ValueError:
            return False
        if not np.isfinite(values).all():
            return False
        cache = self._names
        pos: dict[bytes, int] = {}
        for name_b in set(names_b):
            entry = cache.get(name_b)
            if entry is None:
                if _NAME_RE_B.match(name_b) is None:
                    return False
                name = name_b.decode("ascii")
                entry = (name, self._kinds.get(name, _GAUGE))
                if self._cacheable(name_b):
                    cache[name_b] = entry
            pos[name_b] = cols.key(entry)
        if len(pos) == 1:
            keys = np.full(n, pos[names_b[0]], np.int32)
        else:
            keys = np.fromiter(map(pos.__getitem__, names_b), np.int32, n)
        cols.add_block(np.full(n, now), keys, values)
        self.lines += n
        return True

    def _decode(self, lines: list[bytes], now: float, cols: _Columns) -> None:
        """Decode complete lines (without their ``\\n``) one by one into ``cols``."""
        names = self._names
        lineno = self.lines
        poisoned = self._poisoned
        add = cols.add
        for raw in lines:
            lineno += 1
            if len(raw) > MAX_LINE:
                self._too_long(lineno)
                continue
            parts = raw.split()
            if not parts:
                continue
            first = parts[0]
            if first[0] == _HASH or poisoned:
                self._comment(parts, raw, lineno)
                poisoned = self._poisoned
                continue
            entry = names.get(first)
            if entry is None:
                entry = self._name(first, raw, lineno)
                if entry is None:
                    continue
            n = len(parts)
            if n in (2, 3):
                value = _number(parts[1])
                if value is None:
                    self._reject(lineno, raw, f'bad value "{_show(parts[1])}" for {entry[0]}')
                    continue
                t = now if n == 2 else _number(parts[2])
                if t is None:
                    self._reject(lineno, raw, f'bad timestamp "{_show(parts[2])}" for {entry[0]}')
                    continue
                add(t, entry, value)
            elif n == 1:
                self._reject(lineno, raw, f"no value for {entry[0]}")
            else:
                self._reject(lineno, raw, f"too many fields ({n}) for {entry[0]}")
        self.lines = lineno

    def _reject(self, lineno: int, raw: bytes, why: str) -> None:
        """Count a bad sample line; say "invalid UTF-8" when that is what is wrong."""
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            why = "invalid UTF-8"
        self._bad(lineno, why)

    def _name(self, field: bytes, raw: bytes, lineno: int) -> tuple[str, MetricKind] | None:
        """Validate a metric name not yet cached; cache it. None (and counted) if bad."""
        if _NAME_RE_B.match(field) is None:
            self._reject(lineno, raw, f'bad metric name "{_show(field)}"')
            return None
        name = field.decode("ascii")
        entry = (name, self._kinds.get(name, _GAUGE))
        if self._cacheable(field):
            self._names[field] = entry
        return entry

    def _cacheable(self, name_b: bytes) -> bool:
        """Whether a new name may enter the validated-name cache (bounded in count and size)."""
        return len(name_b) <= _CACHED_NAME_MAX and len(self._names) < _NAME_CACHE_SIZE

    def _declare(self, name: str, kind: MetricKind) -> str:
        """Record a declared kind; "" when done, else why it is refused (the caps)."""
        if name not in self._kinds:
            if len(self._kinds) >= MAX_METRICS:
                return f"more than {MAX_METRICS} metric names declared"
            if self._declared_bytes + len(name) > MAX_DECLARED_BYTES:
                return f"declared metric names exceed {MAX_DECLARED_BYTES} bytes"
            self._declared_bytes += len(name)
        self._kinds[name] = kind
        return ""

    def _comment(self, parts: list[bytes], raw: bytes, lineno: int) -> None:
        """Handle a ``#`` line (or any line of a poisoned channel)."""
        if self._poisoned:
            self._bad(lineno, "channel declared an unsupported protocol version")
            return
        if parts[0] != b"#" or len(parts) < 2:
            self._plain_comment(raw, lineno)
            return
        keyword = parts[1]
        if keyword == b"TYPE":
            if len(parts) != 4:
                self._bad(lineno, "# TYPE needs a name and a kind")
                return
            name_b, kind_b = parts[2], parts[3]
            if _NAME_RE_B.match(name_b) is None:
                self._bad(lineno, f'bad metric name "{_show(name_b)}" in # TYPE')
                return
            kind = _KINDS.get(kind_b)
            if kind is None:
                self._bad(lineno, f'unknown kind "{_show(kind_b)}" for {name_b.decode()}')
                return
            name = name_b.decode("ascii")
            why = self._declare(name, kind)
            if why:
                self._bad(lineno, why)
                return
            if name_b in self._names or self._cacheable(name_b):
                self._names[name_b] = (name, kind)
        elif keyword == b"PERFMON":
            if len(parts) == 3 and parts[2] in (b"1", b"2"):
                if parts[2] == b"2":
                    self._v2 = True
                return
            self._poisoned = True
            self._bad(lineno, f'unsupported protocol header "{_show(raw.strip())}"')
        else:
            self._plain_comment(raw, lineno)

    def _plain_comment(self, raw: bytes, lineno: int) -> None:
        """An ignored comment line: still malformed when it is not UTF-8."""
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            self._bad(lineno, "invalid UTF-8")


def _check_name(name: str) -> None:
    if METRIC_NAME_RE.match(name) is None:
        raise ValueError(f"bad metric name {name!r} (want [a-zA-Z_:][a-zA-Z0-9_:]*)")


def encode_sample(name: str, value: float, timestamp: float | None = None) -> str:
    """Encode one sample as a protocol line.

    Args:
        name: metric name, ``[a-zA-Z_:][a-zA-Z0-9_:]*``, unit as suffix (``chunk_seconds``).
        value: the value in the metric's base unit; must be finite.
        timestamp: Unix seconds, or None to let perfmon stamp the sample on receipt.

    Returns:
        The line, ending with ``"\\n"``, e.g. ``"chunk_seconds 0.00131\\n"``. Floats are written
        with ``repr`` (the shortest text that reads back to the same float).

    Raises:
        ValueError: on a bad name or a non-finite value or timestamp.
    """
    _check_name(name)
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"value of {name} must be finite, got {value!r}")
    if timestamp is None:
        return f"{name} {v!r}\n"
    t = float(timestamp)
    if not math.isfinite(t):
        raise ValueError(f"timestamp of {name} must be finite, got {timestamp!r}")
    return f"{name} {v!r} {t!r}\n"


def encode_type(name: str, kind: MetricKind) -> str:
    """Encode a ``# TYPE`` declaration line.

    Args:
        name: metric name.
        kind: its kind.

    Returns:
        ``"# TYPE <name> <kind>\\n"``.

    Raises:
        ValueError: on a bad name.
    """
    _check_name(name)
    return f"# TYPE {name} {MetricKind(kind).value}\n"


def encode_header() -> str:
    """The version header line, ``"# PERFMON 2\\n"`` (required before any binary frame)."""
    return f"# PERFMON {PROTOCOL_VERSION}\n"


def encode_frame(name: str, kind: MetricKind, values: Iterable[float]) -> bytes:
    """Encode values as binary frames (protocol version 2; send ``encode_header()`` first).

    Args:
        name: metric name, ``[a-zA-Z_:][a-zA-Z0-9_:]*``.
        kind: the metric's kind, declared by the frame for later samples as ``# TYPE`` would.
        values: the values in the metric's base unit; must be finite.

    Returns:
        ``b"#B <name> <kind> <count>\\n"`` followed by ``count`` little-endian IEEE 754
        float64 values, repeated in frames of at most ``MAX_FRAME_VALUES`` values; ``b""`` for
        no values.

    Raises:
        ValueError: on a bad name or a non-finite value.
    """
    _check_name(name)
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, "<f8")
    if not np.isfinite(arr).all():
        raise ValueError(f"values of {name} must be finite")
    kind_s = MetricKind(kind).value
    out = []
    for start in range(0, len(arr), MAX_FRAME_VALUES):
        chunk = arr[start : start + MAX_FRAME_VALUES]
        out.append(f"#B {name} {kind_s} {len(chunk)}\n".encode("ascii") + chunk.tobytes())
    return b"".join(out)
