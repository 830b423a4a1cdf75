"""The recorder: a run's durable, versioned run directory (design.md section 6).

Layout of one run directory::

    runs/<UTC YYYYmmddTHHMMSSZ>-<campaign>/
      manifest.json        {"format": "perfmon-run", "version": 1, "run_id", "campaign",
                            "started_t", "provenance", ...}, written atomically
      sessions.jsonl       one JSON object per finished session, appended and flushed to the
                           OS per line (kill -9 safe), fsynced on the next ``flush`` (see
                           ``session_row``)
      samples/segment-000001.arrows ...
                           Arrow IPC *stream* files, append-only, one record batch per flush
      samples.parquet      on close: every segment compacted (ZSTD level 3), segments deleted
      sessions.parquet     on close: the sessions table as Parquet
      logs/                each session's stdout and stderr (written by the supervisor)
      report.md, report.json

Crash safety: a segment is an Arrow IPC stream (https://arrow.apache.org/docs/format/Columnar.html
#ipc-streaming-format), a schema message followed by self-delimiting record batch messages. A
flush writes whole batches and hands them to the operating system, so after ``kill -9`` a segment
holds every flushed batch, possibly followed by a torn tail (a batch cut short when the process
died mid-write, or when the machine lost power before the page cache reached the disk). ``read_run``
reads each stream batch by batch up to the first error and counts the bytes it dropped; a torn
last line of ``sessions.jsonl`` is counted the same way. Damage is counted, never fatal.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from perfmon.core.batch import SampleBatch
from perfmon.core.model import Sample, SessionResult

RUN_FORMAT = "perfmon-run"
RUN_FORMAT_VERSION = 1
SAMPLES_FORMAT_VERSION = "1"

MANIFEST_NAME = "manifest.json"
SESSIONS_JSONL = "sessions.jsonl"
SESSIONS_PARQUET = "sessions.parquet"
SAMPLES_DIR = "samples"
SAMPLES_PARQUET = "samples.parquet"
SEGMENT_SUFFIX = ".arrows"

PARQUET_COMPRESSION = "zstd"
PARQUET_COMPRESSION_LEVEL = 3
PARQUET_ROW_GROUP_ROWS = 256 * 1024
"""Rows per Parquet row group when compacting (large enough that a 72-hour soak sampled every
250 ms stays at a few hundred row groups)."""

_DICT = pa.dictionary(pa.int32(), pa.string())

SAMPLES_SCHEMA = pa.schema(
    [
        pa.field("t", pa.float64(), nullable=False),
        pa.field("session", pa.int32(), nullable=False),
        pa.field("metric", _DICT, nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("kind", _DICT, nullable=False),
    ],
    metadata={"perfmon.format": "samples", "perfmon.version": SAMPLES_FORMAT_VERSION},
)
"""Schema of the sample segments and of ``samples.parquet``: ``t`` Unix seconds, ``session``
the session id (-1 for machine-wide samples), ``metric`` the name, ``value`` in the metric's base
unit, ``kind`` a ``MetricKind`` value."""

READ_SCHEMA = pa.schema(
    [
        pa.field("t", pa.float64()),
        pa.field("session", pa.int32()),
        pa.field("metric", pa.string()),
        pa.field("value", pa.float64()),
        pa.field("kind", pa.string()),
    ],
    metadata=SAMPLES_SCHEMA.metadata,
)
"""Schema of ``RunData.samples``: as ``SAMPLES_SCHEMA`` with plain string columns, so that
callers can filter and compare without caring about dictionary encoding."""

SESSIONS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64()),
        pa.field("workload", pa.string()),
        pa.field("variant", pa.string()),
        pa.field("set_name", pa.string()),
        pa.field("index", pa.int64()),
        pa.field("warmup", pa.bool_()),
        pa.field("argv", pa.list_(pa.string())),
        pa.field("env", pa.map_(pa.string(), pa.string())),
        pa.field("cwd", pa.string()),
        pa.field("timeout_s", pa.float64()),
        pa.field("params", pa.map_(pa.string(), pa.string())),
        pa.field("status", pa.string()),
        pa.field("status_text", pa.string()),
        pa.field("exit_code", pa.int64()),
        pa.field("signal", pa.int64()),
        pa.field("start_t", pa.float64()),
        pa.field("end_t", pa.float64()),
        pa.field("wall_s", pa.float64()),
        pa.field("cpu_s", pa.float64()),
        pa.field("peak_rss_bytes", pa.int64()),
        pa.field("malformed", pa.int64()),
        pa.field("samples", pa.int64()),
        pa.field("error", pa.string()),
        pa.field("extra", pa.map_(pa.string(), pa.float64())),
        # Where the session ran (issue 16): "" for the daemon's own host.
        pa.field("host", pa.string()),
        pa.field("host_fingerprint", pa.string()),
    ],
    metadata={"perfmon.format": "sessions", "perfmon.version": "1"},
)
"""Schema of ``sessions.parquet``; the keys of a ``sessions.jsonl`` line are the same."""

_MAP_COLUMNS = ("env", "params", "extra")
_RUN_DIR_NAME_RE = re.compile(r"[^A-Za-z0-9._-]+")


def _fsync_dir(path: Path) -> None:
    """fsync a directory so that a rename or a new file in it survives a power loss."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


