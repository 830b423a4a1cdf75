"""Live gate evaluation off the event loop, on a bounded schedule.

The runner's event loop launches and reaps sessions; nothing heavy may run on it (design.md
section 3). Evaluating statistical gates is heavy: the first evaluation imports scipy, and
each ``speedup``/``regression`` runs two bootstraps of ``StatsOptions.bootstrap_resamples``
resamples. So ``GateWorker`` evaluates the live gates in one worker thread:

- **only when their inputs changed**: each gate has an input key made of change counters the
  runner bumps on the loop (sessions added and finished, batches of samples of each gated
  metric, and, for windowed gates, batches of any metric, since a window ends at the latest
  sample); a gate whose key is unchanged since its last evaluation keeps its result;
- **coalesced**: at most one evaluation runs at a time, and changes that arrive meanwhile are
  folded into the next one (never queued);
- **at a bounded share of the CPU**: the next evaluation starts no sooner than
  ``max(interval_s, cost_factor x the last evaluation's duration)`` after the last one ended,
  so the worker takes at most ``1 / (1 + cost_factor)`` of one core whatever n is (10% with
  the default 9), and a run of 2,000 sessions per variant is evaluated less often, not with
  more CPU.

The worker reads the live state through ``LockedSource``: every read of the ``MetricSource``
protocol takes the runner's lock for its own duration only (a few hundred microseconds: a
reservoir quantile, a list of per-session values), never during a bootstrap. The loop never
waits for that lock: it queues its mutations and applies them only when the lock is free
(``Runner._mutate``); a reader applies the queue first, so it sees every mutation queued
before it read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from perfmon.core.gates import evaluate_gates
from perfmon.core.model import GateResult, GateState
from perfmon.engine.recorded import worst_of_groups

if TYPE_CHECKING:
    from perfmon.core.campaign import GateConfig

log = logging.getLogger(__name__)

__all__ = ["GateWorker", "LockedSource"]

DEFAULT_INTERVAL_S = 0.25
"""Shortest time between two evaluations, seconds (the snapshot rate's default period)."""

DEFAULT_COST_FACTOR = 9.0
"""Idle time after an evaluation, as a multiple of its duration: CPU share <= 1/(1+9) = 10%
of one core, so that on a small machine the worker leaves the workload's core alone."""


class LockedSource:
    """A ``perfmon.core.gates.MetricSource`` over another one, each call under ``lock``.

    Every method of the wrapped source (the ``MetricSource`` protocol's and any added later)
    is called with ``lock`` held, for that call only. The wrapped source's methods must
    return fresh objects (lists, tuples, numbers), as ``LiveState``'s do, so that nothing
    returned changes after the lock is released.

    Args:
        source: the source to wrap (a ``LiveState``).
        lock: the lock its writer holds while mutating it.
        before: called with the lock held before each read (the runner applies the
            mutations it queued while the lock was taken), or None.
    """

    def __init__(
        self, source: Any, lock: threading.Lock, before: Callable[[], None] | None = None
    ) -> None:
        self._source = source
        self._lock = lock
        self._before = before

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._source, name)
        lock, before = self._lock, self._before
        if not callable(attr):
            with lock:
                return attr

        def locked(*args: Any, **kwargs: Any) -> Any:
            with lock:
                if before is not None:
                    before()
                return attr(*args, **kwargs)

        return locked


