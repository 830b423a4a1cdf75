"""The session supervisor: launch a workload as a subprocess, watch it, end it, measure it.

Each session (``SessionSpec``) runs:

- in its **own session and process group**, with stdin from ``/dev/null``, stdout and stderr
  to pipes that perfmon drains into ``log_dir/session-<id>.stdout.log`` and ``.stderr.log``,
  each capped at ``log_cap_bytes`` (past the cap the pipe is still drained and the bytes
  dropped, so the child never blocks; a closing line
  ``[perfmon: log capped at N bytes, M bytes dropped]`` is appended);
- with a dedicated **probe channel**: an ``os.pipe()`` whose write end is the child's fd 3,
  named in ``PERFMON_FD`` (see docs/protocol.md; a POSIX shell can write ``>&3``); its read end
  is decoded by ``perfmon.core.protocol.Decoder`` as bytes arrive;
- sampled every ``sample_interval_s``: RSS of the whole process tree (a ``rss_bytes`` GAUGE
  sample for the session), with ``on_update`` called so viewers see wall time and peak RSS.

**Launch, timing and reaping happen in the keeper** (``perfmon.engine.keeper``): a small
stdlib-only process the supervisor starts once (``start()``, or the first ``run_session``). The
supervisor creates the pipes, sends their write ends with the command over a socketpair
(``SCM_RIGHTS``), and the keeper ``posix_spawn``s the workload, stamps the monotonic clock right
after the exec and right after reaping it (``wait4``, so the kernel's rusage is kept), and
reports back. Nothing the daemon does (gate bootstraps holding the GIL, reports, fsyncs) can
delay those stamps, the daemon is never forked, and the child runs no Python before its exec,
so a session's CPU time is the workload's own.

**Containment**: the keeper is a child subreaper, so descendants that a session leaves behind,
including processes that called ``setsid``, are re-parented to it and SIGKILLed when the
session's leader exits, before the session is reported finished; if the daemon dies (kill -9,
OOM) the keeper kills every session tree and exits. ``containment`` names the mechanism in use
(recorded in the run's manifest). Ending a session (timeout, idle timeout, ``cancel_all``) is
SIGTERM to its process group, then SIGKILL after ``grace_s``.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import psutil

from perfmon.core.batch import SampleBatch
from perfmon.core.model import MetricKind, Sample, SessionResult, SessionSpec, SessionStatus
from perfmon.core.protocol import PROTOCOL_VERSION, Decoder
from perfmon.core.text import strip_terminal_escapes  # noqa: F401 - re-export
from perfmon.engine import keeper as _keeper_mod
from perfmon.engine.sampler import TreeMemorySampler, process_peak_rss, process_tree_rss

_READ_SIZE = 1 << 20  # bytes per os.read of a pipe
_PIPE_SIZE = 1 << 20  # requested pipe capacity (Linux F_SETPIPE_SZ; default max 1 MiB)
_CHILD_PROBE_FD = _keeper_mod.CHILD_PROBE_FD  # the probe channel's number in the child
_KEEPER_PATH = Path(_keeper_mod.__file__)
_KEEPER_START_S = 10.0  # how long the keeper may take to say hello
_ABORT_WAIT_S = 1.0  # how long a cancelled task waits for its SIGKILLed leader to die

_EOF_WAIT_S = 2.0  # how long to wait for the pipes' EOF once the whole group is gone


class _CappedLog:
    """A log file that keeps the first ``cap`` bytes written to it and counts the rest."""

    def __init__(self, path: Path, cap: int) -> None:
        self.path = path
        self.cap = max(0, cap)
        self.written = 0
        self.dropped = 0
        self._last = b"\n"
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by close()

    def write(self, data: bytes) -> None:
        room = self.cap - self.written
        if room >= len(data):
            self._file.write(data)
            self.written += len(data)
            self._last = data[-1:]
            return
        if room > 0:
            self._file.write(data[:room])
            self.written += room
            self._last = data[room - 1 : room]
            self.dropped += len(data) - room
        else:
            self.dropped += len(data)

    def close(self) -> None:
        if self._file.closed:
            return
        if self.dropped:
            sep = b"" if self._last == b"\n" else b"\n"
            note = f"[perfmon: log capped at {self.cap} bytes, {self.dropped} bytes dropped]\n"
            self._file.write(sep + note.encode("ascii"))
        self._file.close()


@dataclass(eq=False)
class _Running:
    """Book-keeping of one running session."""

    spec: SessionSpec
    result: SessionResult
    decoder: Decoder
    logs: tuple[_CappedLog, ...] = ()  # stdout and stderr logs, once created
    pid: int | None = None
    start_mono: float = 0.0
    started: asyncio.Future[dict[str, Any]] | None = None  # the keeper's start answer
    fds: dict[int, asyncio.Event] = field(default_factory=dict)  # read fd -> its EOF event
    sinks: dict[int, Callable[[bytes], None]] = field(default_factory=dict)  # read fd -> sink
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    exit: dict[str, Any] | None = None  # the keeper's "exited" message
    ended_by: SessionStatus | None = None  # TIMEOUT or CANCELLED once perfmon ends it
    sent_kill: bool = False
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    sampled_peak: int = 0  # largest of the sampled tree RSS and the leader's VmHWM, bytes
    parent_maxrss: int = 0  # the keeper's own ru_maxrss when it spawned the session, bytes
    timeout_s: float = 0.0  # the wall-clock limit in force, seconds (0: none)
    after: int | None = None  # start once this session has ended (keeper-side queue)
    withdrawn: bool = False  # ``withdraw`` asked the keeper to drop it before its start
    last_active: float = 0.0  # monotonic time of the last output, probe data or CPU use
    idle_s: float = 0.0  # the idle limit that ended the session, seconds


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group has no member left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


EARLY_SAMPLES_S = (0.02, 0.05, 0.1, 0.25, 0.5)
"""Seconds after the start at which a session's RSS is sampled before the regular interval."""


