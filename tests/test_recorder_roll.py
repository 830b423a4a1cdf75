"""Segments roll by time as well as size; the run directory's disk use is measured."""

from __future__ import annotations

from pathlib import Path

from perfmon.core.batch import SampleBatch
from perfmon.core.model import MetricKind, Sample
from perfmon.engine.recorder import Recorder, read_run


def test_segments_roll_every_hour_of_a_slow_soak(tmp_path: Path) -> None:
    now = [1000.0]
    rec = Recorder(tmp_path, segment_max_s=3600.0, clock=lambda: now[0])
    for hour in range(3):
        for i in range(10):
            t = 1.7e9 + hour * 3600 + i
            rec.add_batch(
                SampleBatch.from_samples([Sample(t, 0, "rss_bytes", float(i), MetricKind.GAUGE)])
            )
            rec.flush()
            now[0] += 1.0
        now[0] += 3600.0
    segments = sorted((tmp_path / "samples").glob("segment-*"))
    assert len(segments) == 3  # one per hour, each closed when the hour was over
    assert rec.disk_bytes() >= sum(p.stat().st_size for p in segments) > 0
    data = read_run(tmp_path)
    assert data.samples.num_rows == 30 and data.repaired_segments == 0
    rec.close()
    assert read_run(tmp_path).samples.num_rows == 30
