"""A session shorter than the sampling interval still gets a peak RSS (early samples)."""

from __future__ import annotations

import sys
from pathlib import Path

from perfmon.core.model import SessionResult, SessionSpec, SessionStatus
from perfmon.engine.supervisor import Supervisor

WORKLOADS = Path(__file__).parent / "workloads"


async def test_a_short_session_gets_its_peak_rss(tmp_path: Path) -> None:
    sup = Supervisor(
        log_dir=tmp_path / "logs",
        log_cap_bytes=1_000_000,
        sample_interval_s=2.0,  # longer than the session: only the early samples see it
        grace_s=0.3,
        on_samples=lambda batch: None,
        on_update=lambda result: None,
    )
    spec = SessionSpec(
        id=0,
        workload="alloc",
        variant="baseline",
        set_name="golden",
        index=0,
        warmup=False,
        argv=(sys.executable, str(WORKLOADS / "alloc.py"), "80", "0.6"),
        env=(),
        cwd=str(tmp_path),
        timeout_s=30.0,
    )
    result: SessionResult = await sup.run_session(spec)
    assert result.status is SessionStatus.OK
    assert result.wall_s is not None and result.wall_s < 2.0
    assert result.peak_rss_bytes is not None and result.peak_rss_bytes >= 70 * 1024 * 1024
