"""Parquet write/read round trips of a synthetic session table, timed through the perfmon probe.

This is the Parquet I/O part of the attention-kernel audit (design.md section 1): how long a
table of recorded samples takes to write and read back under given Parquet settings (codec,
codec level, row-group size). The table has the shape of perfmon's own samples: one row per
sample with the session id (int32), the sample time (float64, Unix seconds, increasing within a
session), the metric name (dictionary-encoded string, a dozen names) and the value (float64:
log-normal timings, random-walk gauges, unit counter increments).

Each repetition writes the table to a fresh file in a temporary directory with
``pyarrow.parquet.write_table``, reads it back with ``pyarrow.parquet.read_table``, checks that
the read table equals the written one (exit status 1 if not), and removes the file.

Metrics (probe protocol v1, docs/protocol.md):

- ``write_seconds``, ``read_seconds`` (histograms, seconds): one observation per repetition;
- ``parquet_write_bytes_per_second``, ``parquet_read_bytes_per_second`` (gauges, bytes/s): the
  table's in-memory Arrow size divided by each repetition's write or read time;
- ``parquet_file_bytes`` (value, bytes): size of the written file;
- ``parquet_compression_ratio`` (value): in-memory Arrow bytes / file bytes;
- ``rows_total`` (counter): rows written and verified;
- ``parquet_row_groups`` (value): row groups in the written file;
- ``parquet_cdc_enabled`` (value): 1 when content-defined chunking was used, 0 otherwise;
- ``arrow_pool_peak_bytes`` (value): the peak of pyarrow's default memory pool
  (``MemoryPool.max_memory()``) over the session;
- ``parquet_peak_rss_bytes`` (value): the process's peak resident set size
  (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, KiB on Linux, in bytes here).

Content-defined chunking (``--cdc on`` or ``PARQUET_CDC=on``) splits data pages at
content-defined boundaries so that an edited table rewrites few pages (pyarrow's
``write_table(use_content_defined_chunking=...)``, added in pyarrow 21). With an older pyarrow
the script says so on stderr, writes without it and reports ``parquet_cdc_enabled`` 0.

The codec comes from ``--compression`` or the ``PARQUET_CODEC`` environment variable, its level
from ``--compression-level`` or ``PARQUET_LEVEL``, the row-group size from ``--row-group-size``
or ``PARQUET_ROW_GROUP_SIZE``, content-defined chunking from ``--cdc`` or ``PARQUET_CDC``: each
setting on its own, so that a campaign can give each its own variant.
Outside perfmon (``PERFMON_FD`` unset) the probe calls do nothing and the script runs alone.
"""

from __future__ import annotations

import argparse
import inspect
import os
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from perfmon import probe