def _maxrss_bytes(ru_maxrss: int) -> int:
    """``ru_maxrss`` in bytes: getrusage(2) gives KiB on Linux, bytes on macOS."""
    return ru_maxrss if sys.platform == "darwin" else ru_maxrss * 1024


def _close_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (psutil); -1 if gone."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return -1.0
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def containment_mechanism() -> str:
    """The containment a keeper gives on this machine before one is started: ``"keeper-
    subreaper"`` on Linux (``PR_SET_CHILD_SUBREAPER``), else ``"keeper-process-group"``.
    A started ``Supervisor``'s ``containment`` says what its keeper really got."""
    return "keeper-subreaper" if sys.platform.startswith("linux") else "keeper-process-group"


class _KeeperLink:
    """The daemon's end of one keeper: the process, the socket, and message dispatch.

    Args:
        loop: the event loop that reads the keeper's messages.
        on_message: receives each decoded message (a dict).
        on_lost: called once if the keeper goes away while in use.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[dict[str, Any]], None],
        on_lost: Callable[[], None],
    ) -> None:
        self.loop = loop
        self._on_message = on_message
        self._on_lost = on_lost
        self.hello: asyncio.Future[dict[str, Any]] = loop.create_future()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for sock in (ours, theirs):
            for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, opt, _keeper_mod.SOCKET_BUFFER)
        self.sock = ours
        self.closed = False
        try:
            # No preexec_fn: Popen keeps its vfork fast path, the daemon is never copied.
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-I",  # isolated: no user site, no PYTHON* variables
                    "-S",  # no site import: the keeper needs the standard library only
                    str(_KEEPER_PATH),
                    str(theirs.fileno()),
                    str(os.getpid()),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                close_fds=True,
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        loop.add_reader(ours.fileno(), self._readable)

    def send(self, msg: dict[str, Any], fds: tuple[int, ...] = ()) -> None:
        """Send one request (blocking; the keeper reads at once).

        Raises:
            OSError: if the keeper is gone or the request is over ``keeper.MAX_MESSAGE``.
        """
        data = json.dumps(msg, separators=(",", ":")).encode()
        if len(data) > _keeper_mod.MAX_MESSAGE:
            raise OSError(f"request of {len(data)} bytes is over the keeper's limit")
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        self.sock.sendmsg([data], anc)

    def _readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(_keeper_mod.MAX_MESSAGE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            try:
                msg = json.loads(data)
            except ValueError:
                continue
            if msg.get("ev") == "hello":
                if not self.hello.done():
                    self.hello.set_result(msg)
                continue
            self._on_message(msg)

    def _lost(self) -> None:
        was_open = not self.closed
        self.close()
        if not self.hello.done():
            self.hello.set_exception(OSError("perfmon's keeper process exited at start"))
        if was_open:
            self._on_lost()

    def close(self) -> None:
        """Close the socket: the keeper kills whatever it still runs and exits; reap it."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            self.proc.wait(timeout=0)  # reaped later by Popen's own bookkeeping otherwise


