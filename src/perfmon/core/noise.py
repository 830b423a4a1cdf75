"""Machine noise: what else used the machine while a session ran, and what to do about it.

A benchmark measured on a busy machine measures the machine as much as the workload. pyperf
warns that such a result is "unstable" and hyperfine asks to "consider re-running on a quiet
system"; perfmon measures the noise of every session, flags the sessions that ran on a busy
machine, and can repeat them (the campaign's *noise guard*).

How the noise of one session is measured (the engine reads ``/proc``, this module computes):

- the kernel's aggregate ``cpu`` line of ``/proc/stat`` (proc(5)) is read when the session
  starts and when it ends. Its fields count the time all CPUs spent in each state, in ticks of
  ``USER_HZ`` (``os.sysconf("SC_CLK_TCK")``, 100 per second on Linux). Over the window,
  ``total`` ticks = user + nice + system + idle + iowait + irq + softirq + steal (guest and
  guest_nice are already included in user and nice), ``busy`` = total - idle - iowait;
- the session's own CPU time is its tree's user + system time from ``wait4``'s rusage
  (``SessionResult.cpu_s``);
- **background CPU** = busy - the session's CPU, clamped at 0: everything else that ran,
  perfmon itself included; its **share** is background ticks / total ticks, i.e. the fraction
  of the machine's whole capacity (every CPU over the window) used by something else. On a
  2-CPU machine, one other process spinning all along is a share of 50%. Two things count as
  background that a user may not expect: a py-spy profile of the session (it does disturb the
  session) and descendants of the session that its leader never waited for (their CPU time is
  not in the leader's rusage);
- **steal share** = steal ticks / total ticks: time a hypervisor gave this VM's CPUs to
  someone else (0 on bare metal, where the kernel reports no steal);
- perfmon's own CPU over the window (the daemon's ``getrusage(RUSAGE_SELF)``) is recorded
  apart, so a report says whether perfmon itself was the noise; it is *part of* background;
- the 1-minute load average (``/proc/loadavg``) at the end of the session. It counts the
  session's own runnable tasks too, so it is a hint, not a measure of the background.

Resolution. The kernel charges CPU time in whole ticks, so each CPU's busy count is off by up
to one tick at each end of the window: the share is uncertain by up to
``2 * ncpu / total_ticks = 2 / (USER_HZ * window_s)`` (20% for a 100 ms session, 2% for 1 s).
A session is flagged *busy* only when its share exceeds the limit by more than that
(``share - resolution > limit``): a short session is flagged only when it is certainly over,
never on quantisation noise. A session's wall time being much larger than its CPU time is a
hint of a busy machine too, but a sleeping or I/O-bound workload shows it as well, so perfmon
does not flag on it.

The guard (``[campaign]`` keys, see ``NoiseGuard``): ``max_background_cpu = "10%"`` sets the
limit (default ``DEFAULT_MAX_BACKGROUND_SHARE``, which flags but never repeats);
``on_noisy = "repeat"`` re-runs a busy session (at most ``noisy_retries`` times, default 2; the
last attempt is kept and stays flagged); a repeated attempt gets ``SessionStatus.NOISY`` and is
excluded from statistics like a failed session.

Per session the figures travel in ``SessionResult.extra`` under the ``NOISE_*`` keys (floats,
so the sessions table needs no new column); ``summarize_noise`` folds the recorded session rows
into the report's one-line summary.

This module is pure: no I/O.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DEFAULT_MAX_BACKGROUND_SHARE = 0.10
"""A session whose background CPU share is over 10% of the machine is flagged busy by default.