SHARE_MODES = {"private": (0o700, 0o600), "group": (0o750, 0o640)}
"""``[campaign] share`` -> (directory mode, file mode) of a run directory and what it holds."""


def file_mode_for(directory: Path) -> int:
    """The mode of a new file in ``directory``: its mode without execute bits (0700 -> 0600,
    0750 -> 0640), so a run directory's sharing decides its files' (umask-independent).
    Falls back to 0600 when the directory cannot be examined."""
    try:
        mode = stat.S_IMODE(os.stat(directory).st_mode)
    except OSError:
        return 0o600
    return (mode & 0o666) | 0o600


def open_private(path: Path, flags: int, directory: Path | None = None) -> int:
    """``os.open`` with the mode ``file_mode_for`` gives, set explicitly with ``fchmod`` so the
    umask cannot widen or narrow it; returns the file descriptor.

    Raises:
        OSError: as ``os.open``.
    """
    mode = file_mode_for(directory if directory is not None else path.parent)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        os.fchmod(fd, mode)
    except OSError:
        os.close(fd)
        raise
    return fd


def secure_tree(run_dir: Path) -> int:
    """Give every directory below ``run_dir`` its mode and every file ``file_mode_for`` it.

    Files written by other parts of the engine (logs, profiles, events) are created inside
    the run directory, whose own mode already keeps others out; this pass makes their modes
    match it too. Symbolic links are neither followed nor changed.

    Returns:
        The number of entries whose mode was changed.

    Raises:
        Nothing: entries that vanish or cannot be changed are skipped.
    """
    try:
        dir_mode = stat.S_IMODE(os.lstat(run_dir).st_mode)
    except OSError:
        return 0
    f_mode = (dir_mode & 0o666) | 0o600
    changed = 0
    for root, dirs, files in os.walk(run_dir):
        for name, mode in [(d, dir_mode) for d in dirs] + [(f, f_mode) for f in files]:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode) or stat.S_IMODE(st.st_mode) == mode:
                    continue
                os.chmod(path, mode)
                changed += 1
            except OSError:
                continue
    return changed


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file atomically: a temporary file beside it, fsync, then rename over ``path``.

    A reader sees either the old file or the new one, never a half-written one (POSIX
    ``rename(2)`` is atomic within a file system).

    Args:
        path: the destination file.
        data: its full content.

    Raises:
        OSError: if the file cannot be written.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with open(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically; see ``atomic_write_bytes``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def make_run_dir(runs_dir: Path, campaign_name: str, now: float, *, share: str = "private") -> Path:
    """Create a new, unique run directory ``<runs_dir>/<YYYYmmddTHHMMSSZ>-<campaign>``.

    Args:
        runs_dir: the directory holding run directories; created (with parents) if missing.
        campaign_name: the campaign's name; characters other than letters, digits, ``.``,
            ``_`` and ``-`` are replaced by ``_``.
        now: the run's start, Unix seconds (formatted in UTC).
        share: ``"private"`` (0700, the default) or ``"group"`` (0750); see ``SHARE_MODES``.

    Returns:
        The new directory, its mode set explicitly (whatever the umask). When the name is
        taken, ``-2``, ``-3``, ... is appended.

    Raises:
        OSError: if the directory cannot be created.
        KeyError: for an unknown ``share``.
    """
    dir_mode = SHARE_MODES[share][0]
    runs_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    safe = _RUN_DIR_NAME_RE.sub("_", campaign_name).strip("._") or "campaign"
    base = f"{stamp}-{safe}"
    suffix = 1
    while True:
        path = runs_dir / (base if suffix == 1 else f"{base}-{suffix}")
        try:
            path.mkdir(mode=dir_mode)
        except FileExistsError:
            suffix += 1
            continue
        path.chmod(dir_mode)  # mkdir's mode is masked by the umask
        return path


def session_row(result: SessionResult) -> dict[str, Any]:
    """Flatten a session's spec and result into one JSON-ready row (``SESSIONS_SCHEMA``'s keys).

    ``env``, ``params`` and ``extra`` become JSON objects, ``argv`` a list, ``status`` the
    ``SessionStatus`` value, and ``status_text`` the human form (``"exit 3"``, ``"SIGSEGV"``).
    """
    spec = asdict(result.spec)
    row: dict[str, Any] = {
        "id": spec["id"],
        "workload": spec["workload"],
        "variant": spec["variant"],
        "set_name": spec["set_name"],
        "index": spec["index"],
        "warmup": spec["warmup"],
        "argv": list(spec["argv"]),
        "env": dict(spec["env"]),
        "cwd": spec["cwd"],
        "timeout_s": spec["timeout_s"],
        "params": dict(spec["params"]),
        "status": str(result.status.value),
        "status_text": result.status_text,
        "exit_code": result.exit_code,
        "signal": result.signal,
        "start_t": result.start_t,
        "end_t": result.end_t,
        "wall_s": result.wall_s,
        "cpu_s": result.cpu_s,
        "peak_rss_bytes": result.peak_rss_bytes,
        "malformed": result.malformed,
        "samples": result.samples,
        "error": result.error,
        "extra": {str(k): float(v) for k, v in result.extra.items()},
        "host": result.host,
        "host_fingerprint": result.host_fingerprint,
    }
    return row


def _segment_paths(samples_dir: Path) -> list[Path]:
    """Segment files of a run, in write order (their names count up from 000001)."""
    if not samples_dir.is_dir():
        return []
    return sorted(p for p in samples_dir.iterdir() if p.name.endswith(SEGMENT_SUFFIX))


class Recorder:
    """Writes one run directory: manifest, sessions and samples, durably.

    Samples are buffered in memory as columns by ``add_samples`` and written as one Arrow
    record batch per ``flush`` (the runner flushes at least once a second, which bounds what a
    ``kill -9`` can lose). Methods are thread-safe.

    Args:
        run_dir: an existing run directory (see ``make_run_dir``). If it already holds
            segments (a run being resumed), new segments are numbered after them.
        segment_max_bytes: a segment is closed and a new one started once it exceeds this size.
        segment_max_s: ... or once it has been open this many seconds (monotonic clock), so that
            a slow soak still closes (fsyncs, end-of-stream marker) a segment every hour.
        clock: the monotonic clock (tests inject a fake one).
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        segment_max_bytes: int = 64 << 20,
        segment_max_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_dir = run_dir
        self.samples_dir = run_dir / SAMPLES_DIR
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # the run directory's mode, whatever the umask
            self.samples_dir.chmod(stat.S_IMODE(os.stat(run_dir).st_mode))
        self.segment_max_bytes = segment_max_bytes
        self.segment_max_s = segment_max_s
        self._clock = clock
        self._segment_opened = 0.0
        self._lock = threading.Lock()
        self._batches: list[SampleBatch] = []
        self._buffered = 0
        existing = _segment_paths(self.samples_dir)
        self._segment_no = 0
        for p in existing:
            with contextlib.suppress(ValueError):
                self._segment_no = max(self._segment_no, int(p.stem.rsplit("-", 1)[-1]))
        self._file: BinaryIO | None = None
        self._writer: ipc.RecordBatchStreamWriter | None = None
        self._closed = False
        self._sessions_unsynced = False  # sessions.jsonl has lines not yet fsynced
        self._sessions_fd: int | None = None  # sessions.jsonl, open for appending
        self.samples_written = 0
        """Samples written to segments so far."""

    # -- manifest and sessions -------------------------------------------------------------

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write ``manifest.json`` atomically (tmp file, fsync, rename).

        Args:
            manifest: JSON-serialisable content; ``format`` and ``version`` are filled in with
                ``"perfmon-run"`` and ``1`` when absent.

        Raises:
            TypeError / ValueError: if the manifest is not JSON-serialisable (NaN included).
        """
        content = {"format": RUN_FORMAT, "version": RUN_FORMAT_VERSION, **manifest}
        text = json.dumps(content, indent=2, sort_keys=False, allow_nan=False) + "\n"
        with self._lock:
            atomic_write_text(self.run_dir / MANIFEST_NAME, text)

    def session_finished(self, result: SessionResult) -> None:
        """Append the finished session to ``sessions.jsonl`` (one line, flushed to the OS).

        The line survives a ``kill -9`` of perfmon at once (it is in the page cache); it is
        fsynced by the next ``flush`` (the runner flushes every 0.5 s) or ``close``, so a power
        loss costs at most one flush interval, as for samples. This keeps an fsync (~4 ms) out
        of the gap between one session and the next.

        Raises:
            OSError: if the line cannot be written.
        """
        line = json.dumps(session_row(result), separators=(",", ":"), allow_nan=True) + "\n"
        with self._lock:
            if self._sessions_fd is None:  # kept open: creating/opening a file costs ~1 ms
                self._sessions_fd = os.open(
                    self.run_dir / SESSIONS_JSONL,
                    os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                    0o600,
                )
            data = line.encode("utf-8")
            while data:
                data = data[os.write(self._sessions_fd, data) :]
            self._sessions_unsynced = True

    def _sync_sessions_locked(self, *, close: bool = False) -> None:
        """fsync ``sessions.jsonl`` if lines were appended since the last fsync."""
        fd = self._sessions_fd
        if fd is None:
            return
        if self._sessions_unsynced:
            self._sessions_unsynced = False
            os.fsync(fd)
        if close:
            self._sessions_fd = None
            os.close(fd)

    # -- samples ---------------------------------------------------------------------------

    def add_samples(self, samples: Sequence[Sample]) -> None:
        """Buffer row samples in memory until the next ``flush`` (see ``add_batch``).

        Raises:
            RuntimeError: if the recorder is closed.
        """
        self.add_batch(SampleBatch.from_samples(samples))

    def add_batch(self, batch: SampleBatch) -> None:
        """Buffer a columnar batch of samples until the next ``flush`` (the ingest hot path).

        The batch's arrays are kept as they are (no per-sample work); ``flush`` concatenates
        them into one Arrow record batch whose ``metric`` and ``kind`` columns are
        dictionary-encoded straight from the batch's keys.

        Raises:
            RuntimeError: if the recorder is closed.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("recorder is closed")
            if len(batch):
                self._batches.append(batch)
                self._buffered += len(batch)

    @property
    def buffered(self) -> int:
        """Samples added but not yet flushed."""
        return self._buffered

    def _take_batch(self) -> pa.RecordBatch | None:
        if not self._batches:
            return None
        b = SampleBatch.concat(self._batches)
        self._batches, self._buffered = [], 0
        kind_names = [str(k) for k in b.kinds]
        kind_pos = {k: i for i, k in enumerate(dict.fromkeys(kind_names))}
        kind_of_key = np.fromiter((kind_pos[k] for k in kind_names), np.int32, len(kind_names))
        # Keys are (metric, kind) pairs; the metric column's dictionary holds each name once.
        name_pos = {m: i for i, m in enumerate(dict.fromkeys(b.metrics))}
        name_of_key = np.fromiter((name_pos[m] for m in b.metrics), np.int32, len(b.metrics))
        return pa.record_batch(
            [
                pa.array(b.t, pa.float64()),
                pa.array(b.session.astype(np.int32), pa.int32()),
                pa.DictionaryArray.from_arrays(
                    pa.array(name_of_key[b.key], pa.int32()), pa.array(list(name_pos), pa.string())
                ),
                pa.array(b.value, pa.float64()),
                pa.DictionaryArray.from_arrays(
                    pa.array(kind_of_key[b.key], pa.int32()), pa.array(list(kind_pos), pa.string())
                ),
            ],
            schema=SAMPLES_SCHEMA,
        )

    def _open_segment(self) -> None:
        self._segment_no += 1
        path = self.samples_dir / f"segment-{self._segment_no:06d}{SEGMENT_SUFFIX}"
        fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        self._file = open(fd, "wb")  # noqa: SIM115 - kept open across flushes
        self._writer = ipc.new_stream(self._file, SAMPLES_SCHEMA)
        self._segment_opened = self._clock()
        _fsync_dir(self.samples_dir)

    def _close_segment(self) -> None:
        if self._writer is not None and self._file is not None:
            self._writer.close()  # writes the end-of-stream marker
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        self._writer = None
        self._file = None

    def _flush_locked(self) -> None:
        batch = self._take_batch()
        if batch is None:
            return
        if self._writer is None:
            self._open_segment()
        assert self._writer is not None and self._file is not None
        self._writer.write_batch(batch)
        self._file.flush()  # to the OS: survives kill -9 of this process
        self.samples_written += batch.num_rows
        if (
            self._file.tell() > self.segment_max_bytes
            or self._clock() - self._segment_opened >= self.segment_max_s
        ):
            self._close_segment()

    def disk_bytes(self) -> int:
        """Bytes the run directory takes on disk now (files' sizes, logs and profiles included)."""
        total = 0
        stack = [self.run_dir]
        while stack:
            try:
                entries = list(os.scandir(stack.pop()))
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
        return total

    def flush(self) -> None:
        """Write buffered samples as one record batch to the current segment, flushed to the OS.

        Starts a segment when none is open, and closes the segment (end-of-stream marker and
        fsync) once it exceeds ``segment_max_bytes``. Does nothing when nothing is buffered.

        Raises:
            OSError: if the segment cannot be written.
        """
        with self._lock:
            if self._closed:
                return
            self._flush_locked()
            self._sync_sessions_locked()

    def close(self) -> None:
        """Flush, compact every segment into ``samples.parquet`` and the sessions into
        ``sessions.parquet`` (ZSTD level 3), then delete the segments. Idempotent.

        Torn segment tails (from an earlier crash of a resumed run) are repaired while
        compacting, as ``read_run`` does.

        Raises:
            OSError: if the Parquet files cannot be written (the segments are then kept).
        """
        with self._lock:
            if self._closed:
                return
            self._flush_locked()
            self._sync_sessions_locked(close=True)
            self._close_segment()
            self._closed = True
            segments = _segment_paths(self.samples_dir)
            _compact_samples(segments, self.run_dir / SAMPLES_PARQUET)
            rows, _ = _read_sessions_jsonl(self.run_dir / SESSIONS_JSONL)
            _write_sessions_parquet(rows, self.run_dir / SESSIONS_PARQUET)
            for seg in segments:
                seg.unlink()
            with contextlib.suppress(OSError):
                self.samples_dir.rmdir()
            secure_tree(self.run_dir)
            _fsync_dir(self.run_dir)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- reading ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentRead:
    """What could be read of one segment file.

    Attributes:
        batches: the record batches read intact, in order.
        torn: True when the stream ended in an error (a torn tail) rather than cleanly.
        dropped_bytes: bytes after the last intact message (0 when not torn).
        error: the reader's error message when torn.
    """

    batches: list[pa.RecordBatch]
    torn: bool
    dropped_bytes: int
    error: str = ""


def read_segment(path: Path) -> SegmentRead:
    """Read an Arrow IPC stream segment batch by batch, stopping at the first error.

    A segment that ends exactly after a whole message (an open segment, or one cut at a
    message boundary) is not torn: nothing of it is lost that could be read. A segment whose
    schema message itself is torn yields no batches and counts all its bytes as dropped.

    Args:
        path: the segment file.

    Returns:
        A ``SegmentRead``; never raises for damaged content. An unreadable file counts as torn.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        return SegmentRead([], True, 0, str(exc))
    if not data:
        return SegmentRead([], False, 0)  # created, nothing flushed yet
    source = pa.BufferReader(pa.py_buffer(data))
    try:
        reader = ipc.open_stream(source)
    except (pa.ArrowException, OSError, ValueError) as exc:
        return SegmentRead([], True, len(data), str(exc))
    batches: list[pa.RecordBatch] = []
    good = source.tell()
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            good = source.tell()
            break
        except (pa.ArrowException, OSError, ValueError) as exc:
            return SegmentRead(batches, True, len(data) - good, str(exc))
        batches.append(batch)
        good = source.tell()
    if good < len(data):  # bytes after the end-of-stream marker
        return SegmentRead(batches, True, len(data) - good, "bytes after end of stream")
    return SegmentRead(batches, False, 0)


def _to_read_schema(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    return table.select(READ_SCHEMA.names).cast(READ_SCHEMA)


def _iter_segment_batches(segments: Sequence[Path]) -> Iterator[pa.RecordBatch]:
    for seg in segments:
        yield from read_segment(seg).batches


def _sorted_for_storage(batches: Sequence[pa.RecordBatch]) -> pa.Table:
    """Concatenate batches and sort the rows by (metric, session, t) for compression.

    Sorting puts each series' samples together: the ``metric``, ``session`` and ``kind``
    columns become long runs (run-length encoded to almost nothing) and neighbouring values
    of one series share their exponent and high mantissa bytes, which byte-stream-split
    encoding (Parquet's ``BYTE_STREAM_SPLIT``) lays out for ZSTD to find. Measured with
    ``bench/storage.py``. The sort is stable, so ties keep recording order.
    """
    table = pa.Table.from_batches(batches).unify_dictionaries().combine_chunks()
    if table.num_rows == 0:
        return table
    metric_ids = table.column("metric").chunk(0).indices  # one chunk, one dictionary
    keys = pa.table({"m": metric_ids, "s": table.column("session"), "t": table.column("t")})
    by = [("m", "ascending"), ("s", "ascending"), ("t", "ascending")]
    return table.take(pc.sort_indices(keys, sort_keys=by))


def _compact_samples(segments: Sequence[Path], dest: Path) -> None:
    """Write every intact batch of ``segments`` to ``dest`` as Parquet, atomically.

    Each row group (``PARQUET_ROW_GROUP_ROWS`` rows, in recording order across groups) is
    sorted by (metric, session, t) within itself (see ``_sorted_for_storage``); ``value`` and
    ``t`` use no dictionary, ``value`` uses byte-stream-split encoding.
    """
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with pq.ParquetWriter(
            tmp,
            SAMPLES_SCHEMA,
            compression=PARQUET_COMPRESSION,
            compression_level=PARQUET_COMPRESSION_LEVEL,
            use_dictionary=["session", "metric", "kind"],
            use_byte_stream_split=["value"],
        ) as writer:
            pending: list[pa.RecordBatch] = []
            rows = 0
            for batch in _iter_segment_batches(segments):
                pending.append(batch)
                rows += batch.num_rows
                if rows >= PARQUET_ROW_GROUP_ROWS:
                    writer.write_table(
                        _sorted_for_storage(pending), row_group_size=PARQUET_ROW_GROUP_ROWS
                    )
                    pending, rows = [], 0
            if pending:
                writer.write_table(
                    _sorted_for_storage(pending), row_group_size=PARQUET_ROW_GROUP_ROWS
                )
        with open(tmp, "rb") as f:
            os.fchmod(f.fileno(), file_mode_for(dest.parent))
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _read_sessions_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Read ``sessions.jsonl``: (rows, lines dropped). Undecodable lines are counted, skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    except OSError:
        return [], 1
    rows: list[dict[str, Any]] = []
    dropped = 0
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            dropped += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            dropped += 1
    return rows, dropped


def _write_sessions_parquet(rows: Sequence[dict[str, Any]], dest: Path) -> None:
    """Write the sessions table as Parquet (``SESSIONS_SCHEMA``), atomically."""
    cols: dict[str, list[Any]] = {name: [] for name in SESSIONS_SCHEMA.names}
    for row in rows:
        for name in SESSIONS_SCHEMA.names:
            value = row.get(name)
            if name in _MAP_COLUMNS:
                value = list((value or {}).items())
            cols[name].append(value)
    table = pa.Table.from_pydict(cols, schema=SESSIONS_SCHEMA)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(
            table,
            tmp,
            compression=PARQUET_COMPRESSION,
            compression_level=PARQUET_COMPRESSION_LEVEL,
        )
        with open(tmp, "rb") as f:
            os.fchmod(f.fileno(), file_mode_for(dest.parent))
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _read_sessions_parquet(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    for row in rows:
        for name in _MAP_COLUMNS:
            if isinstance(row.get(name), list):
                row[name] = dict(row[name])
    return rows


@dataclass
class RunData:
    """Everything recorded in one run directory, as read back by ``read_run``.

    Attributes:
        run_dir: the run directory.
        manifest: ``manifest.json``'s content ({} when missing or unreadable).
        sessions: one dict per finished session (``session_row``'s keys), in finishing order.
        samples: a table with ``READ_SCHEMA`` (t float64, session int32, metric string,
            value float64, kind string): in recording order while the run is open; once
            closed, sorted by (metric, session, t) within each Parquet row group.
        repaired_segments: segments whose torn tail was cut off while reading.
        samples_dropped_bytes: bytes of segments dropped by those repairs.
        sessions_dropped_lines: lines of ``sessions.jsonl`` that could not be decoded (a torn
            last line after a crash, typically).
        closed: True when the run was closed (read from ``samples.parquet``).
        problems: one sentence per damaged or unreadable file, for the report.
    """

    run_dir: Path
    manifest: dict[str, Any]
    sessions: list[dict[str, Any]]
    samples: pa.Table
    repaired_segments: int = 0
    samples_dropped_bytes: int = 0
    sessions_dropped_lines: int = 0
    closed: bool = False
    problems: list[str] = field(default_factory=list)


def read_run(run_dir: Path) -> RunData:
    """Read a run directory, closed (Parquet) or open or crashed (segments).

    Never raises for damaged content: torn segment tails are cut off and counted in
    ``repaired_segments`` and ``samples_dropped_bytes``, undecodable session lines in
    ``sessions_dropped_lines``, and every damaged file is named in ``problems``.

    Args:
        run_dir: the run directory.

    Returns:
        The run's ``RunData``.

    Raises:
        FileNotFoundError: if ``run_dir`` is not a directory.
    """
    if not run_dir.is_dir():
        raise FileNotFoundError(f"not a run directory: {run_dir}")
    problems: list[str] = []

    manifest: dict[str, Any] = {}
    manifest_path = run_dir / MANIFEST_NAME
    if manifest_path.exists():
        try:
            loaded = json.loads(manifest_path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                manifest = loaded
            else:
                problems.append(f"{MANIFEST_NAME} is not a JSON object")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            problems.append(f"{MANIFEST_NAME} unreadable: {exc}")
    else:
        problems.append(f"{MANIFEST_NAME} missing")
    if manifest and manifest.get("format") not in (None, RUN_FORMAT):
        problems.append(f"{MANIFEST_NAME} has format {manifest.get('format')!r}")
    elif manifest and manifest.get("version") not in (None, RUN_FORMAT_VERSION):
        problems.append(f"{MANIFEST_NAME} has version {manifest.get('version')!r}")

    jsonl = run_dir / SESSIONS_JSONL
    sessions, dropped_lines = _read_sessions_jsonl(jsonl)
    if dropped_lines:
        problems.append(f"{SESSIONS_JSONL}: {dropped_lines} undecodable line(s) dropped")
    if not jsonl.exists() and (run_dir / SESSIONS_PARQUET).exists():
        try:
            sessions = _read_sessions_parquet(run_dir / SESSIONS_PARQUET)
        except (pa.ArrowException, OSError) as exc:
            problems.append(f"{SESSIONS_PARQUET} unreadable: {exc}")

    samples: pa.Table | None = None
    closed = False
    parquet_path = run_dir / SAMPLES_PARQUET
    if parquet_path.exists():
        try:
            samples = _to_read_schema(pq.read_table(parquet_path))
            closed = True
        except (pa.ArrowException, OSError, KeyError, ValueError) as exc:
            problems.append(f"{SAMPLES_PARQUET} unreadable ({exc}); reading segments instead")
    repaired = 0
    dropped_bytes = 0
    if samples is None:
        tables: list[pa.Table] = []
        for seg in _segment_paths(run_dir / SAMPLES_DIR):
            part = read_segment(seg)
            if part.torn:
                repaired += 1
                dropped_bytes += part.dropped_bytes
                problems.append(
                    f"{SAMPLES_DIR}/{seg.name}: torn tail of {part.dropped_bytes} bytes cut off"
                )
            tables.extend(_to_read_schema(b) for b in part.batches)
        samples = pa.concat_tables(tables) if tables else READ_SCHEMA.empty_table()

    return RunData(
        run_dir=run_dir,
        manifest=manifest,
        sessions=sessions,
        samples=samples,
        repaired_segments=repaired,
        samples_dropped_bytes=dropped_bytes,
        sessions_dropped_lines=dropped_lines,
        closed=closed,
        problems=problems,
    )
