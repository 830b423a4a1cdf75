"""Sessions on a Ray cluster: ``[executor] kind = "ray"`` (the ``perfmon[ray]`` extra).

``RayExecutor`` implements ``perfmon.engine.executor.Executor``. Each session is one Ray
*streaming generator task* (``num_returns="streaming"``) that runs perfmon's own local
``Supervisor`` on the node it was placed on -- the same keeper, process group, capped logs,
probe channel and ``PR_SET_PDEATHSIG`` as a local run -- and yields one ordered stream back to
the daemon:

1. ``("hello", info)`` as soon as the task starts on its node: host name, host fingerprint,
   Ray node id, worker pid and the worker's clock;
2. ``("update", result)`` (the first one ``RUNNING``, with the session's start time) and
   ``("samples", batch)`` while the session runs -- the decoded probe samples and RSS samples,
   sent as they arrive, not at the end;
3. ``("log", stream, bytes)`` chunks of the session's stdout/stderr, within the campaign's
   ``log_cap`` per stream (the worker's copy is capped by its supervisor as well);
4. once, ``("result", result)``.

Traps handled (issue 16, each found by the prototypes):

- *Retries stitch two executions into one stream.* Every task is submitted with
  ``max_retries=0, retry_exceptions=False``: a session whose worker or node dies gets status
  ``LOST`` (``perfmon.core.model.SessionStatus.LOST``) with the Ray error as its reason, and is
  never re-run behind the runner's back.
- *The workload survives kill -9 of its Ray worker.* The worker-side supervisor's keeper is
  started from a thread that lives as long as the session, and sets ``PR_SET_PDEATHSIG``
  (``perfmon.engine.keeper``): when the worker dies, the keeper gets SIGTERM and ends the
  session's process group. ``tests/test_ray_executor.py`` kills a worker with SIGKILL and
  checks that no workload process is left.
- *The workload survives the death of its node.* When a node's raylet dies, its workers exit
  on their own, and on exit a Ray worker SIGKILLs its direct children
  (``RAY_kill_child_processes_on_worker_exit``, default true): the keeper, killed with no
  chance to end the session, left the workload running. perfmon's tasks run with that setting
  off (``runtime_env`` ``env_vars``, ``KILL_CHILDREN_ENV``), so the keeper outlives the
  worker by an instant, gets its ``PR_SET_PDEATHSIG`` and ends the session's process group
  (``tests/test_ray_executor.py::test_node_death_gives_lost_within_seconds_...``).
- *``RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper``* makes the raylet reap
  the worker's children, so ``os.wait4`` fails with ECHILD and the session's exit status, CPU
  time and memory are lost: it is refused (``RayExecutorError``) on the daemon and on the
  worker, with a message saying so.
- *An impossible placement waits forever.* Before submitting, the placement is checked
  against the alive nodes' total resources and labels (``feasible_nodes``); none: the run
  stops with ``PlacementError`` naming what was asked. A feasible placement that still gets no
  node within ``placement_timeout`` (the cluster is busy or a node went away) is cancelled and
  stops the run the same way.

Hosts: the daemon picks each session's node itself, before submitting it, and pins the task
there (a label selector on Ray's ``ray.io/node-id`` label: a hard pin). Sessions on different
hosts run concurrently (``concurrency`` is ``sessions_per_host`` times the alive nodes, so the
runner keeps that many in flight); on one host at most ``[executor] sessions_per_host``
(default 1) run at once. That limit is a per-node slot held on the daemon side
(``perfmon.engine.executor.HostSlots``), granted in hand-out order, so it holds whatever CPUs
the nodes declare, and the sessions of one host start in the scheduler's order. By default
(``pair_same_host``) every session of a workload and matrix point runs on the node its key was
first given -- the least loaded feasible node when the key is first seen, so workloads spread
over the hosts -- and a baseline and its candidate are measured on one instrument. If that
node leaves the cluster, the key's later sessions are ``LOST`` with that reason (never moved
to another host behind the user's back). Ray's own ``num_cpus`` still applies: a node must
declare at least ``num_cpus * sessions_per_host`` CPUs.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import os
import platform
import queue
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfmon.core.batch import SampleBatch
from perfmon.core.campaign import ExecutorSettings, Placement
from perfmon.core.model import SessionResult, SessionSpec, SessionStatus
from perfmon.core.protocol import Decoder
from perfmon.engine.executor import (
    Executor,
    ExecutorCallbacks,
    ExecutorConfig,
    ExecutorFactory,
    HostSlots,
)

if TYPE_CHECKING:
    from perfmon.engine.profiler import RemoteSpy, SpyOutcome

__all__ = [
    "SUBREAPER_ENV",
    "ClockOffset",
    "MixedHostsError",
    "PlacementError",
    "RayExecutor",
    "RayExecutorError",
    "check_placements",
    "estimate_offset",
    "feasible_nodes",
    "host_fingerprint",
    "ray_executor_factory",
]

SUBREAPER_ENV = "RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper"
"""Ray's setting that makes the raylet reap a worker's children (refused: see the module)."""

KILL_CHILDREN_ENV = "RAY_kill_child_processes_on_worker_exit"
"""Ray's setting that makes an exiting worker SIGKILL its direct children (the keeper): set to
false for perfmon's tasks, whose keeper ends the session itself (see the module)."""

NODE_ID_LABEL = "ray.io/node-id"
"""The label Ray puts on every node: its node id (a label selector on it pins a task)."""

LOG_POLL_S = 0.2
"""How often the worker side forwards new log bytes, seconds."""

PROBE_CHUNK_BYTES = 1 << 20
"""Most probe bytes one stream item carries (several reads of the channel, each with its
receipt time); the reads queued while the previous item was sent go out together."""

CLOCK_EXCHANGES = 5
"""Round trips to a node's agent per clock-offset estimate (the one with the shortest round
trip is kept, as NTP's clock filter does: RFC 5905 section 10)."""