class Supervisor:
    """Runs sessions as subprocesses (through a keeper process) and reports what they did.

    Several sessions may run at once (one ``run_session`` task each). All callbacks are
    called in the event loop's thread.

    Args:
        log_dir: directory for ``session-<id>.stdout.log`` / ``.stderr.log`` (created if
            missing), normally the run directory's ``logs/``.
        log_cap_bytes: cap on each log file's size, bytes (the closing note line excluded).
        sample_interval_s: seconds between RSS samples and ``on_update`` calls of a session.
        grace_s: seconds between SIGTERM and SIGKILL when perfmon ends a session.
        on_samples: receives each ``SampleBatch`` of samples: the workload's probe samples as
            they are decoded (one batch per read of its channel) and the supervisor's
            ``rss_bytes`` samples.
        on_update: receives the (mutable, shared) ``SessionResult`` when the session starts,
            every sample interval while it runs, and once when it has finished.
        default_timeout_s: wall-clock limit of a session whose ``timeout_s`` is None, seconds
            (0: none; the runner passes the campaign's ``timeout``, 1 h by default).
        default_idle_timeout_s: idle limit of a session whose ``idle_timeout_s`` is None,
            seconds (0: none). A session is idle while it writes no output, sends no probe
            sample and its process tree uses no CPU (psutil, 10 ms tick resolution).
        on_probe_bytes: None (the default): the probe channel is decoded here and its samples
            go to ``on_samples``. Otherwise the channel's bytes are *not* decoded here but
            handed on raw, ``on_probe_bytes(session_id, now, data)`` per read (``now``: Unix
            seconds of the read, the receipt time a decoder gives samples without their own
            timestamp), and once ``on_probe_bytes(session_id, now, None)`` when the channel
            has ended (decode the unterminated tail then); the result's ``samples`` and
            ``malformed`` stay 0 (whoever decodes counts them). The Ray executor's worker
            side uses it to decode on the daemon (``perfmon.engine.ray_executor``).

    Raises:
        ValueError: if ``sample_interval_s`` is not positive, or ``grace_s`` or a default
            limit is negative.
    """

    def __init__(
        self,
        *,
        log_dir: Path,
        log_cap_bytes: int,
        sample_interval_s: float,
        grace_s: float,
        on_samples: Callable[[SampleBatch], None],
        on_update: Callable[[SessionResult], None],
        default_timeout_s: float = 0.0,
        default_idle_timeout_s: float = 0.0,
        on_probe_bytes: Callable[[int, float, bytes | None], None] | None = None,
    ) -> None:
        if not sample_interval_s > 0:
            raise ValueError(f"sample_interval_s must be > 0, got {sample_interval_s!r}")
        if not grace_s >= 0:
            raise ValueError(f"grace_s must be >= 0, got {grace_s!r}")
        if not (default_timeout_s >= 0 and default_idle_timeout_s >= 0):
            raise ValueError("default timeouts must be >= 0")
        self.default_timeout_s = default_timeout_s
        self.default_idle_timeout_s = default_idle_timeout_s
        self.log_dir = Path(log_dir)
        self.log_cap_bytes = log_cap_bytes
        self.sample_interval_s = sample_interval_s
        self.grace_s = grace_s
        self._on_samples = on_samples
        self._on_update = on_update
        self._on_probe_bytes = on_probe_bytes
        self._running: dict[int, _Running] = {}
        self._cancelled = False
        self._link: _KeeperLink | None = None
        self.containment = containment_mechanism()
        """How sessions' descendants are contained: ``"keeper-subreaper"`` (Linux) or
        ``"keeper-process-group"``; set from the keeper's hello once it has started."""
        self.keeper_pid: int | None = None
        """The keeper's process id once started."""

    # -- public -----------------------------------------------------------------------------

    def log_paths(self, session_id: int) -> tuple[Path, Path]:
        """The stdout and stderr log files of a session."""
        return (
            self.log_dir / f"session-{session_id}.stdout.log",
            self.log_dir / f"session-{session_id}.stderr.log",
        )

    def pid_of(self, session_id: int) -> int | None:
        """The process id (and process group id) of a running session, else None."""
        run = self._running.get(session_id)
        return run.pid if run is not None else None

    @property
    def running(self) -> list[int]:
        """Ids of the sessions running now."""
        return [sid for sid, run in self._running.items() if run.pid is not None]

    async def start(self) -> str:
        """Start the keeper now (``run_session`` starts it otherwise) and wait for its hello.

        Returns:
            The containment mechanism in use (see ``containment``).

        Raises:
            OSError: if the keeper cannot be started.
        """
        await self._ready()
        return self.containment

    def close(self) -> None:
        """Stop the keeper (it SIGKILLs whatever it still runs). Idempotent; a later
        ``run_session`` starts a new one."""
        if self._link is not None:
            self._link.close()
            self._link = None

    chains_sessions = True
    """``run_session`` takes ``after=`` (the keeper starts a queued session the moment the
    previous one has ended) and ``withdraw`` drops a queued one: the runner chains sessions."""

    def requested(self, session_id: int) -> bool:
        """True from the moment a session's spawn request has gone to the keeper until the
        session has finished: a session asked for ``after=`` it is then started behind it
        (or at once, if its start failed), never beside it."""
        return session_id in self._running

    def withdraw(self, session_id: int) -> bool:
        """Ask the keeper to drop a session queued with ``after=`` that has not started.

        Its ``run_session`` then returns the result with status still ``PENDING`` (no start,
        no finished ``on_update``: it never ran) and ``error`` "withdrawn before start". The
        keeper may have started it already (the request crossed the start): then it runs and
        ends as usual, and the caller sees a normal result.

        Args:
            session_id: the session's ``spec.id``.

        Returns:
            True when the request was sent (the session was queued and not known started);
            False when there is no such queued session.
        """
        run = self._running.get(session_id)
        if run is None or run.pid is not None or run.started is None or run.started.done():
            return False
        run.withdrawn = True
        self._send_cancel(run)
        return True

    async def run_session(self, spec: SessionSpec, *, after: int | None = None) -> SessionResult:
        """Run one session to its end and return what was measured.

        Never raises for the workload's failures: a command that cannot be started gives
        ``START_FAILED`` (with ``error`` set), a crash ``SIGNAL``, a non-zero exit ``EXIT``,
        the timeout ``TIMEOUT``, ``cancel_all`` ``CANCELLED``. After ``cancel_all`` a new
        session is not started and returns ``CANCELLED`` at once. If the task running this
        coroutine is cancelled, the session's group is SIGKILLed (and its leader waited for,
        up to 1 s) before the ``CancelledError`` propagates.

        Args:
            spec: the session; ``argv[0]`` is looked up on the session's ``PATH`` (no shell).
            after: the id of a session running now: this one is then started by the keeper
                the moment that one has ended (its exit reported), with no round trip through
                this process in between; call it while ``after`` runs (e.g. from another task)
                to chain sessions with the smallest gap. Ignored when ``after`` is not running.

        Returns:
            The final ``SessionResult`` (the same object passed to ``on_update``).
        """
        result = SessionResult(spec=spec)
        if self._cancelled:
            result.status = SessionStatus.CANCELLED
            result.error = "run cancelled before the session started"
            self._on_update(result)
            return result
        loop = asyncio.get_running_loop()
        asked = time.monotonic()
        try:
            link = await self._ready()
        except OSError as exc:
            self._start_failed(result, f"cannot start perfmon's keeper: {exc}", asked)
            self._on_update(result)
            return result
        run = _Running(spec=spec, result=result, decoder=Decoder(spec.id), after=after)
        run.started = loop.create_future()
        self._running[spec.id] = run
        try:
            if not self._spawn(link, run):
                self._on_update(result)
                return result
            # The log files are created while the keeper spawns (creating a file can take a
            # millisecond): the pipes hold what the workload writes until they are read.
            self.log_dir.mkdir(parents=True, exist_ok=True)
            run.logs = tuple(_CappedLog(p, self.log_cap_bytes) for p in self.log_paths(spec.id))
            msg = await run.started
            if msg.get("ev") != "started" and run.withdrawn and not self._cancelled:
                result.error = "withdrawn before start"  # status stays PENDING: it never ran
                return result
            if msg.get("ev") != "started" and self._cancelled:
                result.status = SessionStatus.CANCELLED
                result.error = "run cancelled before the session started"
                self._on_update(result)
                return result
            if msg.get("ev") != "started":
                what = spec.argv[0] if spec.argv else "command"
                self._start_failed(result, f"cannot start {what}: {msg.get('error')}", asked)
                self._on_update(result)
                return result
            self._started(loop, run, msg)
            sampler = asyncio.create_task(self._sample_loop(run))
            idle = spec.idle_timeout_s
            idle = self.default_idle_timeout_s if idle is None else idle
            watcher = asyncio.create_task(self._idle_watch(run, idle)) if idle > 0 else None
            try:
                timeout = spec.timeout_s
                run.timeout_s = self.default_timeout_s if timeout is None else timeout
                if run.timeout_s > 0:
                    run.timers.append(
                        loop.call_later(run.timeout_s, self._terminate, run, SessionStatus.TIMEOUT)
                    )
                self._on_update(result)
                await run.exited.wait()
            finally:
                sampler.cancel()
                if watcher is not None:
                    watcher.cancel()
            self._finish(run)
            await self._drain(run)
        except asyncio.CancelledError:
            run.ended_by = run.ended_by or SessionStatus.CANCELLED
            self._abort(run)
            raise
        finally:
            self._close(loop, run)
            self._running.pop(spec.id, None)
            run.finished.set()
        self._on_update(result)
        return result

    async def cancel_all(self) -> None:
        """End every running session (SIGTERM to its group, SIGKILL after ``grace_s``) and
        wait until each has finished with status ``CANCELLED``. Sessions started later are
        not run (they return ``CANCELLED`` at once)."""
        self._cancelled = True
        runs = list(self._running.values())
        # Queued sessions first: the keeper reads its messages in order, so each queued
        # session is dropped before the one it waits for is signalled (else that one's exit
        # could start it in between).
        for run in runs:
            if run.pid is None:  # queued in the keeper, not started: drop it
                self._send_cancel(run)
        for run in runs:
            self._terminate(run, SessionStatus.CANCELLED)
        for run in runs:
            await run.finished.wait()

    # -- the keeper -------------------------------------------------------------------------

    async def _ready(self) -> _KeeperLink:
        """The keeper link of this loop, started (and said hello) if needed."""
        loop = asyncio.get_running_loop()
        link = self._link
        if link is None or link.closed or link.loop is not loop:
            if link is not None:
                link.close()
            link = _KeeperLink(loop, self._on_keeper_message, self._on_keeper_lost)
            self._link = link
        if link.hello.done():  # the common case: no task, no timer between sessions
            hello = link.hello.result()
        else:
            hello = await asyncio.wait_for(asyncio.shield(link.hello), _KEEPER_START_S)
        self.containment = str(hello.get("containment", self.containment))
        self.keeper_pid = int(hello.get("pid", link.proc.pid))
        return link

    def _on_keeper_message(self, msg: dict[str, Any]) -> None:
        sid = msg.get("id")
        run = self._running.get(sid) if isinstance(sid, int) else None
        if run is None:  # a session abandoned by a cancelled task
            if msg.get("ev") == "started" and self._link is not None:
                with contextlib.suppress(OSError):  # it started meanwhile: end it at once
                    self._link.send({"op": "signal", "id": msg.get("id"), "sig": signal.SIGKILL})
            return
        if msg.get("ev") in ("started", "start_failed"):
            if run.started is not None and not run.started.done():
                run.started.set_result(msg)
        elif msg.get("ev") == "exited":
            run.exit = msg
            run.exited.set()

    def _on_keeper_lost(self) -> None:
        """The keeper died under us: SIGKILL what we know of, end every session."""
        self._link = None
        for run in list(self._running.values()):
            if run.started is not None and not run.started.done():
                run.started.set_result({"ev": "start_failed", "error": "keeper exited"})
            if run.pid is not None and not run.exited.is_set():
                _signal_group(run.pid, signal.SIGKILL)
                run.result.error = (run.result.error + "; " if run.result.error else "") + (
                    "perfmon's keeper process died; the session was killed"
                )
                run.exited.set()

    # -- spawning -----------------------------------------------------------------------------

    def _start_failed(self, result: SessionResult, error: str, asked: float) -> None:
        result.status = SessionStatus.START_FAILED
        result.error = error
        result.end_t = time.time()
        result.wall_s = time.monotonic() - asked

    def _spawn(self, link: _KeeperLink, run: _Running) -> bool:
        """Make the pipes and ask the keeper to start the session; False if it cannot."""
        spec = run.spec
        probe_r, probe_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        run.fds = {probe_r: asyncio.Event(), out_r: asyncio.Event(), err_r: asyncio.Event()}
        run.sinks = {
            probe_r: self._probe_sink(run),
            out_r: lambda data: run.logs[0].write(data),
            err_r: lambda data: run.logs[1].write(data),
        }
        env = {
            **os.environ,
            **dict(spec.env),
            "PERFMON_FD": str(_CHILD_PROBE_FD),
            "PERFMON_SESSION": str(spec.id),
            "PERFMON_PROTOCOL": str(PROTOCOL_VERSION),
        }
        request = {
            "op": "spawn",
            "after": run.after,
            "id": spec.id,
            "argv": list(spec.argv),
            "env": env,
            "cwd": spec.cwd or os.getcwd(),
        }
        try:
            link.send(request, (out_w, err_w, probe_w))
        except OSError as exc:
            self._start_failed(run.result, f"cannot start {spec.argv[:1]}: {exc}", time.monotonic())
            return False
        finally:
            for fd in (probe_w, out_w, err_w):
                _close_fd(fd)
        return True

    def _started(self, loop: asyncio.AbstractEventLoop, run: _Running, msg: dict[str, Any]) -> None:
        """The keeper started the session: take its stamps, watch the pipes."""
        run.pid = int(msg["pid"])
        run.start_mono = float(msg["start_mono"])
        run.parent_maxrss = _maxrss_bytes(int(msg.get("parent_maxrss", 0)))
        run.result.start_t = float(msg["start_t"])
        run.result.status = SessionStatus.RUNNING
        for fd in run.fds:
            os.set_blocking(fd, False)
            if sys.platform == "linux":
                with contextlib.suppress(OSError, AttributeError):
                    import fcntl

                    fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
            loop.add_reader(fd, self._on_readable, loop, run, fd)

    # -- while running ----------------------------------------------------------------------

    def _on_readable(
        self,
        loop: asyncio.AbstractEventLoop,
        run: _Running,
        fd: int,
    ) -> None:
        """Read what a pipe holds and pass it to the pipe's sink; at EOF unregister it."""
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            run.fds[fd].set()
            return
        run.last_active = time.monotonic()
        run.sinks[fd](data)

    async def _sample_loop(self, run: _Running) -> None:
        """Sample the tree's RSS and the leader's VmHWM: a few times early (20 ms to 0.5 s,
        so that a session shorter than the interval still gets a peak RSS), then every
        ``sample_interval_s``."""
        result = run.result
        assert run.pid is not None
        early = [d for d in EARLY_SAMPLES_S if d < self.sample_interval_s]
        previous = 0.0
        tree_memory = TreeMemorySampler()  # PSS/USS: a page-table walk, <= 1% of wall, a thread
        while True:
            if early:
                delay = early.pop(0)
                await asyncio.sleep(delay - previous)
                previous = delay
            else:
                await asyncio.sleep(self.sample_interval_s)
            rss = process_tree_rss(run.pid)
            hwm = process_peak_rss(run.pid)
            result.wall_s = time.monotonic() - run.start_mono
            if rss > 0:
                run.sampled_peak = max(run.sampled_peak, rss, hwm)
                result.peak_rss_bytes = run.sampled_peak
                sample = Sample(time.time(), run.spec.id, "rss_bytes", float(rss), MetricKind.GAUGE)
                self._on_samples(SampleBatch.from_samples([sample]))
            if rss > 0 and tree_memory.due():
                loop = asyncio.get_running_loop()
                if await loop.run_in_executor(None, tree_memory.read, run.pid) is not None:
                    result.peak_pss_bytes = tree_memory.peak_pss_bytes
                    result.peak_uss_bytes = tree_memory.peak_uss_bytes
            self._on_update(result)

    async def _idle_watch(self, run: _Running, idle_s: float) -> None:
        """End the session with ``IDLE_TIMEOUT`` once it has been idle for ``idle_s``: no
        output or probe data (``_on_readable`` stamps ``last_active``) and no change of its
        process tree's CPU time (user + system, psutil), checked every ``idle_s / 4`` (at
        least 50 ms, at most 1 s)."""
        assert run.pid is not None
        period = min(max(idle_s / 4, 0.05), 1.0)
        run.last_active = time.monotonic()
        cpu = _tree_cpu_s(run.pid)
        while True:
            await asyncio.sleep(period)
            now_cpu = _tree_cpu_s(run.pid)
            now = time.monotonic()
            if now_cpu != cpu:
                cpu = now_cpu
                run.last_active = max(run.last_active, now)
            if now - run.last_active >= idle_s:
                run.idle_s = idle_s
                self._terminate(run, SessionStatus.IDLE_TIMEOUT)
                return

    def _send_cancel(self, run: _Running) -> None:
        """Drop the session's spawn request if the keeper holds it queued."""
        if self._link is not None and not self._link.closed:
            with contextlib.suppress(OSError):
                self._link.send({"op": "cancel", "id": run.spec.id})

    def _signal(self, run: _Running, sig: int) -> None:
        """Signal the session's group through the keeper (which knows whether it lives)."""
        if self._link is not None and not self._link.closed:
            with contextlib.suppress(OSError):
                self._link.send({"op": "signal", "id": run.spec.id, "sig": int(sig)})
                return
        if run.pid is not None and not run.exited.is_set():
            _signal_group(run.pid, sig)

    def _terminate(self, run: _Running, why: SessionStatus) -> None:
        """SIGTERM the group now, SIGKILL it after the grace period (once per session)."""
        if run.ended_by is not None or run.exited.is_set() or run.pid is None:
            return
        run.ended_by = why
        if why is SessionStatus.TIMEOUT:
            run.result.error = f"timed out after {run.timeout_s:g} s"
        elif why is SessionStatus.IDLE_TIMEOUT:
            run.result.error = (
                f"idle for {run.idle_s:g} s (no output, no probe sample, no CPU); ended"
            )
        else:
            run.result.error = "cancelled"
        self._signal(run, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        run.timers.append(loop.call_later(self.grace_s, self._kill, run))

    def _kill(self, run: _Running) -> None:
        if not run.exited.is_set():
            run.sent_kill = True
            self._signal(run, signal.SIGKILL)

    # -- ending -------------------------------------------------------------------------------

    def _finish(self, run: _Running) -> None:
        """Fill in the result from the keeper's exit report (its stamps, wait status, rusage)."""
        result = run.result
        msg = run.exit
        if msg is None:  # the keeper died: no wait status
            result.end_t = time.time()
            result.wall_s = time.monotonic() - run.start_mono
            result.status = run.ended_by or SessionStatus.SIGNAL
            return
        result.end_t = float(msg["end_t"])
        result.wall_s = float(msg["end_mono"]) - run.start_mono
        status = int(msg["status"])
        result.cpu_s = float(msg["utime"]) + float(msg["stime"])
        # ru_maxrss starts from the spawning parent's high-water mark (the kernel keeps the
        # pre-exec memory's in it), so it says something about the child only when it
        # exceeds the keeper's own ru_maxrss at spawn time.
        maxrss = _maxrss_bytes(int(msg["maxrss"]))
        trusted = maxrss if maxrss > run.parent_maxrss else 0
        peak = max(run.sampled_peak, trusted)
        result.peak_rss_bytes = peak or None
        if os.WIFSIGNALED(status):
            result.signal = os.WTERMSIG(status)
            result.status = SessionStatus.SIGNAL
        else:
            result.exit_code = os.WEXITSTATUS(status)
            result.status = SessionStatus.OK if result.exit_code == 0 else SessionStatus.EXIT
        if run.ended_by is not None:
            result.status = run.ended_by
            if run.sent_kill:
                result.error += f"; SIGKILL after {self.grace_s:g} s grace"
        survivors = int(msg.get("survivors", 0))
        if survivors:
            result.error = (result.error + "; " if result.error else "") + (
                f"{survivors} process(es) of the session survived SIGKILL"
            )

    async def _drain(self, run: _Running) -> None:
        """Wait (bounded) for EOF on the pipes, then decode a final unterminated line."""
        if not all(ev.is_set() for ev in run.fds.values()):
            waits = [asyncio.create_task(ev.wait()) for ev in run.fds.values()]
            _, pending = await asyncio.wait(waits, timeout=_EOF_WAIT_S)
            for task in pending:
                task.cancel()
        for fd, eof in run.fds.items():
            if eof.is_set():
                continue
            # A process that survived SIGKILL still holds the pipe: take what it holds now.
            with contextlib.suppress(OSError):
                for _ in range(_PIPE_SIZE // _READ_SIZE + 1):  # one pipeful, not forever
                    data = os.read(fd, _READ_SIZE)
                    if not data:
                        break
                    run.sinks[fd](data)
        if self._on_probe_bytes is not None:
            self._on_probe_bytes(run.spec.id, time.time(), None)
            return
        tail = run.decoder.close_batch(time.time())
        self._deliver(run, tail)

    def _abort(self, run: _Running) -> None:
        """Synchronous end for a cancelled task: SIGKILL the group, wait (bounded) for the
        leader to die; the keeper reaps it and clears what is left."""
        result = run.result
        if run.pid is None:
            self._send_cancel(run)
            if run.started is not None and not run.started.done():
                run.started.cancel()
            result.status = SessionStatus.CANCELLED
            result.error = result.error or "cancelled"
            return
        self._signal(run, signal.SIGKILL)
        _signal_group(run.pid, signal.SIGKILL)
        if not run.exited.is_set():
            with contextlib.suppress(OSError):
                pidfd = os.pidfd_open(run.pid)
                try:
                    select.select([pidfd], [], [], _ABORT_WAIT_S)
                finally:
                    os.close(pidfd)
        result.end_t = time.time()
        result.wall_s = time.monotonic() - run.start_mono
        result.status = SessionStatus.CANCELLED
        result.error = result.error or "cancelled"

    def _close(self, loop: asyncio.AbstractEventLoop, run: _Running) -> None:
        for timer in run.timers:
            timer.cancel()
        for fd in run.fds:
            loop.remove_reader(fd)
            _close_fd(fd)
        for log in run.logs:
            log.close()
        run.result.malformed = run.decoder.malformed

    def _deliver(self, run: _Running, samples: SampleBatch) -> None:
        run.result.malformed = run.decoder.malformed
        if samples:
            run.result.samples += len(samples)
            self._on_samples(samples)

    def _probe_sink(self, run: _Running) -> Callable[[bytes], None]:
        raw = self._on_probe_bytes
        if raw is not None:
            sid = run.spec.id

            def forward(data: bytes) -> None:
                raw(sid, time.time(), data)

            return forward

        def feed(data: bytes) -> None:
            self._deliver(run, run.decoder.feed_batch(data, time.time()))

        return feed