A convention, not a derived constant (the guidance of pyperf and hyperfine is qualitative: run
on an otherwise idle machine): 10% of a machine is a whole core on a 10-core box, enough to
perturb caches, memory bandwidth and turbo frequency, while an idle desktop's daemons stay
well under it. A campaign sets its own with ``max_background_cpu``."""

ON_NOISY = ("mark", "repeat")
"""What the guard does with a busy session: only mark it, or repeat it."""

DEFAULT_NOISY_RETRIES = 2
"""How many times a busy session is repeated at most with ``on_noisy = "repeat"``."""

# Keys of SessionResult.extra / the session row's "extra" map.
NOISE_WINDOW_S = "noise_window_s"
NOISE_NCPU = "noise_ncpu"
NOISE_BACKGROUND_S = "noise_background_cpu_s"
NOISE_BACKGROUND_SHARE = "noise_background_cpu_share"
NOISE_RESOLUTION = "noise_resolution_share"
NOISE_STEAL_SHARE = "noise_steal_share"
NOISE_PERFMON_S = "noise_perfmon_cpu_s"
NOISE_LOAD1 = "noise_load1"
NOISE_LIMIT = "noise_limit_share"
NOISE_BUSY = "noise_busy"
NOISE_ATTEMPT = "noise_attempt"


def parse_share(text: object) -> float:
    """Parse a share of the machine such as ``"10%"`` into a fraction (0.10).

    Args:
        text: a string ``"N%"`` with 0 <= N <= 100 (a bare number is refused: ``0.1`` could mean
            10% or 0.1%).

    Returns:
        The fraction, in [0, 1].

    Raises:
        ValueError: if ``text`` is not such a percentage.
    """
    if not isinstance(text, str) or not text.strip().endswith("%"):
        raise ValueError(f'expected a percentage such as "10%", got {text!r}')
    try:
        value = float(text.strip()[:-1])
    except ValueError:
        raise ValueError(f'expected a percentage such as "10%", got {text!r}') from None
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"must be between 0% and 100%, got {text!r}")
    return value / 100.0


@dataclass(frozen=True, slots=True)
class CpuTicks:
    """The aggregate ``cpu`` line of ``/proc/stat``: ticks of ``USER_HZ`` summed over all CPUs.

    Attributes:
        user / nice / system / idle / iowait / irq / softirq / steal: the proc(5) fields;
            kernels before 2.6.11 lack steal (0 here).
        ncpu: the number of ``cpuN`` lines (online CPUs the aggregate counts).
    """

    user: int
    nice: int
    system: int
    idle: int
    iowait: int
    irq: int
    softirq: int
    steal: int
    ncpu: int

    @property
    def total(self) -> int:
        """All ticks (guest time is already inside user and nice, so it is not added)."""
        return (
            self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
        )

    @property
    def busy(self) -> int:
        """Ticks some CPU was doing work: total - idle - iowait (steal included: the CPU was
        not available to this machine's idle loop either)."""
        return self.total - self.idle - self.iowait


def parse_proc_stat(text: str) -> CpuTicks:
    """Parse ``/proc/stat``'s content into its aggregate ``cpu`` line.

    Args:
        text: the file's content (proc(5)).

    Returns:
        The aggregate counters and the number of per-CPU lines.

    Raises:
        ValueError: if there is no well-formed aggregate ``cpu`` line.
    """
    agg: list[int] | None = None
    ncpu = 0
    for line in text.splitlines():
        if line.startswith("cpu "):
            parts = line.split()[1:]
            if len(parts) < 4:
                raise ValueError(f"/proc/stat: short cpu line {line!r}")
            try:
                agg = [int(p) for p in parts[:8]]
            except ValueError:
                raise ValueError(f"/proc/stat: bad cpu line {line!r}") from None
        elif line.startswith("cpu") and line[3:4].isdigit():
            ncpu += 1
    if agg is None:
        raise ValueError("/proc/stat: no aggregate cpu line")
    agg += [0] * (8 - len(agg))
    user, nice, system, idle, iowait, irq, softirq, steal = agg[:8]
    return CpuTicks(user, nice, system, idle, iowait, irq, softirq, steal, ncpu=max(1, ncpu))


def parse_loadavg(text: str) -> float:
    """The 1-minute load average from ``/proc/loadavg``'s content.

    Raises:
        ValueError: if the first field is not a number.
    """
    try:
        return float(text.split()[0])
    except (IndexError, ValueError):
        raise ValueError(f"/proc/loadavg: unexpected content {text[:40]!r}") from None


@dataclass(frozen=True, slots=True)
class NoiseReading:
    """What the engine reads at one end of a session's window.

    Attributes:
        cpu: the aggregate CPU ticks, or None where ``/proc/stat`` cannot be read.
        perfmon_cpu_s: perfmon's own process CPU time (user + system, all threads), seconds.
        load1: the 1-minute load average, or None where unknown.
    """

    cpu: CpuTicks | None
    perfmon_cpu_s: float
    load1: float | None = None


@dataclass(frozen=True, slots=True)
class SessionNoise:
    """The noise measured over one session's window.

    Attributes:
        window_s: the window's length, seconds (total ticks / ncpu / ticks_per_s).
        ncpu: CPUs the machine has (per-CPU lines of ``/proc/stat``).
        background_cpu_s: CPU seconds used by anything but the session (perfmon included),
            clamped at 0.
        background_share: ``background_cpu_s`` over the machine's capacity in the window
            (``window_s * ncpu``), in [0, 1].
        resolution: the share's tick quantisation bound, ``2 / (ticks_per_s * window_s)``.
        steal_share: steal ticks over total ticks, in [0, 1].
        perfmon_cpu_s: perfmon's own CPU seconds in the window (part of the background).
        load1: the 1-minute load average at the end, or None.
        limit: the share above which the session counts as busy.
        busy: True when ``background_share - resolution > limit``.
    """

    window_s: float
    ncpu: int
    background_cpu_s: float
    background_share: float
    resolution: float
    steal_share: float
    perfmon_cpu_s: float
    load1: float | None
    limit: float
    busy: bool

    def to_extra(self) -> dict[str, float]:
        """The figures as ``SessionResult.extra`` entries (``NOISE_*`` keys)."""
        out = {
            NOISE_WINDOW_S: self.window_s,
            NOISE_NCPU: float(self.ncpu),
            NOISE_BACKGROUND_S: self.background_cpu_s,
            NOISE_BACKGROUND_SHARE: self.background_share,
            NOISE_RESOLUTION: self.resolution,
            NOISE_STEAL_SHARE: self.steal_share,
            NOISE_PERFMON_S: self.perfmon_cpu_s,
            NOISE_LIMIT: self.limit,
            NOISE_BUSY: 1.0 if self.busy else 0.0,
        }
        if self.load1 is not None:
            out[NOISE_LOAD1] = self.load1
        return out


def session_noise(
    start: NoiseReading,
    end: NoiseReading,
    session_cpu_s: float | None,
    *,
    ticks_per_s: float,
    limit: float = DEFAULT_MAX_BACKGROUND_SHARE,
) -> SessionNoise | None:
    """Compute a session's noise from the readings at its start and end (see module docstring).

    Args:
        start / end: the readings; ``end`` taken after ``start``.
        session_cpu_s: the session tree's user + system CPU seconds (rusage), or None when
            unknown (then all busy time counts as background: an upper bound).
        ticks_per_s: ``USER_HZ``, the unit of ``/proc/stat`` (``os.sysconf("SC_CLK_TCK")``).
        limit: the background share above which the session is busy, in [0, 1].

    Returns:
        The noise, or None when either reading lacks CPU ticks or no tick passed in between
        (the counters did not move: nothing can be said).

    Raises:
        ValueError: if ``ticks_per_s`` is not positive.
    """
    if not ticks_per_s > 0:
        raise ValueError(f"ticks_per_s must be > 0, got {ticks_per_s!r}")
    if start.cpu is None or end.cpu is None:
        return None
    total = end.cpu.total - start.cpu.total
    if total <= 0:
        return None
    ncpu = end.cpu.ncpu
    busy_s = max(0, end.cpu.busy - start.cpu.busy) / ticks_per_s
    capacity_s = total / ticks_per_s
    window_s = capacity_s / ncpu
    background_s = max(0.0, busy_s - (session_cpu_s or 0.0))
    share = min(1.0, background_s / capacity_s)
    resolution = 2.0 * ncpu / total
    steal = min(1.0, max(0, end.cpu.steal - start.cpu.steal) / total)
    return SessionNoise(
        window_s=window_s,
        ncpu=ncpu,
        background_cpu_s=background_s,
        background_share=share,
        resolution=resolution,
        steal_share=steal,
        perfmon_cpu_s=max(0.0, end.perfmon_cpu_s - start.perfmon_cpu_s),
        load1=end.load1,
        limit=limit,
        busy=share - resolution > limit,
    )


@dataclass(frozen=True, slots=True)
class NoiseGuard:
    """A campaign's (or a set's) noise guard.

    Attributes:
        max_background_share: the limit set by ``max_background_cpu``, in [0, 1], or None
            when the campaign sets none (then ``DEFAULT_MAX_BACKGROUND_SHARE`` flags).
        on_noisy: ``"mark"`` (flag the session, keep it) or ``"repeat"`` (run it again).
        retries: with ``"repeat"``, how many times at most one session is repeated; the last
            attempt is kept (and stays flagged) whatever its noise.
    """

    max_background_share: float | None = None
    on_noisy: str = "mark"
    retries: int = DEFAULT_NOISY_RETRIES

    def __post_init__(self) -> None:
        if self.on_noisy not in ON_NOISY:
            raise ValueError(
                f"on_noisy must be one of {', '.join(ON_NOISY)}, got {self.on_noisy!r}"
            )
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        share = self.max_background_share
        if share is not None and not 0.0 <= share <= 1.0:
            raise ValueError(f"max_background_share must be in [0, 1], got {share}")

    @property
    def limit(self) -> float:
        """The share above which a session is busy."""
        if self.max_background_share is None:
            return DEFAULT_MAX_BACKGROUND_SHARE
        return self.max_background_share

    def should_repeat(self, noise: SessionNoise | None, attempt: int, *, ok: bool) -> bool:
        """Whether a finished session is to be repeated.

        Args:
            noise: its measured noise (None: unmeasured, never repeated).
            attempt: 0 for the first run of the session, 1 for its first repetition, ...
            ok: True when the session ended with status ok (failures are not repeated for
                noise: they are failures).

        Returns:
            True when the guard repeats (``on_noisy = "repeat"``), the session is busy and
            it has been repeated fewer than ``retries`` times.
        """
        return (
            ok
            and self.on_noisy == "repeat"
            and noise is not None
            and noise.busy
            and attempt < self.retries
        )


@dataclass(frozen=True, slots=True)
class NoiseSummary:
    """The machine's quietness over a run, from the recorded session rows.

    Attributes:
        measured: sessions with noise figures (kept and repeated attempts alike).
        busy: of those, sessions flagged busy.
        repeated: attempts that were repeated because busy (status ``noisy``).
        kept_busy: busy sessions kept in the data (flagged, not repeated or out of retries).
        limit: the largest limit the sessions were judged against (they share one unless sets
            override it), in [0, 1].
        ncpu: CPUs of the machine (the largest seen).
        median_share / max_share: background share over the measured sessions, in [0, 1].
        median_busy_share: the median share of the busy sessions, or None when none.
        max_load1: the largest 1-minute load average at a session's end, or None.
        max_steal_share: the largest steal share, in [0, 1].
        perfmon_cpu_s / window_s: perfmon's own CPU and the windows' length, summed, seconds.
        unmeasured: finished sessions without noise figures (no /proc, start failures).
    """

    measured: int
    busy: int
    repeated: int
    kept_busy: int
    limit: float
    ncpu: int
    median_share: float | None
    max_share: float | None
    median_busy_share: float | None
    max_load1: float | None
    max_steal_share: float | None
    perfmon_cpu_s: float
    window_s: float
    unmeasured: int

    @property
    def perfmon_share(self) -> float | None:
        """perfmon's own CPU over the machine's capacity in the sessions' windows."""
        capacity = self.window_s * self.ncpu
        return self.perfmon_cpu_s / capacity if capacity > 0 else None

    @property
    def quiet(self) -> bool:
        """True when no measured session was busy."""
        return self.busy == 0

    def line(self) -> str:
        """One line for the report, near the verdict (see ``quietness_line``)."""
        return quietness_line(self)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready content (shares as fractions), with ``line`` and ``perfmon_share``."""
        return {
            "measured": self.measured,
            "busy": self.busy,
            "repeated": self.repeated,
            "kept_busy": self.kept_busy,
            "limit_share": self.limit,
            "ncpu": self.ncpu,
            "median_background_share": self.median_share,
            "max_background_share": self.max_share,
            "median_busy_background_share": self.median_busy_share,
            "max_load1": self.max_load1,
            "max_steal_share": self.max_steal_share,
            "perfmon_cpu_s": self.perfmon_cpu_s,
            "perfmon_share": self.perfmon_share,
            "window_s": self.window_s,
            "unmeasured": self.unmeasured,
            "quiet": self.quiet,
            "line": self.line(),
        }


def _finite(x: object) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def summarize_noise(rows: Iterable[Mapping[str, object]]) -> NoiseSummary:
    """Fold recorded session rows (``session_row`` dicts) into the run's quietness.

    Every number comes from the rows' ``extra`` noise figures; rows without them (a run
    recorded before perfmon measured noise, a start failure, a machine without ``/proc``)
    are counted in ``unmeasured``. Medians are ``statistics.median`` (the middle value, or the
    mean of the two middle values).

    Args:
        rows: the sessions table's rows; ``status`` ``"noisy"`` marks a repeated attempt.

    Returns:
        The summary.
    """
    shares: list[float] = []
    busy_shares: list[float] = []
    loads: list[float] = []
    steals: list[float] = []
    limit = 0.0
    ncpu = 0
    repeated = kept_busy = unmeasured = 0
    perfmon_s = window_s = 0.0
    for row in rows:
        extra = row.get("extra")
        extra = extra if isinstance(extra, Mapping) else {}
        share = _finite(extra.get(NOISE_BACKGROUND_SHARE))
        if share is None:
            unmeasured += 1
            continue
        shares.append(share)
        busy = bool(_finite(extra.get(NOISE_BUSY)))
        if busy:
            busy_shares.append(share)
            if row.get("status") == "noisy":
                repeated += 1
            else:
                kept_busy += 1
        limit = max(limit, _finite(extra.get(NOISE_LIMIT)) or 0.0)
        ncpu = max(ncpu, int(_finite(extra.get(NOISE_NCPU)) or 0))
        load = _finite(extra.get(NOISE_LOAD1))
        if load is not None:
            loads.append(load)
        steal = _finite(extra.get(NOISE_STEAL_SHARE))
        if steal is not None:
            steals.append(steal)
        perfmon_s += _finite(extra.get(NOISE_PERFMON_S)) or 0.0
        window_s += _finite(extra.get(NOISE_WINDOW_S)) or 0.0
    return NoiseSummary(
        measured=len(shares),
        busy=len(busy_shares),
        repeated=repeated,
        kept_busy=kept_busy,
        limit=limit or DEFAULT_MAX_BACKGROUND_SHARE,
        ncpu=ncpu,
        median_share=statistics.median(shares) if shares else None,
        max_share=max(shares) if shares else None,
        median_busy_share=statistics.median(busy_shares) if busy_shares else None,
        max_load1=max(loads) if loads else None,
        max_steal_share=max(steals) if steals else None,
        perfmon_cpu_s=perfmon_s,
        window_s=window_s,
        unmeasured=unmeasured,
    )


def _pct(share: float) -> str:
    """A share as a percentage with sensible precision: ``0.8%``, ``55%``."""
    p = share * 100.0
    return f"{p:.1f}%" if p < 10 else f"{p:.0f}%"


def quietness_line(s: NoiseSummary) -> str:
    """The report's one line on how quiet the machine was.

    Examples::

        Machine: quiet — background CPU median 0.8%, max 3.1% of 2 CPUs over 40 sessions;
        load 0.4; steal 0%; perfmon 0.2%
        Machine: BUSY — 12 of 40 sessions over 10% background CPU (median 55%), 8 repeated;
        results may be unreliable

    Args:
        s: the summary.

    Returns:
        The line (no trailing newline).
    """
    if s.measured == 0:
        why = f" ({s.unmeasured} sessions without noise figures)" if s.unmeasured else ""
        return f"Machine: not measured{why}"
    cpus = f"{s.ncpu} CPU" + ("" if s.ncpu == 1 else "s")
    noun = "session" if s.measured == 1 else "sessions"
    tail = []
    if s.max_load1 is not None:
        tail.append(f"load {s.max_load1:.2g} max")
    if s.max_steal_share is not None:
        tail.append(f"steal {_pct(s.max_steal_share)} max")
    if s.perfmon_share is not None:
        tail.append(f"perfmon itself {_pct(s.perfmon_share)}")
    tail_text = "; " + "; ".join(tail) if tail else ""
    assert s.median_share is not None and s.max_share is not None
    if s.quiet:
        return (
            f"Machine: quiet — background CPU median {_pct(s.median_share)}, "
            f"max {_pct(s.max_share)} of {cpus} over {s.measured} {noun}{tail_text}"
        )
    assert s.median_busy_share is not None
    repeated = f", {s.repeated} repeated" if s.repeated else ""
    kept = (
        f"; {s.kept_busy} busy session{'s' if s.kept_busy != 1 else ''} kept in the results, "
        "which may be unreliable"
        if s.kept_busy
        else "; none kept in the results"
    )
    return (
        f"Machine: BUSY — {s.busy} of {s.measured} {noun} over {_pct(s.limit)} background CPU "
        f"of {cpus} (median {_pct(s.median_busy_share)}){repeated}{kept}{tail_text}"
    )