CLOCK_REFRESH_S = 600.0
"""A node's clock offset is estimated again, between sessions, once it is this old, seconds
(starting its agent for that takes ~1 s on a small machine, spent between two sessions)."""

CLOCK_TIMEOUT_S = 30.0
"""Longest wait for a node's agent to start and answer, seconds (then the session's own
hello gives the offset, with a wider uncertainty)."""

AGENT_DRAIN_S = 10.0
"""Longest wait, before a session that is not profiled starts on a node, for the node's agent
to finish what the previous session's profile asked of it (seconds; then the session starts
anyway: a Ray call that slow is not one to wait for)."""


class RayExecutorError(RuntimeError):
    """The Ray executor cannot run sessions (Ray missing, cluster unreachable, a refused
    setting); the message says why and what to do."""


class MixedHostsError(RayExecutorError):
    """Sessions of one workload (and matrix point) ran on hosts of different fingerprints
    while the campaign does not allow it (``[executor] allow_mixed_hosts``)."""


class PlacementError(RayExecutorError):
    """No node of the cluster can take a session's placement (now, or within
    ``placement_timeout``)."""


def _subreaper_on(env: dict[str, str] | os._Environ[str]) -> bool:
    return env.get(SUBREAPER_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _refuse_subreaper(env: dict[str, str] | os._Environ[str], where: str) -> None:
    if _subreaper_on(env):
        raise RayExecutorError(
            f"{SUBREAPER_ENV} is set on {where}: the raylet would reap the session's "
            "processes, so its exit status, CPU time and memory could not be measured "
            f"(os.wait4 fails with ECHILD). Unset it (or set it to false) and start the "
            "Ray node again."
        )


def host_fingerprint() -> str:
    """What makes this host a comparable instrument: ``"cpu=<model>;cores=<n>;mem=<GiB>;
    kernel=<release>;gpu=<models>"`` (GPU from ``nvidia-smi -L`` where present, else
    ``none``). Two sessions are comparable like-for-like only on equal fingerprints."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = 0.0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / (1 << 20)
                break
    gpus = "none"
    with contextlib.suppress(OSError, FileNotFoundError):
        import subprocess

        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=5, check=False
        )
        models = sorted(
            {
                ln.split(":", 1)[1].split("(")[0].strip()
                for ln in out.stdout.splitlines()
                if ":" in ln
            }
        )
        if models:
            gpus = ",".join(models)
    return (
        f"cpu={cpu};cores={os.cpu_count() or 0};mem={mem_gib:.0f}GiB;"
        f"kernel={platform.release()};gpu={gpus}"
    )


# ----------------------------------------------------------------------- the worker side
class _WorkerSide:
    """One per Ray worker process: an event loop in a thread that lives as long as the worker,
    and a local ``Supervisor`` (with its keeper) per configuration, reused from session to
    session as the daemon reuses its own. The keeper is forked from that thread, so its
    ``PR_SET_PDEATHSIG`` (which fires when the forking *thread* ends) fires exactly when the
    worker dies. A Ray worker runs one task at a time, so one session at a time uses it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="perfmon-ray-worker", daemon=True
        )
        self.thread.start()
        self.out: queue.Queue[tuple[Any, ...]] | None = None
        self.sups: dict[tuple[Any, ...], Any] = {}
        self.log_dir = Path(tempfile.mkdtemp(prefix="perfmon-ray-"))

    def _emit(self, item: tuple[Any, ...]) -> None:
        out = self.out
        if out is not None:
            out.put(item)

    def supervisor(self, cfg: dict[str, Any]) -> Any:
        from perfmon.engine.supervisor import Supervisor

        key = tuple(sorted(cfg.items()))
        sup = self.sups.get(key)
        if sup is None:
            made: list[Any] = []

            def on_update(r: SessionResult) -> None:
                # the session's pid on this host travels with its updates (for py-spy here)
                self._emit(("update", copy.copy(r), made[0].pid_of(r.spec.id)))

            sup = self.sups[key] = Supervisor(
                log_dir=self.log_dir,
                log_cap_bytes=cfg["log_cap_bytes"],
                sample_interval_s=cfg["sample_interval_s"],
                grace_s=cfg["grace_s"],
                on_samples=lambda b: self._emit(("samples", b)),
                on_update=on_update,
                default_timeout_s=cfg["default_timeout_s"],
                default_idle_timeout_s=cfg["default_idle_timeout_s"],
                on_probe_bytes=lambda _sid, t, data: self._emit(("probe", t, data)),
            )
            made.append(sup)
        return sup


_WORKER: _WorkerSide | None = None
_WORKER_LOCK = threading.Lock()


def _worker_side() -> _WorkerSide:
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            _WORKER = _WorkerSide()
        return _WORKER


@functools.lru_cache(maxsize=1)
def _hello_static() -> tuple[str, str]:
    return socket.gethostname(), host_fingerprint()


