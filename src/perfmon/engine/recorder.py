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

Damage other than a torn tail (an overwritten or zeroed range, a file of another format) is
caught the same way: every record batch a reader uses passes ``check_batch`` first (the schema,
Arrow's full validation, so that no kernel reads out of bounds, no nulls, and a CRC-32 of the
batch's content that the recorder stores in each segment batch's custom metadata), and
``samples.parquet`` is written with page CRCs and read row group by row group with them checked.
A damaged batch or row group is skipped and counted (``RunData.damaged_batches``,
``samples_lost``); compaction reads its output back and counts its rows before it deletes a
segment, and stores the damage it met in the Parquet file's metadata. Readers read the samples
batch by batch (``RunData.batches``), never as one table, so their memory does not grow with
the run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
import threading
import time
import zlib
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
from perfmon.core.model import MetricKind, SessionResult

log = logging.getLogger(__name__)

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

CHECKSUM_KEY = "perfmon.crc32"
"""Custom metadata key of each segment record batch: ``batch_checksum`` of its content, so that
a reader tells an overwritten or zeroed batch from an intact one (Arrow IPC has no checksum of
its own; Parquet pages carry CRC-32s, written with ``write_page_checksum``)."""

COMPACTION_KEY = "perfmon.compaction"
"""Key-value metadata of ``samples.parquet``: JSON of the damage compaction met in the segments
(torn tails, damaged batches), so that it is still reported once the segments are deleted."""

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

    Samples are buffered in memory as columns by ``add_batch`` and written as one Arrow
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
        self.compaction_error: str | None = None
        """Why compaction failed at ``close`` (the segments were kept), None otherwise."""

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
        self._writer.write_batch(batch, custom_metadata={CHECKSUM_KEY: batch_checksum(batch)})
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

        Torn segment tails and damaged batches (from an earlier crash of a resumed run) are
        skipped while compacting, as ``read_run`` does, and recorded in the Parquet file's
        metadata. The Parquet file is read back and its rows counted before any segment is
        deleted; when that check fails (``CompactionError``), no ``samples.parquet`` is left
        and the segments are kept, so readers go on reading them.

        Raises:
            OSError: if the Parquet files cannot be written or do not read back (the segments
                are then kept); ``compaction_error`` holds the message.
        """
        with self._lock:
            if self._closed:
                return
            self._flush_locked()
            self._sync_sessions_locked(close=True)
            self._close_segment()
            self._closed = True
            segments = _segment_paths(self.samples_dir)
            try:
                _compact_samples(segments, self.run_dir / SAMPLES_PARQUET)
            except OSError as exc:
                self.compaction_error = str(exc)
                log.error("compaction failed, segments kept: %s", exc)
                raise
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

_KINDS = frozenset(k.value for k in MetricKind)
_READ_ERRORS = (pa.ArrowException, OSError, ValueError, TypeError, KeyError, IndexError)
"""What pyarrow raises on damaged input (``ArrowInvalid`` and ``ArrowIOError`` are
``ArrowException``s; a damaged flatbuffer or Thrift header can surface as any of the others)."""


def batch_checksum(batch: pa.RecordBatch) -> str:
    """CRC-32 of a samples batch's logical content, as 8 hex digits.

    Covers the ``t``, ``session`` and ``value`` values, the ``metric`` and ``kind`` dictionary
    indices and the dictionaries' strings, so any changed byte of the data a reader uses changes
    the checksum (CRC-32: ISO 3309 / ITU-T V.42, ``zlib.crc32``), whatever the physical layout.

    Args:
        batch: a record batch with ``SAMPLES_SCHEMA`` and no nulls.
    """
    crc = 0
    for name in ("t", "session", "value"):
        col = batch.column(name).to_numpy(zero_copy_only=False)
        crc = zlib.crc32(np.ascontiguousarray(col).tobytes(), crc)
    for name in ("metric", "kind"):
        dcol = batch.column(name)
        idx = dcol.indices.to_numpy(zero_copy_only=False)
        crc = zlib.crc32(np.ascontiguousarray(idx).tobytes(), crc)
        words = "\x00".join(str(x) for x in dcol.dictionary.to_pylist())
        crc = zlib.crc32(words.encode("utf-8", "surrogatepass"), crc)
    return f"{crc:08x}"


def check_batch(batch: pa.RecordBatch, metadata: Any = None) -> str | None:
    """Validate one samples batch read from a segment or from ``samples.parquet``.

    Checks, in order: the schema (``SAMPLES_SCHEMA``, metadata aside), Arrow's full validation
    (``RecordBatch.validate(full=True)``: buffer sizes, offsets, dictionary indices in range, so
    that no later kernel reads out of bounds), no nulls, known metric kinds, and the
    ``CHECKSUM_KEY`` CRC-32 when the batch carries one (segments written before checksums were
    added carry none and are checked structurally only).

    Args:
        batch: the record batch as read.
        metadata: its custom metadata (``KeyValueMetadata`` or a mapping) or None.

    Returns:
        None when the batch is intact, else one phrase saying what is wrong. Never raises.
    """
    try:
        if not batch.schema.equals(SAMPLES_SCHEMA, check_metadata=False):
            return "unexpected schema"
        batch.validate(full=True)
        for col in batch.columns:
            if col.null_count:
                return "null values"
        for name in ("metric", "kind"):
            dictionary = batch.column(name).dictionary
            if dictionary.null_count:
                return "null values"
            if name == "kind" and not set(dictionary.to_pylist()) <= _KINDS:
                return "unknown metric kind"
        expected = None
        if metadata is not None:
            expected = metadata.get(CHECKSUM_KEY.encode()) or metadata.get(CHECKSUM_KEY)
        if expected is not None:
            if isinstance(expected, bytes):
                expected = expected.decode("ascii", "replace")
            if expected != batch_checksum(batch):
                return "checksum mismatch"
    except _READ_ERRORS as exc:
        return f"invalid ({_one_line(exc)})"
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


@dataclass(frozen=True, slots=True)
class SegmentRead:
    """What could be read of one segment file.

    Attributes:
        batches: the record batches read intact (validated, see ``check_batch``), in order.
        torn: True when the stream ended in an error (a torn tail, or garbage) rather than
            cleanly.
        dropped_bytes: bytes not read into ``batches``: after the last intact message when
            torn, plus the messages of damaged batches.
        error: the reader's error message when torn or damaged.
        bad_batches: batches that were read but failed validation, skipped.
        bad_rows: samples in those batches (as their headers say).
    """

    batches: list[pa.RecordBatch]
    torn: bool
    dropped_bytes: int
    error: str = ""
    bad_batches: int = 0
    bad_rows: int = 0

    @property
    def damaged(self) -> bool:
        """True when anything of the segment could not be read."""
        return self.torn or self.bad_batches > 0


def read_segment(path: Path) -> SegmentRead:
    """Read an Arrow IPC stream segment batch by batch, validating each batch.

    A segment that ends exactly after a whole message (an open segment, or one cut at a
    message boundary) is not torn: nothing of it is lost that could be read. A segment whose
    schema message itself is torn or differs from ``SAMPLES_SCHEMA`` yields no batches and
    counts all its bytes as dropped. A batch whose framing is intact but whose content fails
    ``check_batch`` (an overwritten or zeroed range) is skipped and counted, and reading goes on
    with the next message; the first framing error ends the read (a torn tail: nothing after it
    can be trusted to be a message boundary).

    The file is read through a plain file stream, not a memory map, so a segment truncated
    while it is read (an open run) cannot raise SIGBUS.

    Args:
        path: the segment file.

    Returns:
        A ``SegmentRead``; never raises for damaged content. An unreadable file counts as torn.
    """
    try:
        size = path.stat().st_size
        source = pa.OSFile(str(path), "rb")
    except OSError as exc:
        return SegmentRead([], True, 0, str(exc))
    with source:
        if size == 0:
            return SegmentRead([], False, 0)  # created, nothing flushed yet
        try:
            reader = ipc.open_stream(source)
            if not reader.schema.equals(SAMPLES_SCHEMA, check_metadata=False):
                return SegmentRead([], True, size, "not a perfmon samples segment (schema)")
        except _READ_ERRORS as exc:
            return SegmentRead([], True, size, _one_line(exc))
        batches: list[pa.RecordBatch] = []
        bad = bad_rows = bad_bytes = 0
        error = ""
        good = source.tell()
        while True:
            try:
                batch, metadata = reader.read_next_batch_with_custom_metadata()
            except StopIteration:
                good = source.tell()
                break
            except _READ_ERRORS as exc:
                return SegmentRead(
                    batches, True, size - good + bad_bytes, _one_line(exc), bad, bad_rows
                )
            problem = check_batch(batch, metadata)
            if problem is None:
                batches.append(batch)
            else:
                bad += 1
                bad_rows += batch.num_rows
                bad_bytes += source.tell() - good
                error = error or problem
            good = source.tell()
    if good < size:  # bytes after the end-of-stream marker
        return SegmentRead(
            batches, True, size - good + bad_bytes, "bytes after end of stream", bad, bad_rows
        )
    return SegmentRead(batches, False, bad_bytes, error, bad, bad_rows)


@dataclass
class SampleDamage:
    """Damage met while reading a run's samples, accumulated by ``iter_run_batches``.

    Attributes:
        problems: one sentence per damaged file, for the report.
        repaired_segments: segments with a torn tail or damaged batches.
        dropped_bytes: bytes of segments not read (torn tails and damaged batches).
        bad_batches: segment batches and Parquet row groups skipped as damaged.
        samples_lost: samples known lost (rows of skipped batches and row groups, as their
            headers or the Parquet footer say; a torn tail's samples are not known).
        parquet_damaged: True when ``samples.parquet`` was unreadable or lost row groups.
        serious: the problems that are more than a segment's torn tail (see
            ``RunData.damage``).
    """

    problems: list[str] = field(default_factory=list)
    serious: list[str] = field(default_factory=list)
    batches_read: dict[str, int] = field(default_factory=dict)
    """Segment name -> intact batches read (so that a later pass reads the same ones)."""
    repaired_segments: int = 0
    dropped_bytes: int = 0
    bad_batches: int = 0
    samples_lost: int = 0
    parquet_damaged: bool = False


def _segment_batches(
    segments: Sequence[Path], damage: SampleDamage, limits: dict[str, int] | None = None
) -> Iterator[pa.RecordBatch]:
    for seg in segments:
        if limits is not None and seg.name not in limits:
            continue  # appeared after the first read of an open run
        part = read_segment(seg)
        damage.batches_read[seg.name] = len(part.batches)
        if limits is not None:
            yield from part.batches[: limits[seg.name]]
            continue
        if part.damaged:
            damage.repaired_segments += 1
            damage.dropped_bytes += part.dropped_bytes
            damage.bad_batches += part.bad_batches
            damage.samples_lost += part.bad_rows
            what = []
            if part.bad_batches:
                what.append(
                    f"{part.bad_batches} damaged batch(es) of {part.bad_rows:,} samples "
                    f"skipped ({part.error or 'invalid'})"
                )
            if part.torn:
                what.append(f"torn tail cut off ({part.error})")
            damage.problems.append(
                f"{SAMPLES_DIR}/{seg.name}: {'; '.join(what)}; {part.dropped_bytes:,} bytes dropped"
            )
            if part.bad_batches:
                damage.serious.append(damage.problems[-1])
        yield from part.batches


def _open_samples_parquet(path: Path) -> pq.ParquetFile:
    """Open ``samples.parquet`` with page CRC verification and check its schema.

    Raises:
        pa.ArrowException / OSError / ValueError: if the footer is unreadable or the schema is
            not ``SAMPLES_SCHEMA``.
    """
    pf = pq.ParquetFile(path, page_checksum_verification=True)
    if not pf.schema_arrow.equals(SAMPLES_SCHEMA, check_metadata=False):
        raise ValueError("not a perfmon samples file (schema)")
    return pf


def _parquet_batches(
    pf: pq.ParquetFile, damage: SampleDamage, *, columns: Sequence[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """Yield the validated batches of ``samples.parquet``, one row group at a time.

    A row group that cannot be decoded (a page CRC mismatch, a damaged page header) or fails
    ``check_batch`` is skipped and counted with its row count from the footer.
    """
    bad = lost = 0
    first = ""
    meta = pf.metadata
    for i in range(pf.num_row_groups):
        try:
            rows = int(meta.row_group(i).num_rows)
        except _READ_ERRORS:
            rows = 0
        try:
            table = pf.read_row_group(i)
            batches = table.to_batches()
            problem = next((p for p in map(check_batch, batches) if p is not None), None)
            if problem is None and table.num_rows != rows:
                problem = f"{table.num_rows} rows where the footer says {rows}"
        except _READ_ERRORS as exc:
            problem = f"unreadable ({_one_line(exc)})"
            batches = []
        if problem is not None:
            bad += 1
            lost += rows
            first = first or problem
            continue
        for b in batches:
            yield b.select(list(columns)) if columns is not None else b
    if bad:
        damage.parquet_damaged = True
        damage.bad_batches += bad
        damage.samples_lost += lost
        damage.problems.append(
            f"{SAMPLES_PARQUET}: {bad} of {pf.num_row_groups} row group(s) damaged, "
            f"{lost:,} samples lost ({first})"
        )
        damage.serious.append(damage.problems[-1])


def _compaction_damage(pf: pq.ParquetFile, damage: SampleDamage) -> None:
    """Restore the damage that compaction met in the segments (kept in the file's metadata)."""
    try:
        raw = (pf.metadata.metadata or {}).get(COMPACTION_KEY.encode())
        if raw is None:
            return
        found = json.loads(raw)
        damage.repaired_segments += int(found.get("repaired_segments", 0))
        damage.dropped_bytes += int(found.get("dropped_bytes", 0))
        damage.bad_batches += int(found.get("bad_batches", 0))
        damage.samples_lost += int(found.get("samples_lost", 0))
        damage.problems += [f"at compaction: {p}" for p in found.get("problems", [])]
        damage.serious += [f"at compaction: {p}" for p in found.get("serious", [])]
    except (ValueError, TypeError, AttributeError) as exc:
        damage.problems.append(f"{SAMPLES_PARQUET}: unreadable compaction record ({exc})")
        damage.serious.append(damage.problems[-1])


def iter_run_batches(
    run_dir: Path, damage: SampleDamage, *, limits: dict[str, int] | None = None
) -> Iterator[pa.RecordBatch]:
    """Yield every intact samples batch of a run, validated, one at a time (bounded memory).

    Reads ``samples.parquet`` row group by row group when the run is closed, else (or when the
    Parquet footer is unreadable) the segments in write order. Batches have
    ``SAMPLES_SCHEMA`` (dictionary-encoded ``metric`` and ``kind``). Damage is skipped and
    recorded in ``damage``; nothing raises for damaged content.

    Args:
        run_dir: the run directory.
        damage: accumulates what was skipped; its ``parquet_damaged`` and the
            ``closed`` state can be read once the iterator is exhausted.
        limits: segment name -> batches to read (``damage.batches_read`` of an earlier
            pass), so that a second pass over an open run reads what the first read; None:
            everything there is now.
    """
    parquet_path = run_dir / SAMPLES_PARQUET
    if parquet_path.exists():
        try:
            pf = _open_samples_parquet(parquet_path)
        except _READ_ERRORS as exc:
            damage.parquet_damaged = True
            segments = _segment_paths(run_dir / SAMPLES_DIR)
            fallback = "reading segments instead" if segments else "no segments left"
            damage.problems.append(f"{SAMPLES_PARQUET} unreadable ({_one_line(exc)}); {fallback}")
            damage.serious.append(damage.problems[-1])
        else:
            _compaction_damage(pf, damage)
            yield from _parquet_batches(pf, damage)
            return
    yield from _segment_batches(_segment_paths(run_dir / SAMPLES_DIR), damage, limits)


def _run_is_closed(run_dir: Path) -> bool:
    """True when ``samples.parquet`` exists and its footer reads (the run was compacted)."""
    path = run_dir / SAMPLES_PARQUET
    if not path.exists():
        return False
    try:
        _open_samples_parquet(path)
    except _READ_ERRORS:
        return False
    return True


def _table_batches(table: pa.Table, size: int = 1 << 16) -> Iterator[pa.RecordBatch]:
    """A ``READ_SCHEMA`` table as ``SAMPLES_SCHEMA`` batches (dictionary-encoded names)."""
    for rb in table.select(READ_SCHEMA.names).cast(READ_SCHEMA).to_batches(max_chunksize=size):
        yield pa.RecordBatch.from_arrays(
            [
                rb.column(0),
                rb.column(1),
                pc.dictionary_encode(rb.column(2)).cast(_DICT),
                rb.column(3),
                pc.dictionary_encode(rb.column(4)).cast(_DICT),
            ],
            schema=SAMPLES_SCHEMA,
        )


def _to_read_schema(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    return table.select(READ_SCHEMA.names).cast(READ_SCHEMA)


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


class CompactionError(OSError):
    """The Parquet file written by compaction did not read back as written (segments kept)."""


def _compact_samples(segments: Sequence[Path], dest: Path) -> int:
    """Write every intact batch of ``segments`` to ``dest`` as Parquet, verified, atomically.

    Each row group (``PARQUET_ROW_GROUP_ROWS`` rows, in recording order across groups) is
    sorted by (metric, session, t) within itself (see ``_sorted_for_storage``); ``value`` and
    ``t`` use no dictionary, ``value`` uses byte-stream-split encoding, and every page carries a
    CRC-32 (``write_page_checksum``). Memory is bounded by one row group: segments are read one
    at a time and row groups written as they fill.

    Damage met in the segments (torn tails, damaged batches) is stored in the file's key-value
    metadata under ``COMPACTION_KEY``, so that readers still report it once the segments are gone.

    Before ``dest`` appears, the temporary file is read back row group by row group (page CRCs
    checked, every batch validated) and its rows counted; any difference raises.

    Returns:
        The number of samples written.

    Raises:
        CompactionError: if the file read back differs from what was written.
        OSError: if the file cannot be written.
    """
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    damage = SampleDamage()
    written = 0
    try:
        with pq.ParquetWriter(
            tmp,
            SAMPLES_SCHEMA,
            compression=PARQUET_COMPRESSION,
            compression_level=PARQUET_COMPRESSION_LEVEL,
            use_dictionary=["session", "metric", "kind"],
            use_byte_stream_split=["value"],
            write_page_checksum=True,
        ) as writer:
            pending: list[pa.RecordBatch] = []
            rows = 0
            for batch in _segment_batches(segments, damage):
                pending.append(batch)
                rows += batch.num_rows
                if rows >= PARQUET_ROW_GROUP_ROWS:
                    writer.write_table(
                        _sorted_for_storage(pending), row_group_size=PARQUET_ROW_GROUP_ROWS
                    )
                    written += rows
                    pending, rows = [], 0
            if pending:
                writer.write_table(
                    _sorted_for_storage(pending), row_group_size=PARQUET_ROW_GROUP_ROWS
                )
                written += rows
            if damage.problems:
                record = {
                    "repaired_segments": damage.repaired_segments,
                    "dropped_bytes": damage.dropped_bytes,
                    "bad_batches": damage.bad_batches,
                    "samples_lost": damage.samples_lost,
                    "problems": damage.problems,
                    "serious": damage.serious,
                }
                writer.add_key_value_metadata({COMPACTION_KEY: json.dumps(record)})
        with open(tmp, "rb") as f:
            os.fchmod(f.fileno(), file_mode_for(dest.parent))
            os.fsync(f.fileno())
        _verify_parquet(tmp, written)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return written


def _verify_parquet(path: Path, rows: int) -> None:
    """Read ``path`` back row group by row group and check it holds ``rows`` intact samples.

    Raises:
        CompactionError: if a row group is unreadable or invalid, or the count differs.
    """
    check = SampleDamage()
    try:
        pf = _open_samples_parquet(path)
        found = sum(b.num_rows for b in _parquet_batches(pf, check, columns=["t"]))
    except _READ_ERRORS as exc:
        raise CompactionError(f"{path.name} does not read back: {_one_line(exc)}") from exc
    if check.problems or found != rows:
        why = "; ".join(check.problems) or f"{found:,} rows read back of {rows:,} written"
        raise CompactionError(f"{path.name} does not read back as written: {why}")


def _read_sessions_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Read ``sessions.jsonl``: (rows, lines dropped). Undecodable lines are counted, skipped."""
    rows, dropped, _ = _sessions_jsonl(path)
    return rows, dropped


def _sessions_jsonl(path: Path) -> tuple[list[dict[str, Any]], int, bool]:
    """Read ``sessions.jsonl``: (rows, lines dropped, whether the only one dropped is a torn
    last line: no newline after it, as ``kill -9`` mid-write leaves it).

    Lines that are not JSON objects with ``session_row``'s keys and types are dropped too.
    """
    rows: list[dict[str, Any]] = []
    dropped = 0
    last_dropped = False
    raw = b""
    memo: dict[str, str] = {}
    try:
        with open(path, "rb") as f:  # line by line: never the file and its lines at once
            for raw in f:
                last_dropped = False
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, ValueError, RecursionError):
                    dropped += 1
                    last_dropped = True
                    continue
                if _valid_session_row(row):
                    rows.append(_shared_strings(row, memo))
                else:
                    dropped += 1
                    last_dropped = True
    except FileNotFoundError:
        return [], 0, False
    except OSError:
        return rows, dropped + 1, False
    torn_tail = dropped == 1 and last_dropped and not raw.endswith(b"\n") and bool(raw.strip())
    return rows, dropped, torn_tail


_SHARED_MAX = 64
"""String values up to this many characters are shared between session rows."""


def _shared_strings(row: dict[str, Any], memo: dict[str, str]) -> dict[str, Any]:
    """``row`` with its keys and short string values shared through ``memo``: every row has
    the same 25 keys and mostly the same few values (``ok``, the variant, the set), which
    ``json.loads`` would otherwise make again for each of a soak's tens of thousands of rows
    (about 1.2 KB a row)."""
    return {
        memo.setdefault(k, k): memo.setdefault(v, v)
        if type(v) is str and len(v) <= _SHARED_MAX
        else v
        for k, v in row.items()
    }


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
            write_page_checksum=True,
        )
        with open(tmp, "rb") as f:
            os.fchmod(f.fileno(), file_mode_for(dest.parent))
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _check_sessions_parquet(path: Path) -> None:
    """Check that ``sessions.parquet`` reads back (page checksums, full Arrow validation),
    one row group at a time, without making its rows into Python objects.

    Raises:
        pa.ArrowException / OSError / ValueError / ...: if the file is unreadable.
    """
    pf = pq.ParquetFile(path, page_checksum_verification=True)
    for i in range(pf.num_row_groups):
        pf.read_row_group(i).validate(full=True)


def _read_sessions_parquet(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Read ``sessions.parquet``: (rows, rows dropped as invalid).

    Raises:
        pa.ArrowException / OSError / ValueError / ...: if the file is unreadable.
    """
    pf = pq.ParquetFile(path, page_checksum_verification=True)
    table = pf.read()
    table.validate(full=True)
    rows: list[dict[str, Any]] = []
    dropped = 0
    for row in table.to_pylist():
        for name in _MAP_COLUMNS:
            if isinstance(row.get(name), list):
                row[name] = dict(row[name])
        if _valid_session_row(row):
            rows.append(row)
        else:
            dropped += 1
    return rows, dropped


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return x is None or (isinstance(x, int | float) and not isinstance(x, bool))


def _valid_session_row(row: Any) -> bool:
    """True when a sessions row has the keys and types readers rely on (``session_row``)."""
    if not isinstance(row, dict) or not _is_int(row.get("id")):
        return False
    for key in ("workload", "variant", "set_name", "status"):
        if not isinstance(row.get(key), str):
            return False
    if not isinstance(row.get("warmup", False), bool) or not _is_int(row.get("index", 0)):
        return False
    for key in ("start_t", "end_t", "wall_s", "cpu_s", "timeout_s"):
        if not _is_num(row.get(key)):
            return False
    for key in ("peak_rss_bytes", "malformed", "samples", "exit_code", "signal"):
        if row.get(key) is not None and not _is_int(row.get(key)):
            return False
    for key in _MAP_COLUMNS:
        if row.get(key) is not None and not isinstance(row.get(key), dict):
            return False
    params = row.get("params") or {}
    if not all(isinstance(k, str) for k in params):
        return False
    argv = row.get("argv")
    return argv is None or (isinstance(argv, list) and all(isinstance(a, str) for a in argv))


def run_gates(manifest: Any) -> tuple[list[dict[str, Any]], str | None]:
    """The gates stored in a run's manifest (``campaign.gates``), checked for shape.

    Args:
        manifest: ``manifest.json``'s content as read (any JSON value).

    Returns:
        ``(gates, problem)``: the ``[{name, expr, window_s}]`` dicts whose ``name`` and
        ``expr`` are strings and whose ``window_s`` is a number or absent, and a sentence when
        anything was missing or malformed (None when all was well).
    """
    campaign = manifest.get("campaign") if isinstance(manifest, dict) else None
    raw = campaign.get("gates") if isinstance(campaign, dict) else None
    if not isinstance(raw, list):
        return [], f"{MANIFEST_NAME} holds no gate list; gates not evaluated"
    gates = [
        g
        for g in raw
        if isinstance(g, dict)
        and isinstance(g.get("name"), str)
        and isinstance(g.get("expr"), str)
        and _is_num(g.get("window_s"))
    ]
    if len(gates) != len(raw):
        return gates, f"{MANIFEST_NAME}: {len(raw) - len(gates)} malformed gate(s) skipped"
    return gates, None


@dataclass
class RunData:
    """Everything recorded in one run directory, as read back by ``read_run``.

    The samples are not held in memory: ``read_run`` reads them once (validating every batch,
    counting damage, ``num_samples``, ``t_min`` and ``t_max``), and ``batches()`` reads them
    again batch by batch for each consumer, so that a reader's memory does not grow with the
    run's length. ``samples`` materialises them all as one table, for small runs and tests.

    Attributes:
        run_dir: the run directory.
        manifest: ``manifest.json``'s content ({} when missing or unreadable).
        sessions: one dict per finished session (``session_row``'s keys), in finishing order.
        repaired_segments: segments whose torn tail was cut off, or with damaged batches.
        samples_dropped_bytes: bytes of segments dropped by those repairs.
        sessions_dropped_lines: lines of ``sessions.jsonl`` (or rows of ``sessions.parquet``)
            that could not be decoded or lacked the keys readers need.
        closed: True when the run was closed (read from ``samples.parquet``).
        problems: one sentence per damaged or unreadable file, for the report.
        damaged_batches: segment batches and Parquet row groups skipped as damaged.
        samples_lost: samples known lost in those (a torn tail's are not known).
        damage: the problems that are more than a crash's torn tail (a segment or
            ``sessions.jsonl`` cut short at its end, which ``kill -9`` leaves and which loses
            at most the last flush): overwritten or zeroed data, unreadable or missing files.
            A report of a run with such damage cannot vouch for its verdict.
        num_samples: intact samples read.
        t_min / t_max: the earliest and latest sample time, Unix seconds (None: no samples).
    """

    run_dir: Path
    manifest: dict[str, Any]
    sessions: list[dict[str, Any]]
    repaired_segments: int = 0
    samples_dropped_bytes: int = 0
    sessions_dropped_lines: int = 0
    closed: bool = False
    problems: list[str] = field(default_factory=list)
    damaged_batches: int = 0
    samples_lost: int = 0
    damage: list[str] = field(default_factory=list)
    num_samples: int = 0
    t_min: float | None = None
    t_max: float | None = None
    limits: dict[str, int] | None = field(default=None, repr=False)
    """Segment name -> batches read by ``read_run`` (None for a closed run)."""
    _table: pa.Table | None = field(default=None, repr=False)
    in_memory: pa.Table | None = field(default=None, repr=False)
    """Samples held in memory (``READ_SCHEMA``) instead of read from ``run_dir`` (tests and
    small synthetic runs). None: read from the run directory."""
    batch_source: Callable[[], Iterator[pa.RecordBatch]] | None = field(default=None, repr=False)
    """Where ``batches()`` reads from instead of ``run_dir``: a function giving the samples
    batch by batch (``SAMPLES_SCHEMA``), e.g. runs combined by
    ``perfmon.engine.compare.combine_runs``, read from their directories one batch at a time."""

    @property
    def damage_found(self) -> bool:
        """True when any file of the run was damaged, missing or unreadable."""
        return bool(self.problems)

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Read the run's intact samples again, batch by batch (``SAMPLES_SCHEMA``: dictionary
        encoded ``metric`` and ``kind``), validated; the same batches ``read_run`` counted.
        Memory: one segment or one Parquet row group at a time."""
        if self.in_memory is not None:
            return _table_batches(self.in_memory)
        if self.batch_source is not None:
            return self.batch_source()
        return iter_run_batches(self.run_dir, SampleDamage(), limits=self.limits)

    @property
    def samples(self) -> pa.Table:
        """All samples as one table with ``READ_SCHEMA`` (t float64, session int32, metric
        string, value float64, kind string): in recording order while the run is open; once
        closed, sorted by (metric, session, t) within each Parquet row group. Materialised on
        first use (about 40 bytes per sample plus the names): prefer ``batches()``."""
        if self.in_memory is not None:
            return self.in_memory
        if self._table is None:
            tables = [_to_read_schema(b) for b in self.batches()]
            self._table = pa.concat_tables(tables) if tables else READ_SCHEMA.empty_table()
        return self._table


@dataclass
class RunMeta:
    """A run directory's manifest and sessions, read and checked (``read_run_meta``).

    Attributes:
        manifest / sessions / sessions_dropped_lines / problems / damage: as in ``RunData``.
    """

    manifest: dict[str, Any]
    sessions: list[dict[str, Any]]
    sessions_dropped_lines: int
    problems: list[str]
    damage: list[str]


def read_run_meta(run_dir: Path) -> RunMeta:
    """Read a run's ``manifest.json`` and sessions (jsonl, else Parquet), never raising for
    damaged content: a garbage manifest reads as ``{}``, undecodable or malformed session lines
    are dropped and counted, and each is named in ``problems``.

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
            loaded = json.loads(manifest_path.read_bytes().decode("utf-8"))
            if isinstance(loaded, dict):
                manifest = loaded
            else:
                problems.append(f"{MANIFEST_NAME} is not a JSON object")
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            problems.append(f"{MANIFEST_NAME} unreadable: {_one_line(exc)}")
    else:
        problems.append(f"{MANIFEST_NAME} missing")
    if manifest and manifest.get("format") not in (None, RUN_FORMAT):
        problems.append(f"{MANIFEST_NAME} has format {manifest.get('format')!r:.80}")
    elif manifest and manifest.get("version") not in (None, RUN_FORMAT_VERSION):
        problems.append(f"{MANIFEST_NAME} has version {manifest.get('version')!r:.80}")

    damage = list(problems)  # a manifest problem is never a crash's torn tail
    jsonl = run_dir / SESSIONS_JSONL
    sessions, dropped_lines, torn_tail = _sessions_jsonl(jsonl)
    if dropped_lines:
        problems.append(f"{SESSIONS_JSONL}: {dropped_lines} undecodable line(s) dropped")
        if not torn_tail:
            damage.append(problems[-1])
    if jsonl.exists() and (run_dir / SESSIONS_PARQUET).exists():
        try:  # the copy made at close: checked, not used (sessions.jsonl is the record)
            _check_sessions_parquet(run_dir / SESSIONS_PARQUET)
        except (*_READ_ERRORS, RecursionError) as exc:
            problems.append(
                f"{SESSIONS_PARQUET} unreadable ({_one_line(exc)}); {SESSIONS_JSONL} used"
            )
    if not jsonl.exists() and (run_dir / SESSIONS_PARQUET).exists():
        try:
            sessions, dropped_rows = _read_sessions_parquet(run_dir / SESSIONS_PARQUET)
        except (*_READ_ERRORS, RecursionError) as exc:
            problems.append(f"{SESSIONS_PARQUET} unreadable: {_one_line(exc)}")
            damage.append(problems[-1])
        else:
            if dropped_rows:
                dropped_lines += dropped_rows
                problems.append(f"{SESSIONS_PARQUET}: {dropped_rows} malformed row(s) dropped")
                damage.append(problems[-1])
    return RunMeta(manifest, sessions, dropped_lines, problems, damage)


def read_run(run_dir: Path) -> RunData:
    """Read a run directory, closed (Parquet) or open or crashed (segments).

    Never raises for damaged content: every batch is validated (``check_batch``); torn
    segment tails are cut off and damaged batches or Parquet row groups skipped, counted in
    ``repaired_segments``, ``samples_dropped_bytes``, ``damaged_batches`` and
    ``samples_lost``; undecodable session lines in ``sessions_dropped_lines``; and every
    damaged file is named in ``problems``.

    Args:
        run_dir: the run directory.

    Returns:
        The run's ``RunData``.

    Raises:
        FileNotFoundError: if ``run_dir`` is not a directory.
    """
    meta = read_run_meta(run_dir)
    damage = SampleDamage()
    closed = _run_is_closed(run_dir)
    n = 0
    t_min = t_max = None
    for batch in iter_run_batches(run_dir, damage):
        if batch.num_rows:
            n += batch.num_rows
            lo, hi = pc.min_max(batch.column("t")).values()
            lo_f, hi_f = float(lo.as_py()), float(hi.as_py())
            t_min = lo_f if t_min is None else min(t_min, lo_f)
            t_max = hi_f if t_max is None else max(t_max, hi_f)
    return RunData(
        run_dir=run_dir,
        manifest=meta.manifest,
        sessions=meta.sessions,
        repaired_segments=damage.repaired_segments,
        samples_dropped_bytes=damage.dropped_bytes,
        sessions_dropped_lines=meta.sessions_dropped_lines,
        closed=closed,
        problems=list(meta.problems) + damage.problems,
        damaged_batches=damage.bad_batches,
        samples_lost=damage.samples_lost,
        damage=list(meta.damage) + damage.serious,
        num_samples=n,
        t_min=t_min,
        t_max=t_max,
        limits=None if closed else dict(damage.batches_read),
    )