CODECS = ("zstd", "snappy", "gzip", "lz4", "brotli", "none")
METRICS = (
    "session_seconds",
    "chunk_seconds",
    "rss_bytes",
    "cpu_percent",
    "event_queue_depth",
    "causal_trace_bytes",
    "chunks_total",
    "compressions_total",
    "system_memory_percent",
    "read_seconds",
    "write_seconds",
    "sdpa_max_abs_diff",
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: arguments without the program name; None reads ``sys.argv``.

    Returns:
        The parsed options.
    """
    p = argparse.ArgumentParser(
        description="Write and read back a synthetic session table with pyarrow.parquet, "
        "reporting timings and sizes through the perfmon probe."
    )
    p.add_argument("--rows", type=int, default=200_000, help="table rows (default 200000)")
    p.add_argument("--sessions", type=int, default=40, help="sessions in the table (default 40)")
    p.add_argument(
        "--compression",
        choices=CODECS,
        default=os.environ.get("PARQUET_CODEC", "zstd"),
        help="Parquet codec (default: $PARQUET_CODEC or zstd)",
    )
    p.add_argument(
        "--compression-level",
        type=int,
        default=int(os.environ["PARQUET_LEVEL"]) if os.environ.get("PARQUET_LEVEL") else None,
        help="codec level (default: $PARQUET_LEVEL, else 3 for zstd and the codec's own "
        "default otherwise)",
    )
    p.add_argument(
        "--row-group-size",
        type=int,
        default=os.environ.get("PARQUET_ROW_GROUP_SIZE", "10000"),  # argparse applies type=int
        help="rows per row group (default: $PARQUET_ROW_GROUP_SIZE or 10000; 0 = pyarrow's "
        "default)",
    )
    p.add_argument(
        "--cdc",
        choices=("off", "on"),
        default=os.environ.get("PARQUET_CDC", "off"),
        help="content-defined chunking where pyarrow offers it (default: $PARQUET_CDC or off)",
    )
    p.add_argument("--repeat", type=int, default=5, help="write/read round trips (default 5)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed (default 0)")
    args = p.parse_args(argv)
    if args.cdc not in ("off", "on"):
        p.error(f"PARQUET_CDC must be off or on, not {args.cdc!r}")
    if args.compression not in CODECS:
        p.error(f"PARQUET_CODEC must be one of {', '.join(CODECS)}, not {args.compression!r}")
    if args.rows < 1 or args.sessions < 1 or args.repeat < 1 or args.row_group_size < 0:
        p.error("--rows, --sessions and --repeat must be >= 1, --row-group-size >= 0")
    if args.compression_level is None and args.compression == "zstd":
        args.compression_level = 3
    return args


def build_table(rows: int, sessions: int, seed: int) -> pa.Table:
    """Build a synthetic table of samples.

    Args:
        rows: number of rows.
        sessions: number of sessions the rows are spread over (rows sorted by session, time).
        seed: numpy RNG seed.

    Returns:
        A table with columns ``session`` (int32), ``t`` (float64, Unix seconds),
        ``metric`` (dictionary<int8, string>) and ``value`` (float64).
    """
    rng = np.random.default_rng(seed)
    session = np.sort(rng.integers(0, sessions, size=rows)).astype(np.int32)
    # Exponential time steps of 10 ms on average.
    t = 1.7e9 + np.cumsum(rng.exponential(0.01, size=rows))
    metric_idx = rng.integers(0, len(METRICS), size=rows).astype(np.int8)
    kind = metric_idx % 3
    value = np.where(
        kind == 0,
        rng.lognormal(mean=-6.0, sigma=0.5, size=rows),  # timings around 2.5 ms
        np.where(kind == 1, 50.0 + np.cumsum(rng.normal(0.0, 1.0, size=rows)), 1.0),
    )
    metric = pa.DictionaryArray.from_arrays(
        pa.array(metric_idx, type=pa.int8()), pa.array(METRICS, type=pa.string())
    )
    return pa.table(
        {"session": pa.array(session), "t": pa.array(t), "metric": metric, "value": value}
    )


def cdc_supported() -> bool:
    """Whether the installed pyarrow's ``write_table`` offers content-defined chunking."""
    return "use_content_defined_chunking" in inspect.signature(pq.write_table).parameters


def round_trip(table: pa.Table, path: Path, args: argparse.Namespace) -> tuple[float, float, int]:
    """Write the table, read it back and check equality.

    Args:
        table: the table to write.
        path: file to write (removed afterwards).
        args: options from ``parse_args`` (codec, level, row-group size, ``use_cdc``: the
            resolved content-defined chunking switch).

    Returns:
        (write seconds, read seconds, file bytes).

    Raises:
        ValueError: the table read back differs from the one written.
    """
    codec = "none" if args.compression == "none" else args.compression
    perf = time.perf_counter
    extra = {"use_content_defined_chunking": True} if getattr(args, "use_cdc", False) else {}
    t0 = perf()
    pq.write_table(
        table,
        path,
        compression=codec,
        compression_level=args.compression_level,
        row_group_size=args.row_group_size or None,
        **extra,
    )
    t1 = perf()
    back = pq.read_table(path)
    t2 = perf()
    size = path.stat().st_size
    args.row_groups = pq.ParquetFile(path).metadata.num_row_groups  # after timing
    path.unlink()
    if not back.equals(table):
        raise ValueError(f"table read back from {path} differs from the table written")
    return t1 - t0, t2 - t1, size


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point.

    Args:
        argv: arguments without the program name; None reads ``sys.argv``.

    Returns:
        The exit status: 0, or 1 when a round trip did not give back the table written.
    """
    args = parse_args(argv)
    args.use_cdc = args.cdc == "on" and cdc_supported()
    if args.cdc == "on" and not args.use_cdc:
        print(
            f"parquet_io: pyarrow {pa.__version__} has no content-defined chunking "
            "(pyarrow >= 21); writing without it",
            file=sys.stderr,
        )
    table = build_table(args.rows, args.sessions, args.seed)
    nbytes = table.nbytes
    writes: list[float] = []
    reads: list[float] = []
    size = 0
    with tempfile.TemporaryDirectory(prefix="perfmon-parquet-") as tmp:
        for i in range(args.repeat):
            try:
                w, r, size = round_trip(table, Path(tmp) / f"sessions-{i}.parquet", args)
            except ValueError as exc:
                print(f"parquet_io: {exc}", file=sys.stderr)
                return 1
            probe.observe("write_seconds", w)
            probe.observe("read_seconds", r)
            probe.gauge("parquet_write_bytes_per_second", nbytes / w)
            probe.gauge("parquet_read_bytes_per_second", nbytes / r)
            probe.count("rows_total", table.num_rows)
            writes.append(w)
            reads.append(r)
    probe.value("parquet_file_bytes", size)
    probe.value("parquet_compression_ratio", nbytes / size)
    probe.value("parquet_cdc_enabled", 1 if args.use_cdc else 0)
    probe.value("parquet_row_groups", args.row_groups)
    probe.value("arrow_pool_peak_bytes", pa.default_memory_pool().max_memory())
    probe.value("parquet_peak_rss_bytes", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    level = "" if args.compression_level is None else f" level {args.compression_level}"
    groups = args.row_group_size or "default"
    cdc = ", cdc" if args.use_cdc else ""
    print(
        f"parquet_io {args.compression}{level}, row groups {groups}{cdc}: {args.rows} rows, "
        f"{nbytes / 1e6:.2f} MB in memory -> {size / 1e6:.2f} MB on disk "
        f"(ratio {nbytes / size:.2f}); {args.repeat} round trips verified; "
        f"write median {np.median(writes) * 1e3:.1f} ms ({nbytes / np.median(writes) / 1e6:.0f}"
        f" MB/s), read median {np.median(reads) * 1e3:.1f} ms "
        f"({nbytes / np.median(reads) / 1e6:.0f} MB/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
