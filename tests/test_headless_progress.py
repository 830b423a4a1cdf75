"""Headless progress: a heartbeat line at least every 30 s, with timestamp, elapsed and ETA."""

from __future__ import annotations

import io
import re

from perfmon.core.model import SessionResult, SessionSpec, SessionStatus
from perfmon.engine.headless import HEARTBEAT_S, ProgressPrinter


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


WALL0 = 1_764_000_000.0  # 2025-11-24T16:00:00Z


def _result(i: int, wall: float) -> SessionResult:
    spec = SessionSpec(
        id=i, workload="w", variant="baseline", set_name="golden", index=i, warmup=False,
        argv=("x",), env=(), cwd="/", timeout_s=None, params=(),
    )  # fmt: skip
    r = SessionResult(spec=spec, start_t=0.0, end_t=wall, status=SessionStatus.OK)
    r.wall_s = wall
    return r


def _printer(tty: bool, total: int | None = 10) -> tuple[ProgressPrinter, io.StringIO, FakeClock]:
    clock = FakeClock()
    out = io.StringIO()
    p = ProgressPrinter(out, total, clock=clock, wall=lambda: WALL0 + clock.t - 1000.0, tty=tty)
    return p, out, clock


def _beat(p: ProgressPrinter, clock: FakeClock, seconds: float) -> None:
    """Advance the fake clock second by second, calling heartbeat as the runner's ticker does."""
    for _ in range(int(seconds)):
        clock.t += 1.0
        p.heartbeat()


def test_a_silent_long_session_gets_a_line_every_30_seconds() -> None:
    p, out, clock = _printer(tty=False)
    _beat(p, clock, 95)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # at 30, 60 and 90 s
    assert lines[0] == (
        "[2025-11-24T16:00:30Z] elapsed 0:00:30, sessions 0/10, current session 0:00:30, "
        "ETA after the first session"
    )
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_eta_is_the_median_session_time_times_sessions_left() -> None:
    p, out, clock = _printer(tty=False)
    for wall in (10.0, 12.0, 50.0):  # median cycle 12 s
        _beat(p, clock, wall)
        p.session(_result(p.done, wall))
    _beat(p, clock, 31)
    last = out.getvalue().splitlines()[-1]
    # the last session line was at 72 s; 30 s of silence later, at 102 s:
    assert re.search(r"elapsed 0:01:42, sessions 3/10, current session 0:00:30", last)
    assert "ETA 0:01:24 (median session 12" in last  # 12 s x 7 sessions left


def test_other_lines_reset_the_silence() -> None:
    p, out, clock = _printer(tty=False)
    for _ in range(4):
        _beat(p, clock, 20)
        p.session(_result(p.done, 20.0))  # a session line every 20 s: no heartbeat needed
    assert all(not line.startswith("[20") for line in out.getvalue().splitlines())
    _beat(p, clock, HEARTBEAT_S)
    assert out.getvalue().splitlines()[-1].startswith("[2025-11-24T16:01:50Z]")  # 80 + 30 s


def test_open_ended_runs_show_no_total_and_no_eta() -> None:
    p, out, clock = _printer(tty=False, total=None)
    _beat(p, clock, 30)
    assert "sessions 0, current session 0:00:30" in out.getvalue()
    assert "ETA" not in out.getvalue()


def test_on_a_terminal_a_status_line_is_redrawn_and_cleared_before_lines() -> None:
    p, out, clock = _printer(tty=True)
    _beat(p, clock, 3)
    text = out.getvalue()
    assert text.count("\r2025-11-24T16:00:0") == 3  # redrawn in place each second
    p.session(_result(0, 3.0))
    text = out.getvalue()
    line_start = text.rindex("\r\x1b[K")  # the status line is erased before the session line
    assert text[line_start + 4 :].startswith("[ 1/10]")
    _beat(p, clock, 1)
    p.close()  # before the final table: the status line goes away
    assert out.getvalue().endswith("\r\x1b[K")