class GateWorker:
    """Evaluates a campaign's gates in a worker thread when their data changed.

    Args:
        gates: the campaign's gates, in order.
        source: the data, safe to read from the worker thread (a ``LockedSource``).
        interval_s: shortest time between the end of one evaluation and the next, seconds.
        cost_factor: the next evaluation waits at least this many times the last one's
            duration (bounds the worker's CPU share to ``1 / (1 + cost_factor)``).
        clock: a monotonic clock in seconds (tests pass a fake one).
        panel: called in the worker thread with ``source`` after the gates, only when a
            session was added or finished since its last call (its inputs are per-session
            values); its return value is kept in ``panel_result`` (the comparison panel,
            ``perfmon.engine.live_compare.build_panel``). None: no panel.
        lanes: called in the worker thread before each evaluation; when it returns groups
            (``[("golden @ gpu-a", source), ...]``, ``perfmon.engine.host_lanes``), each gate
            is evaluated over every group and combined as the recorded groups are
            (``perfmon.engine.recorded.worst_of_groups``: the worst state, every group in
            ``per_set``); when it returns none, over ``source``. None: always ``source``.

    Call ``note_sessions`` / ``note_samples`` on the loop when the live state changes, run
    ``run()`` as a task, read ``results`` (one per gate, campaign order) at any time, and
    ``await close()`` at the end.

    Raises:
        ValueError: if ``interval_s`` or ``cost_factor`` is negative.
    """

    def __init__(
        self,
        gates: Sequence[GateConfig],
        source: Any,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        cost_factor: float = DEFAULT_COST_FACTOR,
        clock: Callable[[], float] = time.monotonic,
        panel: Callable[[Any], Any] | None = None,
        lanes: Callable[[], Sequence[tuple[str, Any]]] | None = None,
    ) -> None:
        if interval_s < 0 or cost_factor < 0:
            raise ValueError(
                f"interval_s and cost_factor must be >= 0, got {interval_s!r}, {cost_factor!r}"
            )
        self.gates = list(gates)
        self.source = source
        self.interval_s = interval_s
        self.cost_factor = cost_factor
        self._clock = clock
        self.results: list[GateResult] = [
            g.gate.annotate(
                GateResult(g.name, g.expr, GateState.PENDING, None, 0, "waiting: not evaluated yet")
            )
            for g in self.gates
        ]
        self._metrics = [tuple(sorted(g.gate.metrics)) for g in self.gates]
        self._gated = frozenset(m for ms in self._metrics for m in ms)
        self._has_window = any(g.window_s is not None for g in self.gates)
        self._metric_v: dict[str, int] = dict.fromkeys(self._gated, 0)
        self._sessions_v = 0
        self._any_v = 0
        self._done_keys: list[tuple[Any, ...] | None] = [None] * len(self.gates)
        self._changed = asyncio.Event()
        self._closing = False
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: asyncio.Future[Any] | None = None
        self.evaluations = 0
        """Evaluations run (each of one or more gates)."""
        self.gate_evaluations = 0
        """Single gates evaluated, over all evaluations."""
        self.last_duration_s = 0.0
        """Wall time of the last evaluation, seconds."""
        self.busy_s = 0.0
        """CPU time of the worker thread spent evaluating, seconds, over the run."""
        self.panel = panel
        self.panel_result: Any = None
        """The last ``panel(source)`` result (None before the first)."""
        self._panel_key: int | None = None
        self.panel_evaluations = 0
        """Times ``panel`` was computed."""
        self.lanes = lanes
        self.per_group: list[bool] = [False] * len(self.gates)
        """Whether each result in ``results`` was judged over ``lanes``' groups."""

    # -- change counters (called on the loop) ---------------------------------------------

    def note_sessions(self) -> None:
        """A session was added, or finished: every gate's key changes."""
        self._sessions_v += 1
        self._changed.set()

    def note_samples(self, metrics: Iterable[str]) -> None:
        """A batch of samples of ``metrics`` (its distinct names) was folded in."""
        self._any_v += 1
        hit = self._gated.intersection(metrics)
        for m in hit:
            self._metric_v[m] += 1
        if hit or self._has_window:
            self._changed.set()

    def _key(self, i: int) -> tuple[Any, ...]:
        g = self.gates[i]
        metric_v = tuple(self._metric_v[m] for m in self._metrics[i])
        return (self._sessions_v, metric_v, self._any_v if g.window_s is not None else 0)

    def stale(self) -> list[int]:
        """Indices of the gates whose inputs changed since their last evaluation."""
        return [i for i in range(len(self.gates)) if self._done_keys[i] != self._key(i)]

    # -- evaluation -------------------------------------------------------------------------

    def _evaluate(
        self, indices: list[int], panel: bool = False
    ) -> tuple[dict[int, GateResult], float, float, bool]:
        """Runs in the worker thread: evaluate the given gates (and the panel when ``panel``),
        stop early when closing."""
        t0, c0 = time.perf_counter(), time.thread_time()
        out: dict[int, GateResult] = {}
        groups = self.lanes() if self.lanes is not None else ()
        for i in indices:
            if self._closing:
                break
            g = self.gates[i]
            try:
                if groups:
                    per_group = {name: evaluate_gates([g], src) for name, src in groups}
                    out[i] = worst_of_groups(per_group, 0, g.gate, per_host=True)
                else:
                    out[i] = evaluate_gates([g], self.source)[0]
            except Exception as exc:  # a broken gate must not stop the others or the run
                log.exception("gate %s could not be evaluated", g.name)
                out[i] = g.gate.annotate(
                    GateResult(
                        g.name, g.expr, GateState.PENDING, None, 0, f"could not be evaluated: {exc}"
                    )
                )
        if panel and self.panel is not None and not self._closing:
            try:
                self.panel_result = self.panel(self.source)
                self.panel_evaluations += 1
            except Exception:  # the panel is a view: it must never stop the gates or the run
                log.exception("comparison panel could not be computed")
        return out, time.perf_counter() - t0, time.thread_time() - c0, bool(groups)

    async def evaluate_now(self) -> int:
        """Evaluate the stale gates once, in the worker thread, and wait for it.

        Returns:
            The number of gates evaluated (0 when nothing changed).
        """
        indices = self.stale()
        panel_key = self._sessions_v
        panel = self.panel is not None and self._panel_key != panel_key
        if (not indices and not panel) or self._closing:
            return 0
        keys = {i: self._key(i) for i in indices}
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perfmon-gates")
        loop = asyncio.get_running_loop()
        fut = self._inflight = loop.run_in_executor(self._pool, self._evaluate, indices, panel)

        def done(f: asyncio.Future[Any]) -> None:
            if self._inflight is f:
                self._inflight = None

        fut.add_done_callback(done)
        results, wall, cpu, grouped = await asyncio.shield(fut)
        if panel:
            self._panel_key = panel_key
        for i, r in results.items():
            self.results[i] = r
            self.per_group[i] = grouped
            self._done_keys[i] = keys[i]
        self.evaluations += 1
        self.gate_evaluations += len(results)
        self.last_duration_s = wall
        self.busy_s += cpu
        return len(results)

    async def run(self) -> None:
        """Evaluate whenever inputs changed, coalesced and throttled; runs until cancelled."""
        next_at = self._clock()
        while not self._closing:
            await self._changed.wait()
            delay = next_at - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            self._changed.clear()
            await self.evaluate_now()
            next_at = self._clock() + max(self.interval_s, self.cost_factor * self.last_duration_s)

    def stats(self) -> dict[str, float]:
        """Counters for snapshots and benches: evaluations, gates evaluated, last duration
        (s), CPU time spent (s)."""
        return {
            "evaluations": self.evaluations,
            "gate_evaluations": self.gate_evaluations,
            "last_s": self.last_duration_s,
            "busy_s": self.busy_s,
            "panel_evaluations": self.panel_evaluations,
        }

    async def close(self) -> None:
        """Stop evaluating: an evaluation in flight stops after its current gate and is
        waited for; the worker thread is shut down. Idempotent."""
        self._closing = True
        self._changed.set()
        if self._inflight is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._inflight), timeout=60)
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
