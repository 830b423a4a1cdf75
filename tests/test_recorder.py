"""Tests for the run directory recorder and provenance (perfmon.engine.recorder / provenance)."""

from __future__ import annotations

import json
import shutil
import stat
import struct
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from perfmon.core.batch import SampleBatch
from perfmon.core.model import MetricKind, Sample, SessionResult, SessionSpec, SessionStatus
from perfmon.engine.provenance import collect_provenance, git_info, package_versions
from perfmon.engine.recorder import (
    SAMPLES_SCHEMA,
    Recorder,
    make_run_dir,
    read_run,
    read_segment,
)

T0 = 1_764_000_000.0


def make_samples(n: int, session: int = 0, start: float = T0) -> list[Sample]:
    kinds = [MetricKind.GAUGE, MetricKind.HISTOGRAM, MetricKind.COUNTER]
    names = ["event_queue_depth", "chunk_seconds", "chunks_total"]
    return [
        Sample(start + i * 0.01, session, names[i % 3], float(i), kinds[i % 3]) for i in range(n)
    ]


def make_result(sid: int, status: SessionStatus = SessionStatus.OK, **kw: object) -> SessionResult:
    spec = SessionSpec(
        id=sid,
        workload="tgat",
        variant="baseline" if sid % 2 == 0 else "candidate",
        set_name="golden",
        index=sid // 2,
        warmup=False,
        argv=("python", "-c", "pass"),
        env=(("TGAT_ATTENTION", "math"),),
        cwd="/tmp",
        timeout_s=120.0,
        params=(("events", "512"),),
    )
    r = SessionResult(spec=spec, status=status, start_t=T0 + sid, end_t=T0 + sid + 1.5)
    r.wall_s = 1.5
    r.cpu_s = 1.2
    r.peak_rss_bytes = 100_000_000 + sid
    r.samples = 10
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def expected_rows(samples: list[Sample]) -> list[tuple[float, int, str, float, str]]:
    return [(s.t, s.session, s.metric, s.value, str(s.kind)) for s in samples]


def table_rows(table: pa.Table) -> list[tuple[float, int, str, float, str]]:
    d = table.to_pydict()
    return list(zip(d["t"], d["session"], d["metric"], d["value"], d["kind"], strict=True))


# -- make_run_dir -------------------------------------------------------------------------


def test_make_run_dir_names_and_uniqueness(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    a = make_run_dir(runs, "attention-audit", T0)
    b = make_run_dir(runs, "attention-audit", T0)
    c = make_run_dir(runs, "attention-audit", T0)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(T0))
    assert a.name == f"{stamp}-attention-audit"
    assert b.name == f"{stamp}-attention-audit-2"
    assert c.name == f"{stamp}-attention-audit-3"
    assert stat.S_IMODE(a.stat().st_mode) == 0o700  # private by default (issue 13)
    assert stat.S_IMODE(make_run_dir(runs, "g", T0, share="group").stat().st_mode) == 0o750
    d = make_run_dir(runs, "a/b c", T0)
    assert d.parent == runs and d.name == f"{stamp}-a_b_c"


# -- writing and reading ------------------------------------------------------------------