def _session_stream(spec: SessionSpec, cfg: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
    """The Ray task body: run ``spec`` with a local ``Supervisor`` on this node, yield the
    stream described in the module docstring."""
    _refuse_subreaper(os.environ, f"Ray node {socket.gethostname()}")
    import ray

    host, fingerprint = _hello_static()
    yield (
        "hello",
        {
            "host": host,
            "fingerprint": fingerprint,
            "node_id": ray.get_runtime_context().get_node_id(),
            "worker_pid": os.getpid(),
            "t": time.time(),
        },
    )
    side = _worker_side()
    out: queue.Queue[tuple[Any, ...]] = queue.Queue()
    side.out = out
    sup = side.supervisor(cfg)

    async def run() -> None:
        try:
            out.put(("result", await sup.run_session(spec)))
        except BaseException as exc:  # reported, never swallowed silently
            out.put(("error", f"{type(exc).__name__}: {exc}"))

    fut = asyncio.run_coroutine_threadsafe(run(), side.loop)
    sent = {"stdout": 0, "stderr": 0}
    cap = cfg["log_cap_bytes"]
    logs_due = time.monotonic() + LOG_POLL_S
    try:
        while True:
            try:
                first = out.get(timeout=LOG_POLL_S)
            except queue.Empty:
                yield from _log_chunks(sup, spec.id, sent, cap)
                logs_due = time.monotonic() + LOG_POLL_S
                continue
            items = _drain_queue(out, first)
            ending = any(item[0] in ("result", "error") for item in items)
            if ending or time.monotonic() >= logs_due or any(i[0] == "update" for i in items):
                yield from _log_chunks(sup, spec.id, sent, cap)
                logs_due = time.monotonic() + LOG_POLL_S
            for item in _coalesce(items):
                if item[0] in ("result", "error"):
                    yield from _log_chunks(sup, spec.id, sent, cap)
                    yield item
                    return
                yield item
    except (KeyboardInterrupt, GeneratorExit):  # ray.cancel: end the session, then go
        end = asyncio.run_coroutine_threadsafe(sup.cancel_all(), side.loop)
        with contextlib.suppress(Exception):
            end.result(timeout=cfg["grace_s"] + 5)
        with contextlib.suppress(Exception):
            fut.result(timeout=cfg["grace_s"] + 5)
        # a cancelled supervisor cancels every later session: the next task gets a new one
        side.sups.pop(tuple(sorted(cfg.items())), None)
        side.loop.call_soon_threadsafe(sup.close)
        raise
    finally:
        side.out = None
        for path in sup.log_paths(spec.id):
            with contextlib.suppress(OSError):
                path.unlink()


def _drain_queue(
    out: queue.Queue[tuple[Any, ...]], first: tuple[Any, ...]
) -> list[tuple[Any, ...]]:
    """``first`` and whatever else is queued now (no waiting), up to ``PROBE_CHUNK_BYTES`` of
    probe bytes: under load the stream's items grow, idle they go out at once."""
    items = [first]
    size = len(first[2] or b"") if first[0] == "probe" else 0
    while size < PROBE_CHUNK_BYTES:
        try:
            item = out.get_nowait()
        except queue.Empty:
            break
        items.append(item)
        if item[0] == "probe":
            size += len(item[2] or b"")
    return items


def _coalesce(items: list[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """Runs of ``("probe", t, data)`` become one ``("probe", [(t, data), ...])`` item of at
    most ``PROBE_CHUNK_BYTES`` (a single larger read stays whole); other items pass in
    order. Each read keeps its own receipt time, so the daemon's decoder stamps samples as a
    local session's decoder would."""
    run: list[tuple[float, bytes | None]] = []
    size = 0
    for item in items:
        if item[0] == "probe":
            n = len(item[2] or b"")
            if run and size + n > PROBE_CHUNK_BYTES:
                yield ("probe", run)
                run, size = [], 0
            run.append((item[1], item[2]))
            size += n
            continue
        if run:
            yield ("probe", run)
            run, size = [], 0
        yield item
    if run:
        yield ("probe", run)


def _log_chunks(
    sup: Any, session_id: int, sent: dict[str, int], cap: int
) -> Iterator[tuple[Any, ...]]:
    for stream, path in zip(("stdout", "stderr"), sup.log_paths(session_id), strict=True):
        room = cap - sent[stream]
        if room <= 0:
            continue
        try:
            with open(path, "rb") as f:
                f.seek(sent[stream])
                data = f.read(min(room, 1 << 20))
        except OSError:
            continue
        if data:
            sent[stream] += len(data)
            yield ("log", stream, data)


# ----------------------------------------------------------------------- clocks and agents
@dataclass(frozen=True, slots=True)
class ClockOffset:
    """A worker host's clock against the daemon's, from one request/response exchange.

    Attributes:
        offset_s: the worker's clock minus the daemon's, seconds (a worker time ``t`` is
            ``t - offset_s`` on the daemon's axis: ``to_daemon``).
        uncertainty_s: half the exchange's round trip, seconds: the true offset lies within
            ``offset_s +- uncertainty_s`` whatever the split of the round trip between the two
            directions (the worker read its clock between the send and the receipt), so this
            is a bound, not a statistical interval.
        measured_t: the daemon's time of the exchange, Unix seconds.
        source: ``"agent"`` (round trips to the node's agent actor) or ``"hello"`` (the
            session task's submission and its first stream item: wider).
    """

    offset_s: float
    uncertainty_s: float
    measured_t: float
    source: str

    def to_daemon(self, t: float) -> float:
        """``t`` (Unix seconds on the worker's clock) on the daemon's clock."""
        return t - self.offset_s


def estimate_offset(exchanges: list[tuple[float, float, float]], source: str) -> ClockOffset:
    """The clock offset of a remote host from request/response exchanges, by NTP's on-wire
    method (RFC 5905, section 8: offset = ((T2 - T1) + (T3 - T4)) / 2, delay = (T4 - T1) -
    (T3 - T2)) with the remote's receive and send times equal (one clock reading, T2 = T3), and
    NTP's clock filter's choice of the exchange with the shortest round trip (section 10).

    Args:
        exchanges: ``(t_send, t_remote, t_recv)`` per exchange: the daemon's clock when the
            request left and when the answer came back, and the remote's clock read in
            between, Unix seconds.
        source: stored in the result (``ClockOffset.source``).

    Returns:
        ``offset_s = t_remote - (t_send + t_recv) / 2`` and ``uncertainty_s = (t_recv -
        t_send) / 2`` of the exchange with the shortest round trip.

    Raises:
        ValueError: no exchange, or one that comes back before it was sent.
    """
    if not exchanges:
        raise ValueError("no clock exchange to estimate an offset from")
    for t_send, _t_remote, t_recv in exchanges:
        if not t_recv >= t_send:
            raise ValueError(f"an exchange came back ({t_recv}) before it was sent ({t_send})")
    t_send, t_remote, t_recv = min(exchanges, key=lambda e: e[2] - e[0])
    return ClockOffset(
        offset_s=t_remote - (t_send + t_recv) / 2,
        uncertainty_s=(t_recv - t_send) / 2,
        measured_t=t_recv,
        source=source,
    )


class _NodeAgent:
    """A small Ray actor pinned to one node (``num_cpus = 0``: it takes no session slot): it
    answers clock reads for the offset estimate and runs py-spy on that node against a
    session's pid. The daemon starts one for each use (``RayExecutor.start`` before any
    session; a refresh between sessions; a profile) and ends it after; in a run that profiles,
    it is kept ready for the sessions to be profiled (``RayExecutor.profile_hint``)."""

    async def now(self) -> float:
        """This host's clock, Unix seconds."""
        return time.time()

    async def profile(
        self, pid: int, seconds: float | None, rate: int, nonblocking: bool, subprocesses: bool
    ) -> Any:
        """py-spy against ``pid`` on this node (``perfmon.engine.profiler.run_py_spy``);
        returns its ``SpyOutcome``."""
        import shutil

        from perfmon.engine.profiler import find_py_spy, run_py_spy

        work = Path(tempfile.mkdtemp(prefix="perfmon-spy-"))
        try:
            return await run_py_spy(
                find_py_spy(), pid, seconds, rate, nonblocking, subprocesses, work, f"p{pid}"
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)


async def _ready_before(agent: Any, ended: asyncio.Event) -> bool:
    """Whether ``agent`` (a ``_NodeAgent`` handle) answers before ``ended`` is set; if not,
    the pending call is cancelled. Raises what the agent's call raised (e.g. ActorDiedError)."""
    import ray

    ref = agent.now.remote()
    answer = asyncio.wrap_future(ref.future())
    waiter = asyncio.ensure_future(ended.wait())
    try:
        await asyncio.wait({answer, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if answer.done():
            answer.result()
            return True
        with contextlib.suppress(Exception):
            ray.cancel(ref)
        return False
    finally:
        waiter.cancel()
        if not answer.done():
            answer.cancel()


# ----------------------------------------------------------------------- the daemon side
def feasible_nodes(placement: Placement, nodes: list[dict[str, Any]]) -> list[str]:
    """The ids of the alive nodes whose *total* resources and labels can take ``placement``.

    Args:
        placement: what a session asks for.
        nodes: ``ray.nodes()`` (each with ``Alive``, ``NodeID``, ``Resources``, ``Labels``).

    Returns:
        Node ids, possibly empty (then no node will ever run the session).
    """
    need = {"CPU": placement.num_cpus, "GPU": placement.num_gpus, **dict(placement.resources)}
    out = []
    for node in nodes:
        if not node.get("Alive"):
            continue
        have = node.get("Resources") or {}
        labels = node.get("Labels") or {}
        if any(amount > 0 and have.get(name, 0.0) < amount for name, amount in need.items()):
            continue
        if any(labels.get(k) != v for k, v in placement.labels):
            continue
        out.append(str(node["NodeID"]))
    return out


def _describe(placement: Placement) -> str:
    parts = [f"num_cpus={placement.num_cpus:g}"]
    if placement.num_gpus:
        parts.append(f"num_gpus={placement.num_gpus:g}")
    parts += [f"{k}={v:g}" for k, v in placement.resources]
    parts += [f"label {k}={v}" for k, v in placement.labels]
    return ", ".join(parts)


def check_placements(settings: ExecutorSettings, sessions: list[tuple[str, str]]) -> list[str]:
    """Check every (workload, variant) placement against the cluster's alive nodes, for
    ``perfmon validate``.

    Args:
        settings: the campaign's ``[executor]`` table (its ``address`` is connected to, and
            disconnected from afterwards when this call made the connection).
        sessions: the (workload, variant) pairs the campaign runs.

    Returns:
        One message per placement no node can take (empty: all can run).

    Raises:
        RayExecutorError: Ray is missing or the cluster cannot be reached.
    """
    _refuse_subreaper(os.environ, "this host")
    try:
        import ray as ray_module
    except ImportError as exc:
        raise RayExecutorError("Ray is not installed: pip install 'perfmon[ray]'") from exc
    ray: Any = ray_module
    connected_here = not ray.is_initialized()
    if connected_here:
        try:
            ray.init(address=settings.address, log_to_driver=False, include_dashboard=False)
        except Exception as exc:
            raise RayExecutorError(
                f"cannot reach the Ray cluster at {settings.address!r}: {exc}"
            ) from exc
    try:
        nodes = ray.nodes()
    finally:
        if connected_here:
            ray.shutdown()
    out = []
    for workload, variant in dict.fromkeys(sessions):
        placement = settings.placement_for(workload, variant)
        if not feasible_nodes(placement, nodes):
            out.append(
                f"[executor.placement]: no node of the cluster can run {workload}/{variant} "
                f"({_describe(placement)})"
            )
    return out


class RayExecutor:
    """Runs each session as a Ray task on the cluster (see the module docstring).

    Args:
        config: log directory and cap, sampling interval, grace, default limits.
        callbacks: the runner's ``on_samples`` / ``on_update`` (called on the loop).
        settings: the campaign's ``[executor]`` table (address, placements, timeouts).
        init_kwargs: extra ``ray.init`` arguments (tests); Ray is initialised by ``start``
            or the first session unless it already is.
        clock: the daemon's clock, Unix seconds (``time.time``; a test passes a skewed one to
            check that worker times land on the daemon's axis).

    Raises (from ``run_session``, which stops the run with the message):
        RayExecutorError: Ray is not installed, the cluster cannot be reached, or
            ``SUBREAPER_ENV`` is set.
        PlacementError: no node can take a session's placement (now or within
            ``settings.placement_timeout_s``).
        MixedHostsError: a session of a workload and matrix point landed on a host whose
            fingerprint differs from its earlier sessions' (unless ``allow_mixed_hosts``);
            that session is cancelled first.
    """

    def __init__(
        self,
        config: ExecutorConfig,
        callbacks: ExecutorCallbacks,
        settings: ExecutorSettings,
        *,
        init_kwargs: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._clock = clock
        self.callbacks = callbacks
        self.settings = settings
        self.init_kwargs = dict(init_kwargs or {})
        self._cancelled = False
        self._running: dict[int, Any] = {}
        self._ended: dict[int, asyncio.Event] = {}  # session id -> set when it has ended
        self.slots = HostSlots(settings.sessions_per_host)
        """Per-node session slots (``[executor] sessions_per_host``), and the pins."""
        self._pins: dict[Any, str] = self.slots.pins
        self._alive_nodes = 1
        self._fingerprints: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        self._task: Any = None
        self.hosts: dict[int, str] = {}
        """Session id -> the Ray node id it ran on (for tests and the report)."""
        self.worker_pids: dict[int, int] = {}
        """Session id -> the pid of the Ray worker running it (while it runs)."""
        self.session_pids: dict[int, int] = {}
        """Session id -> the session's process id on its node (while it runs)."""
        self.host_names: dict[int, str] = {}
        """Session id -> its host's name (while it runs)."""
        self.offsets: dict[str, ClockOffset] = {}
        """Node id -> the latest agent estimate of its clock offset."""
        self._agents: dict[str, list[Any]] = {}  # node id -> [actor handle, uses]
        self._agent_gone: dict[str, asyncio.Event] = {}  # node id -> set when its agent ends
        self._closed = False
        self._held: set[str] = set()  # nodes whose agent is kept for their next session
        self.profile_hint: Callable[[SessionSpec], bool] | None = None
        """Set by the runner: whether it will profile a session when it starts (a hint: the
        node's agent is started with the session, so py-spy does not wait for a cold actor)."""

    # -- Ray setup -------------------------------------------------------------------------
    def _ray(self) -> Any:
        _refuse_subreaper(os.environ, "the perfmon daemon's host")
        try:
            import ray
        except ImportError as exc:
            raise RayExecutorError(
                "[executor] kind = \"ray\" needs Ray: pip install 'perfmon[ray]'"
            ) from exc
        if not ray.is_initialized():
            try:
                ray.init(
                    address=self.settings.address,
                    log_to_driver=False,
                    include_dashboard=False,
                    **self.init_kwargs,
                )
            except Exception as exc:
                raise RayExecutorError(
                    f"cannot reach the Ray cluster at {self.settings.address!r}: {exc}"
                ) from exc
        if self._task is None:
            self._task = ray.remote(_session_stream)
        return ray

    def _options(self, ray: Any, spec: SessionSpec) -> tuple[dict[str, Any], Placement, list[str]]:
        placement = self.settings.placement_for(spec.workload, spec.variant)
        alive = ray.nodes()
        self._alive_nodes = max(1, sum(1 for n in alive if n.get("Alive")))
        nodes = feasible_nodes(placement, alive)
        if not nodes:
            raise PlacementError(
                f"no node of the Ray cluster can run {spec.workload}/{spec.variant} "
                f"({_describe(placement)}); check [executor.placement] and the nodes' "
                "--resources / --labels / GPUs"
            )
        opts: dict[str, Any] = {
            "num_returns": "streaming",
            "max_retries": 0,
            "retry_exceptions": False,
            "num_cpus": placement.num_cpus,
            "num_gpus": placement.num_gpus,
            "runtime_env": {"env_vars": {KILL_CHILDREN_ENV: "false"}},
        }
        if placement.resources:
            opts["resources"] = dict(placement.resources)
        if placement.labels:
            opts["label_selector"] = dict(placement.labels)
        return opts, placement, nodes

    @staticmethod
    def _pair_key(spec: SessionSpec) -> tuple[str, tuple[tuple[str, str], ...]]:
        return spec.workload, tuple(sorted((str(k), str(v)) for k, v in spec.params))

    # -- Executor --------------------------------------------------------------------------
    async def start(self) -> str:
        """Connect to the cluster, count its alive nodes (``concurrency``) and, before any
        session runs, estimate every alive node's clock offset through an agent started there
        for it and ended after (so no session's host is disturbed by either; when the run
        profiles sessions, ``profile_hint`` set, a node's agent is kept until its first session
        gets the node, and then kept through it only if that session is to be profiled). Best
        effort: a cluster that cannot be reached is reported by the first ``run_session``
        (which stops the run with the reason).

        Returns:
            The containment, for the manifest: each session runs under perfmon's keeper on
            its node (a child subreaper of the Ray worker, with PR_SET_PDEATHSIG).
        """
        with contextlib.suppress(Exception):
            ray = self._ray()
            nodes = [str(n["NodeID"]) for n in ray.nodes() if n.get("Alive")]
            self._alive_nodes = max(1, len(nodes))
            if self.profile_hint is not None:
                # The run profiles sessions: each node keeps the agent started here until its
                # first session gets the node (then ended unless that session is profiled).
                for n in nodes:
                    self._take_agent(n)
                    self._held.add(n)
            await asyncio.gather(*(self._refresh_offset(n) for n in nodes))
        return "ray: keeper-subreaper on each node"

    @property
    def concurrency(self) -> int:
        """Sessions the runner may hand over at once: ``sessions_per_host`` times the alive
        nodes (as last counted); each node still runs at most ``sessions_per_host``."""
        return self.slots.per_host * self._alive_nodes

    def withdraw(self, session_id: int) -> bool:
        """Take back a session still waiting for its node's slot (on pause): its
        ``run_session`` returns a ``PENDING`` result. False if it is not waiting."""
        return self.slots.withdraw(session_id)

    # -- clocks and agents ----------------------------------------------------------------
    def _take_agent(self, node_id: str) -> Any:
        """The node's agent actor for one use, started if none runs (pinned, ``num_cpus =
        0``); give it back with ``_give_agent``. An agent lives only while it is used: an
        idle Ray actor still costs its host ~5 ms of CPU per second (its core worker's
        threads; measured with psutil), which a session running there would pay."""
        entry = self._agents.get(node_id)
        if entry is None:
            import ray
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            cls = ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)(_NodeAgent)
            handle = cls.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)
            ).remote()
            entry = self._agents[node_id] = [handle, 0]
            self._agent_gone[node_id] = asyncio.Event()
        entry[1] += 1
        return entry[0]

    async def _agent_ended(self, node_id: str, timeout_s: float = AGENT_DRAIN_S) -> None:
        """Wait (at most ``timeout_s``) until ``node_id`` has no agent: the last session's
        profile may still be handing back py-spy's result (its session has ended, so py-spy
        has stopped); a session that is not profiled starts only once that agent has ended."""
        gone = self._agent_gone.get(node_id)
        if gone is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gone.wait(), timeout_s)

    def _give_agent(self, node_id: str) -> None:
        """End one use of the node's agent; the last one ends the actor."""
        entry = self._agents.get(node_id)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self._agents[node_id]
            self._agent_gone.pop(node_id).set()
            import ray

            with contextlib.suppress(Exception):
                ray.kill(entry[0])

    async def _refresh_offset(self, node_id: str) -> ClockOffset | None:
        """Estimate ``node_id``'s clock offset from ``CLOCK_EXCHANGES`` round trips to its
        agent (``estimate_offset``) and keep it in ``offsets``; None when the agent does not
        answer within ``CLOCK_TIMEOUT_S`` (the sessions' hellos are used then)."""

        async def exchanges() -> list[tuple[float, float, float]]:
            await agent.now.remote()  # the first call waits for the actor to start: not used
            out = []
            for _ in range(CLOCK_EXCHANGES):
                t_send = self._clock()
                t_remote = float(await agent.now.remote())
                out.append((t_send, t_remote, self._clock()))
            return out

        agent = self._take_agent(node_id)
        try:
            found = estimate_offset(
                await asyncio.wait_for(exchanges(), CLOCK_TIMEOUT_S), source="agent"
            )
        except Exception:
            return None
        finally:
            self._give_agent(node_id)
        self.offsets[node_id] = found
        return found

    def profile_remote(self, session_id: int) -> tuple[int, RemoteSpy, str] | None:
        """How to py-spy a running session on its own host (the runner's ``profile``).

        Args:
            session_id: the session.

        Returns:
            ``(pid, remote, host)``: the session's pid on its node, a
            ``perfmon.engine.profiler.RemoteSpy`` that runs py-spy there through the node's
            agent (started for the profile and ended after it, so its start, ~1 s on a small
            machine, delays the first sample; a Ray failure comes back as a failed
            ``SpyOutcome``; cancelling it cancels py-spy), and the host's name; None when
            the session is not running.
        """
        pid = self.session_pids.get(session_id)
        node = self.hosts.get(session_id)
        if pid is None or node is None or session_id not in self._running:
            return None
        host = self.host_names.get(session_id, node)

        async def remote(
            pid: int, seconds: float | None, rate: int, nonblocking: bool, subprocesses: bool
        ) -> SpyOutcome:
            import ray

            from perfmon.engine.profiler import SpyOutcome

            asked = self._clock()

            def failed(exc: BaseException | None) -> SpyOutcome:
                waited = f"{self._clock() - asked:.1f} s after the request"
                if exc is None or self._closed:  # the session or the run ended first
                    what = "the run" if self._closed else "the session"
                    return SpyOutcome(
                        None,
                        start_error=(
                            f"on {host}: {what} ended {waited}, before py-spy's agent there "
                            "was ready (a Ray actor starts slowly on a busy host)"
                        ),
                    )
                why = str(exc).splitlines()[0] if str(exc) else ""
                return SpyOutcome(None, start_error=f"on {host}: {type(exc).__name__}: {why}")

            agent = self._take_agent(node)
            ended = self._ended.get(session_id)
            try:  # the agent may be starting: give up when the session ends first
                ready = ended is None or await _ready_before(agent, ended)
            except Exception as exc:
                self._give_agent(node)
                return failed(exc)
            except BaseException:
                self._give_agent(node)
                raise
            if not ready:
                self._give_agent(node)
                return failed(None)
            ref = agent.profile.remote(pid, seconds, rate, nonblocking, subprocesses)
            try:
                got = await ref
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
                raise
            except Exception as exc:
                return failed(exc)
            finally:
                self._give_agent(node)
            if not isinstance(got, SpyOutcome):
                return SpyOutcome(None, start_error=f"on {host}: unexpected answer {got!r}")
            if got.start_error is not None:
                return replace(got, start_error=f"on {host}: {got.start_error}")
            return got

        return pid, remote, host

    async def run_session(self, spec: SessionSpec) -> SessionResult:
        """Run ``spec`` on the cluster (see ``Executor.run_session``); a dead worker or node
        gives ``LOST``. The session first waits for a slot on its node (``HostSlots``);
        withdrawn meanwhile (``withdraw``), it returns its result still ``PENDING``."""
        result = SessionResult(spec=spec)
        if self._cancelled:
            return self._cancelled_before_start(result)
        ray = self._ray()
        opts, placement, nodes = self._options(ray, spec)
        key = self._pair_key(spec)
        hosts = self.slots.hosts_for(key, nodes, pair=self.settings.pair_same_host)
        if not hosts:
            result.status = SessionStatus.LOST
            result.error = (
                f"lost: node {self._pins.get(key)} of {spec.workload} (pair_same_host) is no "
                "longer in the cluster; its sessions are not moved to another host"
            )
            result.end_t = time.time()
            self.callbacks.on_update(result)
            return result
        node = await self.slots.acquire(spec.id, hosts)
        if node is None:  # withdrawn (pause) or cancelled while waiting for the node
            return self._cancelled_before_start(result) if self._cancelled else result
        # A session the runner will profile: its node's agent starts now, beside the session's
        # own task, so py-spy is ready when the session is (a cold agent takes ~1 s on an idle
        # 2-core host and 12-13 s on a loaded one; started at the profile request, it missed
        # 4-second sessions). It is kept after the session for the node's next one, and ended
        # as that one gets the node unless it is to be profiled too: an agent never idles
        # through a session that is not profiled (with the default one session per host).
        warm = self.profile_hint is not None and self.profile_hint(spec)
        if node in self._held:  # an agent kept (by ``start`` or the last session)
            self._held.discard(node)
            if not warm:
                self._give_agent(node)  # ended before this session starts: it costs it nothing
        elif warm:
            self._take_agent(node)
        if not warm and self.slots.per_host == 1:
            await self._agent_ended(node)
        try:
            # Ray's default node label: a hard pin that combines with the placement's labels
            # (the label selector replaces NodeAffinitySchedulingStrategy(soft=False)).
            opts["label_selector"] = {**opts.get("label_selector", {}), NODE_ID_LABEL: node}
            return await self._run_on(ray, spec, result, opts, placement)
        finally:
            if warm:
                if node in self._held or self._closed:
                    self._give_agent(node)
                else:  # kept for the node's next session, ended then unless it is profiled
                    self._held.add(node)
            self.slots.release(node)

    def _cancelled_before_start(self, result: SessionResult) -> SessionResult:
        result.status = SessionStatus.CANCELLED
        result.error = "the run was stopped"
        self.callbacks.on_update(result)
        return result

    async def _run_on(
        self,
        ray: Any,
        spec: SessionSpec,
        result: SessionResult,
        opts: dict[str, Any],
        placement: Placement,
    ) -> SessionResult:
        """Submit ``spec`` with ``opts`` (its node's slot held) and follow its stream."""
        if self._cancelled:
            return self._cancelled_before_start(result)
        cfg = {
            "log_cap_bytes": self.config.log_cap_bytes,
            "sample_interval_s": self.config.sample_interval_s,
            "grace_s": self.config.grace_s,
            "default_timeout_s": self.config.default_timeout_s,
            "default_idle_timeout_s": self.config.default_idle_timeout_s,
        }
        submitted = self._clock()
        gen = self._task.options(**opts).remote(spec, cfg)
        self._running[spec.id] = gen
        ended = self._ended[spec.id] = asyncio.Event()
        logs = _LocalLogs(self.log_paths(spec.id), self.config.log_cap_bytes)
        decoder = Decoder(spec.id)  # the probe channel's raw bytes are decoded here
        clock: ClockOffset | None = None
        node = ""
        hello = False
        try:
            while True:
                try:
                    if hello:
                        ref = await gen.__anext__()
                    else:
                        ref = await asyncio.wait_for(
                            gen.__anext__(), timeout=self.settings.placement_timeout_s
                        )
                    item = await ref
                except StopAsyncIteration:
                    if not result.status.finished:
                        result.status = SessionStatus.LOST
                        result.error = "the Ray task ended without a result"
                    break
                except TimeoutError:
                    with contextlib.suppress(Exception):
                        ray.cancel(gen, force=True)
                    raise PlacementError(
                        f"{spec.workload}/{spec.variant} ({_describe(placement)}) got no node "
                        f"within {self.settings.placement_timeout_s:g}s "
                        "([executor] placement_timeout)"
                    ) from None
                kind = item[0]
                if kind == "hello":
                    hello = True
                    info = item[1]
                    result.host = str(info["host"])
                    result.host_fingerprint = str(info["fingerprint"])
                    node = str(info["node_id"])
                    clock = self._session_clock(node, submitted, float(info["t"]))
                    result.extra["clock_offset_s"] = clock.offset_s
                    result.extra["clock_offset_uncertainty_s"] = clock.uncertainty_s
                    result.extra["worker_pid"] = float(info["worker_pid"])
                    self.hosts[spec.id] = node
                    self.host_names[spec.id] = result.host
                    self.worker_pids[spec.id] = int(info["worker_pid"])
                    if self.settings.pair_same_host:
                        self._pins.setdefault(self._pair_key(spec), str(info["node_id"]))
                    first = self._fingerprints.setdefault(
                        self._pair_key(spec), result.host_fingerprint
                    )
                    if first != result.host_fingerprint and not self.settings.allow_mixed_hosts:
                        with contextlib.suppress(Exception):
                            ray.cancel(gen, force=True)
                        raise MixedHostsError(
                            f"{spec.workload}/{spec.variant} landed on {result.host} "
                            f"({result.host_fingerprint}), unlike its earlier sessions "
                            f"({first}): comparing across different hosts is refused; pin "
                            "the placement to one kind of host, or set [executor] "
                            "allow_mixed_hosts = true"
                        )
                elif kind == "samples":  # the worker's RSS samples
                    self.callbacks.on_samples(_shifted(item[1], clock))
                elif kind == "probe":  # raw probe bytes, each read with its receipt time
                    for t, data in item[1]:
                        batch = (
                            decoder.close_batch(t) if data is None else decoder.feed_batch(data, t)
                        )
                        result.malformed = decoder.malformed
                        if batch:
                            result.samples += len(batch)
                            self.callbacks.on_samples(_shifted(batch, clock))
                elif kind in ("update", "result"):
                    if kind == "update" and len(item) > 2 and item[2] is not None:
                        self.session_pids[spec.id] = int(item[2])
                    self._merge(result, item[1], clock)
                    if kind == "result" or not result.status.finished:
                        self.callbacks.on_update(result)
                    if kind == "result":
                        break
                elif kind == "log":
                    logs.write(item[1], item[2])
                elif kind == "error":
                    result.status = SessionStatus.LOST
                    result.error = f"the session's Ray task failed: {item[1]}"
                    break
        except (PlacementError, RayExecutorError):
            raise
        except Exception as exc:
            result.status = SessionStatus.CANCELLED if self._cancelled else self._lost_status(exc)
            result.error = (
                "the run was stopped"
                if self._cancelled
                else f"lost: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            )
        finally:
            self._running.pop(spec.id, None)
            ended.set()
            self._ended.pop(spec.id, None)
            self.worker_pids.pop(spec.id, None)
            self.session_pids.pop(spec.id, None)
            self.host_names.pop(spec.id, None)
            logs.close()
        result.malformed = decoder.malformed
        if result.status is not SessionStatus.OK and result.end_t is None:
            result.end_t = self._clock()
        if result.status in (SessionStatus.LOST, SessionStatus.CANCELLED) or not hello:
            self.callbacks.on_update(result)
        if node and not self._cancelled:
            # between sessions (this one has ended): refresh the node's offset when stale
            known = self.offsets.get(node)
            if known is None or self._clock() - known.measured_t >= CLOCK_REFRESH_S:
                await self._refresh_offset(node)
        return result

    def _session_clock(self, node: str, submitted: float, t_hello: float) -> ClockOffset:
        """The offset applied to every worker time of one session: the node's agent estimate
        or this session's own hello exchange (submission -> first item), whichever is
        narrower. One offset per session, so its times keep their order and spacing."""
        own = estimate_offset([(submitted, t_hello, self._clock())], source="hello")
        known = self.offsets.get(node)
        if known is not None and known.uncertainty_s <= own.uncertainty_s:
            return known
        return own

    @staticmethod
    def _lost_status(exc: BaseException) -> SessionStatus:
        return SessionStatus.LOST

    @staticmethod
    def _merge(result: SessionResult, remote: SessionResult, clock: ClockOffset | None) -> None:
        """Copy what the worker-side supervisor measured into the daemon's result (which
        keeps its host fields and counts the probe samples it decoded), with its start and
        end times moved onto the daemon's clock (durations are on one clock: unchanged)."""
        for name in (
            "status",
            "exit_code",
            "signal",
            "wall_s",
            "cpu_s",
            "peak_rss_bytes",
            "peak_pss_bytes",
            "peak_uss_bytes",
            "error",
        ):
            setattr(result, name, getattr(remote, name))
        for name in ("start_t", "end_t"):
            t = getattr(remote, name)
            setattr(result, name, t if t is None or clock is None else clock.to_daemon(t))
        result.extra.update(remote.extra)
        result.extra["attempt"] = float(remote.spec.attempt)

    async def cancel_all(self) -> None:
        """Cancel every running session's task (the worker side ends its session: SIGTERM,
        then SIGKILL after ``grace_s``); later sessions return ``CANCELLED``."""
        self._cancelled = True
        self.slots.withdraw_all()
        if not self._running:
            return
        import ray

        for gen in list(self._running.values()):
            with contextlib.suppress(Exception):
                ray.cancel(gen)
        deadline = time.monotonic() + self.config.grace_s + 10
        while self._running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for gen in list(self._running.values()):  # still there: kill its worker
            with contextlib.suppress(Exception):
                ray.cancel(gen, force=True)

    def pid_of(self, session_id: int) -> int | None:
        """None: a Ray session is not a local process (py-spy must run on its host)."""
        return None

    @property
    def running(self) -> list[int]:
        """Ids of the sessions running now."""
        return list(self._running)

    def log_paths(self, session_id: int) -> tuple[Path, Path]:
        """The daemon-side copies of a session's stdout and stderr (streamed back, capped)."""
        return (
            self.config.log_dir / f"session-{session_id}.stdout.log",
            self.config.log_dir / f"session-{session_id}.stderr.log",
        )

    def close(self) -> None:
        """End the node agents this executor started; the cluster itself is the user's
        (perfmon never builds its own). Idempotent."""
        self._closed = True
        agents, self._agents = list(self._agents.values()), {}
        gone, self._agent_gone = list(self._agent_gone.values()), {}
        for event in gone:
            event.set()
        if agents:
            import ray

            for handle, _uses in agents:
                with contextlib.suppress(Exception):
                    ray.kill(handle)


def _shifted(batch: SampleBatch, clock: ClockOffset | None) -> SampleBatch:
    """``batch`` with its times (worker clock) on the daemon's clock."""
    if clock is None or not len(batch) or clock.offset_s == 0.0:
        return batch
    return SampleBatch(
        batch.t - clock.offset_s, batch.session, batch.key, batch.value, batch.metrics, batch.kinds
    )


class _LocalLogs:
    """The daemon-side log files of one remote session, each capped."""

    def __init__(self, paths: tuple[Path, Path], cap: int) -> None:
        self.paths = dict(zip(("stdout", "stderr"), paths, strict=True))
        self.cap = cap
        self.files: dict[str, Any] = {}
        self.written = {"stdout": 0, "stderr": 0}

    def write(self, stream: str, data: bytes) -> None:
        room = self.cap - self.written[stream]
        if room <= 0:
            return
        f = self.files.get(stream)
        if f is None:
            self.paths[stream].parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.paths[stream], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            f = self.files[stream] = os.fdopen(fd, "wb")
        chunk = data[:room]
        f.write(chunk)
        self.written[stream] += len(chunk)

    def close(self) -> None:
        for f in self.files.values():
            with contextlib.suppress(OSError):
                f.close()


def ray_executor_factory(
    settings: ExecutorSettings, *, init_kwargs: dict[str, Any] | None = None
) -> ExecutorFactory:
    """An ``ExecutorFactory`` for ``Runner(executor_factory=...)`` running on Ray."""

    def factory(config: ExecutorConfig, callbacks: ExecutorCallbacks) -> Executor:
        return RayExecutor(config, callbacks, settings, init_kwargs=init_kwargs)

    return factory
