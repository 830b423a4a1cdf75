"""Live gates judged per (set, host), as the run's end judges them (issue 16, point 3).

The run's live state (``perfmon.core.live.LiveState``) folds every session into one set of
aggregates. On a fleet that pools hosts, which the recorded statistics never do: at the end of
the run ``perfmon.engine.recorded.evaluate_recorded`` judges each (set, host) group apart and
combines the groups like sets (worst state, every group shown). ``HostLanes`` gives the live
gates the same shape while the run goes on: one small ``LiveState`` per (set, host) pair, a
*lane*, fed only what the gates read.

- **What a lane holds.** The sessions that ran on its host in its set (added when a session
  first reports its host, so a session that never reached a node is in no lane, as in
  ``gate_groups``), the samples of those sessions of the gated metrics only, and the
  machine-wide samples (session id < 0) that arrive while one of its sessions runs: the
  recorded groups take the machine-wide samples within their sessions' span.
- **What it costs.** Each gated sample is folded twice (the pooled state and one lane); the
  samples of other metrics are not folded into lanes at all, so a lane costs one boolean
  mask per batch when a workload floods metrics the gates do not read. ``bench/fleet.py
  --lanes`` measures the ingest ratio. The lanes are folded where the live state is, under the
  runner's live lock, off the sessions' hosts; the gate worker evaluates them in its own
  thread under its CPU bound (``perfmon.engine.gate_worker``), so a run with more lanes is
  evaluated less often, not with more CPU.
- **Memory.** A lane keeps at most ``LANE_SESSION_ROWS`` session rows and, per gated
  metric, the live state's bounded aggregates; lanes grow with sets x hosts, never with the
  number of sessions.

Lanes are named as the recorded groups are (``"golden @ gpu-a"``,
``perfmon.engine.recorded.HOST_SEPARATOR``), so the board and ``stop_when = "decided"``
read the live and the final results alike.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from perfmon.core.batch import SampleBatch
from perfmon.core.gates import live_selections
from perfmon.core.live import LiveState
from perfmon.core.model import SessionResult
from perfmon.engine.recorded import HOST_SEPARATOR

__all__ = ["LANE_SESSION_ROWS", "HostLanes"]

LANE_SESSION_ROWS = 200
"""Finished session rows a lane keeps; older ones are folded into its bounded per-session
values (``LiveState.max_session_rows``), which is all the gates read of them."""

_HOSTS_REMEMBERED = 4096
"""Session ids whose lane is remembered for late samples (the latest this many)."""


class HostLanes:
    """One small live state per (set, host) pair, for live gates judged per host.

    Args:
        gates: the campaign's gates (``perfmon.core.campaign.GateConfig``): their metrics,
            label selections and windows decide what a lane keeps.
        extra_metrics: other per-session metrics a lane keeps (the comparison panel's,
            ``perfmon.engine.live_compare.panel_metrics``), counted as gated below.
        run_id / campaign / run_dir / started_t: as ``LiveState``'s (the lanes' own
            snapshots are never built; these name them in logs).

    Feed it on the writer's side (with the runner's live lock held): ``update`` with every
    session update that carries a host, ``add_batch`` with every batch the pooled live state
    kept. Read ``lanes()`` (also under the lock) for the gate worker.
    """

    def __init__(
        self,
        gates: Sequence[Any],
        *,
        extra_metrics: Iterable[str] = (),
        run_id: str,
        campaign: str,
        run_dir: str,
        started_t: float,
    ) -> None:
        self._gated = frozenset(m for g in gates for m in g.gate.metrics) | frozenset(extra_metrics)
        self._selections = live_selections(gates)
        self._windows = {g.window_s for g in gates if g.window_s is not None}
        self._names = (run_id, campaign, run_dir, started_t)
        self._lanes: dict[tuple[str, str], LiveState] = {}
        self._lane_of: OrderedDict[int, tuple[str, str]] = OrderedDict()
        self._running: dict[int, tuple[str, str]] = {}
        self._keep_cache: dict[tuple[tuple[str, ...], tuple[Any, ...]], Any] = {}

    # -- feeding (lock held) ------------------------------------------------------------

    def update(self, result: SessionResult) -> None:
        """A session's update; one with a host adds the session to its (set, host) lane.

        Args:
            result: the session's result as the executor has it now (``host`` set once the
                session started on a node; updates without a host are ignored).
        """
        spec = result.spec
        key = self._lane_of.get(spec.id)
        if key is None:
            if not result.host:
                return
            key = (spec.set_name or "default", result.host)
            self._lane_of[spec.id] = key
            while len(self._lane_of) > _HOSTS_REMEMBERED:
                self._lane_of.popitem(last=False)
            lane = self._lanes.get(key)
            if lane is None:
                run_id, campaign, run_dir, started_t = self._names
                lane = self._lanes[key] = LiveState(
                    run_id=run_id,
                    campaign=campaign,
                    run_dir=run_dir,
                    started_t=started_t,
                    session_metrics=self._gated,
                    selections=self._selections,
                    windows=self._windows,
                    max_session_rows=LANE_SESSION_ROWS,
                )
            lane.add_session(spec)
        lane = self._lanes[key]
        if result.status.finished:
            self._running.pop(spec.id, None)
        else:
            self._running[spec.id] = key
        lane.update_session(result)

    def add_batch(self, batch: SampleBatch) -> None:
        """Fold the gated samples of a batch (as the pooled live state kept it) into lanes.

        A session's samples go to its lane; machine-wide samples (session < 0) to every lane
        with a session running now; samples of a session in no lane are not folded here.

        Args:
            batch: the batch ``LiveState.add_batch`` returned.
        """
        if not self._lanes or not len(batch):
            return
        batch = self._gated_part(batch)
        if not len(batch):
            return
        sessions = batch.session
        first = int(sessions[0])
        if (sessions == first).all():  # the usual case: one session's read
            for key in self._keys_of(first):
                self._lanes[key].add_batch(batch)
            return
        for sid in np.unique(sessions):
            keys = self._keys_of(int(sid))
            if keys:
                part = batch.take(sessions == sid)
                for key in keys:
                    self._lanes[key].add_batch(part)

    def _gated_part(self, batch: SampleBatch) -> SampleBatch:
        """The batch's samples of gated metrics, with a key table of those metrics only (so
        that a lane never learns the names of a flood the gates do not read)."""
        table = (batch.metrics, batch.kinds)
        cached = self._keep_cache.get(table)
        if cached is None:
            keep = np.fromiter((m in self._gated for m in batch.metrics), bool, len(batch.metrics))
            remap = np.cumsum(keep, dtype=np.int32) - 1
            kept = np.flatnonzero(keep)
            cached = (
                keep,
                remap,
                tuple(batch.metrics[i] for i in kept),
                tuple(batch.kinds[i] for i in kept),
            )
            if len(self._keep_cache) > 256:
                self._keep_cache.clear()
            self._keep_cache[table] = cached
        keep, remap, metrics, kinds = cached
        if len(metrics) == len(batch.metrics):
            return batch
        if not metrics:
            return SampleBatch.empty()
        mask = keep[batch.key]
        return SampleBatch(
            batch.t[mask],
            batch.session[mask],
            remap[batch.key[mask]],
            batch.value[mask],
            metrics,
            kinds,
        )

    def _keys_of(self, sid: int) -> Iterable[tuple[str, str]]:
        if sid < 0:
            return set(self._running.values())
        key = self._lane_of.get(sid)
        return () if key is None else (key,)

    # -- reading (lock held) ------------------------------------------------------------

    def lanes(self) -> list[tuple[str, LiveState]]:
        """The lanes as ``("SET @ HOST", live state)``, in the order their first session
        started on their host."""
        return [(f"{s}{HOST_SEPARATOR}{h}", lane) for (s, h), lane in self._lanes.items()]

    def __len__(self) -> int:
        return len(self._lanes)