def test_manifest_atomic_and_versioned(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    rec.write_manifest({"run_id": "r1", "campaign": {"name": "x"}, "started_t": T0})
    rec.write_manifest({"run_id": "r2", "campaign": {"name": "x"}, "started_t": T0})
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert data["format"] == "perfmon-run" and data["version"] == 1 and data["run_id"] == "r2"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    with pytest.raises(ValueError):
        rec.write_manifest({"x": float("nan")})


def test_roundtrip_open_then_closed(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    rec.write_manifest({"run_id": "r", "campaign": {"name": "c"}, "started_t": T0})
    s1 = make_samples(100, session=0)
    s2 = make_samples(50, session=1, start=T0 + 5)
    s2.append(Sample(T0 + 6, -1, "system_memory_percent", 42.5, MetricKind.GAUGE))
    rec.add_batch(SampleBatch.from_samples(s1))
    assert rec.buffered == 100
    rec.flush()
    assert rec.buffered == 0
    rec.add_batch(SampleBatch.from_samples(s2))
    rec.flush()
    rec.flush()  # nothing buffered: no empty batch
    rec.session_finished(make_result(0))
    rec.session_finished(
        make_result(1, SessionStatus.EXIT, exit_code=3, error="boom", extra={"x": 1.0})
    )

    # Open (not closed) run: read from the segment.
    data = read_run(tmp_path)
    assert not data.closed
    assert data.repaired_segments == 0 and data.samples_dropped_bytes == 0
    assert data.samples.schema.names == ["t", "session", "metric", "value", "kind"]
    assert table_rows(data.samples) == expected_rows(s1 + s2)
    assert [s["id"] for s in data.sessions] == [0, 1]
    assert data.sessions[1]["status"] == "exit" and data.sessions[1]["status_text"] == "exit 3"
    assert data.sessions[0]["params"] == {"events": "512"}
    assert data.sessions[0]["env"] == {"TGAT_ATTENTION": "math"}
    assert data.manifest["run_id"] == "r"
    segs = sorted((tmp_path / "samples").iterdir())
    assert len(segs) == 1
    # The segment has two batches (one per non-empty flush) and the format metadata.
    reader = ipc.open_stream(segs[0].read_bytes())
    assert reader.schema.metadata[b"perfmon.format"] == b"samples"
    assert reader.schema.metadata[b"perfmon.version"] == b"1"
    assert reader.schema.field("metric").type == pa.dictionary(pa.int32(), pa.string())
    assert len(list(reader)) == 2

    rec.close()
    rec.close()  # idempotent
    with pytest.raises(RuntimeError):
        rec.add_batch(SampleBatch.from_samples(s1))
    assert not (tmp_path / "samples").exists()
    closed = read_run(tmp_path)
    assert closed.closed
    # Closed: sorted by (metric, session, t) within each row group, for compression.
    assert sorted(table_rows(closed.samples)) == sorted(expected_rows(s1 + s2))
    assert closed.sessions == data.sessions
    pf = pq.ParquetFile(tmp_path / "samples.parquet")
    assert pf.metadata.row_group(0).column(0).compression == "ZSTD"
    assert pf.schema_arrow.metadata[b"perfmon.format"] == b"samples"
    sessions_pq = pq.read_table(tmp_path / "sessions.parquet")
    assert sessions_pq.num_rows == 2
    assert sessions_pq.column("error").to_pylist() == ["", "boom"]
    assert sessions_pq.column("extra").to_pylist()[1] == [("x", 1.0)]


def test_sessions_parquet_used_when_jsonl_gone(tmp_path: Path) -> None:
    with Recorder(tmp_path) as rec:
        rec.session_finished(make_result(0))
        rec.session_finished(make_result(1))
    before = read_run(tmp_path).sessions
    (tmp_path / "sessions.jsonl").unlink()
    after = read_run(tmp_path).sessions
    assert after == before


def test_segments_roll_and_compact(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, segment_max_bytes=4096)
    written: list[Sample] = []
    for k in range(20):
        batch = make_samples(60, session=k % 3, start=T0 + k)
        written += batch
        rec.add_batch(SampleBatch.from_samples(batch))
        rec.flush()
    segs = sorted((tmp_path / "samples").iterdir())
    assert len(segs) > 2
    assert [p.name for p in segs][:2] == ["segment-000001.arrows", "segment-000002.arrows"]
    # Rolled segments are closed cleanly; all read back in order.
    assert all(not read_segment(p).torn for p in segs)
    assert table_rows(read_run(tmp_path).samples) == expected_rows(written)
    rec.close()
    assert sorted(table_rows(read_run(tmp_path).samples)) == sorted(expected_rows(written))


def test_empty_run_closes(tmp_path: Path) -> None:
    with Recorder(tmp_path):
        pass
    data = read_run(tmp_path)
    assert data.closed and data.samples.num_rows == 0 and data.sessions == []
    assert "manifest.json missing" in data.problems


def _batch_ends(path: Path) -> tuple[int, list[tuple[int, int]]]:
    """(schema end offset, [(end offset, cumulative rows)]) of each batch in a stream file."""
    buf = pa.BufferReader(path.read_bytes())
    reader = ipc.open_stream(buf)
    schema_end = buf.tell()
    ends: list[tuple[int, int]] = []
    rows = 0
    for batch in reader:
        rows += batch.num_rows
        ends.append((buf.tell(), rows))
    return schema_end, ends


def test_torn_segment_tail_is_repaired_and_counted(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rec = Recorder(src)
    written: list[Sample] = []
    for k in range(4):
        batch = make_samples(25 + k, session=k, start=T0 + k)
        written += batch
        rec.add_batch(SampleBatch.from_samples(batch))
        rec.flush()
    # Simulate kill -9: the recorder is never closed; the segment has no end-of-stream marker.
    seg = src / "samples" / "segment-000001.arrows"
    full = seg.read_bytes()
    schema_end, ends = _batch_ends(seg)
    assert ends[-1][0] == len(full)
    boundaries = {0: 0, schema_end: 0, **dict(ends)}
    offsets = sorted(
        {1, schema_end - 3, schema_end, schema_end + 5, ends[0][0], ends[0][0] + 1}
        | {e - 7 for e, _ in ends}
        | {(ends[1][0] + ends[2][0]) // 2}
    )
    for off in offsets:
        run = tmp_path / f"cut-{off}"
        shutil.copytree(src, run)
        (run / "samples" / "segment-000001.arrows").write_bytes(full[:off])
        data = read_run(run)
        rows_ok = max(r for e, r in [(0, 0), *ends] if e <= off)
        last_good = max(e for e in [0, schema_end, *(e for e, _ in ends)] if e <= off)
        if off == 0 or off < schema_end:
            last_good = 0
        assert data.samples.num_rows == rows_ok, off
        assert table_rows(data.samples) == expected_rows(written[:rows_ok])
        if off in boundaries and off != 0:
            assert data.repaired_segments == 0, off
            assert data.samples_dropped_bytes == 0
        else:
            assert data.repaired_segments == 1, off
            assert data.samples_dropped_bytes == off - last_good, off
            assert any("torn tail" in p for p in data.problems)
    rec.close()


def test_torn_sessions_line_and_garbage_never_crash(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    rec.session_finished(make_result(0))
    rec.session_finished(make_result(1))
    with open(tmp_path / "sessions.jsonl", "ab") as f:
        f.write(b'{"id": 2, "workload": "tg')  # torn last line
    (tmp_path / "manifest.json").write_text("{not json")
    (tmp_path / "samples" / "segment-000009.arrows").write_bytes(b"\xff\xff\xff\xffgarbage")
    data = read_run(tmp_path)
    assert [s["id"] for s in data.sessions] == [0, 1]
    assert data.sessions_dropped_lines == 1
    assert data.manifest == {}
    assert data.repaired_segments == 1 and data.samples_dropped_bytes == 11
    assert len(data.problems) == 3
    # A resumed recorder numbers its segments after the existing ones, and close() repairs.
    rec2 = Recorder(tmp_path)
    rec2.add_batch(SampleBatch.from_samples(make_samples(5)))
    rec2.flush()
    assert (tmp_path / "samples" / "segment-000010.arrows").exists()
    rec2.close()
    assert read_run(tmp_path).samples.num_rows == 5


def test_corrupt_parquet_falls_back_to_segments(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    rec.add_batch(SampleBatch.from_samples(make_samples(9)))
    rec.flush()
    (tmp_path / "samples.parquet").write_bytes(b"PAR1 not really")
    data = read_run(tmp_path)
    assert data.samples.num_rows == 9 and not data.closed
    assert any("samples.parquet unreadable" in p for p in data.problems)
    rec.close()


def test_read_run_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_run(tmp_path / "nope")


def test_segment_schema_is_the_documented_one() -> None:
    assert SAMPLES_SCHEMA.names == ["t", "session", "metric", "value", "kind"]
    assert SAMPLES_SCHEMA.field("session").type == pa.int32()


# -- provenance ---------------------------------------------------------------------------


def test_provenance_fields(tmp_path: Path) -> None:
    prov = collect_provenance(None)
    assert prov["git"] == {"commit": None, "dirty": None}
    assert prov["cpu_count_logical"] >= 1
    assert prov["ram_total_bytes"] > 0
    assert prov["python_version"].count(".") == 2
    assert prov["packages"]["pyarrow"] == pa.__version__
    assert set(prov["packages"]) >= {"numpy", "scipy", "pyarrow", "psutil", "textual", "torch"}
    assert prov["started_utc"].endswith("+00:00")
    json.dumps(prov)  # JSON-ready
    assert package_versions(("surely-not-installed-pkg-xyz",)) == {
        "surely-not-installed-pkg-xyz": None
    }


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_provenance_git(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    env_args = ["-c", "user.name=t", "-c", "user.email=t@example.com"]

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", *env_args, *args], cwd=repo, check=True, capture_output=True, text=True
        )
        return out.stdout.strip()

    git("init", "-q")
    (repo / "campaign.toml").write_text("[campaign]\nname='x'\n")
    git("add", "campaign.toml")
    git("commit", "-q", "-m", "c")
    head = git("rev-parse", "HEAD")
    prov = collect_provenance(repo / "campaign.toml")
    assert prov["git"] == {"commit": head, "dirty": False}
    (repo / "campaign.toml").write_text("[campaign]\nname='y'\n")
    assert git_info(repo) == {"commit": head, "dirty": True}
    outside = tmp_path / "outside"
    outside.mkdir()
    assert git_info(outside) == {"commit": None, "dirty": None}


# -- validation and verified compaction (issue 13) ---------------------------------------------


def test_overwritten_batch_is_skipped_counted_and_the_rest_read(tmp_path: Path) -> None:
    """A batch whose bytes changed fails its CRC-32; the batches after it are still read."""
    rec = Recorder(tmp_path)
    for k in range(3):
        rec.add_batch(SampleBatch.from_samples(make_samples(30, session=k, start=T0 + 100 * k)))
        rec.flush()
    seg = tmp_path / "samples" / "segment-000001.arrows"
    data = seg.read_bytes()
    t = struct.pack(
        "<d", make_samples(30, session=1, start=T0 + 100)[7].t
    )  # a time of the second batch
    assert data.count(t) == 1
    seg.write_bytes(data.replace(t, struct.pack("<d", 1.5e9)))  # still a valid float
    part = read_segment(seg)
    assert part.bad_batches == 1 and part.bad_rows == 30 and not part.torn
    assert part.error == "checksum mismatch"
    run = read_run(tmp_path)
    assert run.num_samples == 60 and run.samples_lost == 30 and run.damaged_batches == 1
    assert any("damaged batch" in p for p in run.damage)
    rec.close()
    # compaction skipped the damaged batch and recorded it in samples.parquet's metadata
    closed = read_run(tmp_path)
    assert closed.closed and closed.num_samples == 60
    assert closed.samples_lost == 30 and any("at compaction" in p for p in closed.damage)


def test_compaction_keeps_the_segments_when_the_parquet_does_not_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from perfmon.engine import recorder as recorder_mod

    def damaged(path: Path, rows: int) -> None:
        raise recorder_mod.CompactionError(f"{path.name}: 3 rows read back of {rows}")

    monkeypatch.setattr(recorder_mod, "_verify_parquet", damaged)
    rec = Recorder(tmp_path)
    rec.add_batch(SampleBatch.from_samples(make_samples(12)))
    rec.flush()
    with pytest.raises(OSError, match="read back"):
        rec.close()
    assert rec.compaction_error and "read back" in rec.compaction_error
    assert not (tmp_path / "samples.parquet").exists()
    assert not list(tmp_path.glob(".samples.parquet.*"))
    data = read_run(tmp_path)  # the segments are intact and still read
    assert data.num_samples == 12 and not data.closed and data.problems == ["manifest.json missing"]


def test_compaction_verifies_by_reading_back(tmp_path: Path) -> None:
    """The real check: the file written is read back, page CRCs included, and counted."""
    from perfmon.engine.recorder import CompactionError, _verify_parquet

    rec = Recorder(tmp_path)
    rec.add_batch(SampleBatch.from_samples(make_samples(40)))
    rec.close()
    path = tmp_path / "samples.parquet"
    _verify_parquet(path, 40)
    with pytest.raises(CompactionError, match="39"):
        _verify_parquet(path, 39)
    data = bytearray(path.read_bytes())
    meta = pq.ParquetFile(path).metadata.row_group(0).column(3)
    at = meta.data_page_offset + meta.total_compressed_size // 2
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CompactionError):
        _verify_parquet(path, 40)


def test_a_segment_of_another_schema_is_damage_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "samples").mkdir()
    other = pa.schema([("x", pa.int64())])
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, other) as w:
        w.write_batch(pa.record_batch([pa.array([1, 2, 3])], schema=other))
    (tmp_path / "samples" / "segment-000001.arrows").write_bytes(sink.getvalue().to_pybytes())
    data = read_run(tmp_path)
    assert data.num_samples == 0 and data.repaired_segments == 1
    assert "schema" in data.problems[-1]
