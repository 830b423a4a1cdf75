"""The session supervisor: launch a workload as a subprocess, watch it, end it, measure it.

Each session (``SessionSpec``) runs:

- in its **own process group** (``start_new_session=True``), with stdin from ``/dev/null``,
  stdout and stderr to pipes that perfmon drains into ``log_dir/session-<id>.stdout.log`` and
  ``.stderr.log``, each capped at ``log_cap_bytes`` (past the cap the pipe is still drained
  and the bytes dropped, so the child never blocks; a closing line
  ``[perfmon: log capped at N bytes, M bytes dropped]`` is appended);
- with a dedicated **probe channel**: an ``os.pipe()`` whose write end is inherited as
  ``PERFMON_FD`` (see docs/protocol.md); its read end is decoded by
  ``perfmon.core.protocol.Decoder`` as bytes arrive. The write end gets a number below 10 in
  the child (the lowest free one, or 3 via a dup2 between fork and exec when none is free in
  perfmon), because POSIX shells cannot redirect to ``>&13``;
- sampled every ``sample_interval_s``: RSS of the whole process tree (a ``rss_bytes`` GAUGE
  sample for the session), with ``on_update`` called so viewers see wall time and peak RSS.

Ending a session (timeout, ``cancel_all``) is SIGTERM to the process group, then SIGKILL to the
group after ``grace_s``. Whenever the leader has exited, any process left in its group (a
grandchild that ignored SIGTERM, a daemonised helper) is SIGKILLed and waited for, so nothing
is left behind. (A process that moved itself to another session with ``setsid`` escapes any
process-group based supervisor, this one included.) If perfmon itself dies (kill -9, OOM), the
kernel SIGKILLs each session's leader (``PR_SET_PDEATHSIG``, set between fork and exec), so a
crashed daemon leaves no workload running unwatched; this costs ``Popen`` its vfork fast path
(a fork of the daemon: about 10 ms with a 150 MB parent), so a session's wall clock starts when
``Popen`` returns, after the exec, and that cost stays out of the workload's timings.

**Why ``subprocess.Popen`` and not ``asyncio.create_subprocess_exec``:** the kernel's
resource usage of a child (``ru_utime + ru_stime``, ``ru_maxrss``) is only returned to the
process that reaps it, by ``wait4``; asyncio's child watchers reap with ``waitpid`` and drop it.
So the supervisor spawns with ``Popen`` (which reports exec failures such as
``FileNotFoundError`` in the parent), never calls ``Popen.wait``, and reaps the child itself
with ``os.wait4``: it learns of the exit from a pidfd (``os.pidfd_open``, Linux >= 5.3)
registered with the event loop, or, where pidfds are missing, by polling
``os.wait4(pid, WNOHANG)`` every 20 ms. The pipes are read with ``loop.add_reader`` on
non-blocking fds. Everything runs in the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import psutil

from perfmon.core.batch import SampleBatch
from perfmon.core.model import MetricKind, Sample, SessionResult, SessionSpec, SessionStatus
from perfmon.core.protocol import PROTOCOL_VERSION, Decoder
from perfmon.engine.sampler import TreeMemorySampler, process_peak_rss, process_tree_rss

_READ_SIZE = 1 << 20  # bytes per os.read of a pipe
_PIPE_SIZE = 1 << 20  # requested pipe capacity (Linux F_SETPIPE_SZ; default max 1 MiB)
_POLL_S = 0.02  # exit polling period where pidfds are missing, and group-gone polling
_GROUP_GONE_S = 5.0  # how long to wait for SIGKILLed group members to disappear
_CHILD_PROBE_FD = 3  # first descriptor after stdin, stdout, stderr
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl(2), resolved once in the parent (never imported between fork and exec)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def _child_setup(parent: int, dup_from: int | None) -> None:
    """Runs in the child between fork and exec: move the probe channel if needed, and ask the
    kernel to SIGKILL the session when perfmon dies (``PR_SET_PDEATHSIG``, prctl(2)), so that a
    crashed daemon (kill -9, OOM) leaves no workload running unwatched. If perfmon died before
    this point, the child exits instead of running orphaned."""
    if dup_from is not None:
        os.dup2(dup_from, _CHILD_PROBE_FD)
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(127)


_MAX_SH_FD = 9  # highest descriptor a POSIX shell redirection can name
_EOF_WAIT_S = 2.0  # how long to wait for the pipes' EOF once the whole group is gone

# ECMA-48 escape sequences (https://ecma-international.org/publications-and-standards/
# standards/ecma-48/): CSI (ESC [ or 8-bit 0x9b), OSC/DCS/SOS/PM/APC strings up to BEL or ST
# (or the end of the text), other two- and three-byte ESC sequences, then any remaining C0
# control except \n and \t, DEL, and C1 controls.
_ESCAPES_RE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]).*?(?:\x07|\x1b\\|\x9c|\Z)"
    r"|\x1b[ -/]*[0-~]?"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]",
    re.DOTALL,
)


def strip_terminal_escapes(text: str) -> str:
    """Remove terminal escape sequences and control characters from workload output.

    Removes CSI sequences (colours, cursor moves), OSC and other string sequences (window
    titles, hyperlinks) up to their terminator, other ESC sequences, C1 controls and every C0
    control except ``\\n`` and ``\\t`` (``\\r`` included), so that a workload's output cannot
    move the viewer's cursor, retitle the terminal or hide text. Sequences as in ECMA-48.

    Args:
        text: decoded output, any length.

    Returns:
        The text without escapes; printable characters are kept unchanged.
    """
    return _ESCAPES_RE.sub("", text)


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
    proc: subprocess.Popen[bytes]  # kept so that Popen.__del__ never reaps our child
    pid: int
    start_mono: float
    decoder: Decoder
    logs: tuple[_CappedLog, _CappedLog]
    fds: dict[int, asyncio.Event] = field(default_factory=dict)  # read fd -> its EOF event
    sinks: dict[int, Callable[[bytes], None]] = field(default_factory=dict)  # read fd -> sink
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    wait: tuple[int, resource.struct_rusage] | None = None  # (wait status, rusage) once reaped
    pidfd: int | None = None
    ended_by: SessionStatus | None = None  # TIMEOUT or CANCELLED once perfmon ends it
    sent_kill: bool = False
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    sampled_peak: int = 0  # largest of the sampled tree RSS and the leader's VmHWM, bytes
    parent_maxrss: int = 0  # perfmon's own ru_maxrss when it spawned the session, bytes


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group has no member left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _live_group_members(pgid: int) -> list[int]:
    """Pids of the processes of group ``pgid`` that are not zombies."""
    if not _signal_group(pgid, 0):
        return []
    alive: list[int] = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) != pgid:
                continue
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                continue
        except (OSError, psutil.Error):
            continue
        alive.append(pid)
    return alive


EARLY_SAMPLES_S = (0.02, 0.05, 0.1, 0.25, 0.5)
"""Seconds after the start at which a session's RSS is sampled before the regular interval."""


def _maxrss_bytes(ru_maxrss: int) -> int:
    """``ru_maxrss`` in bytes: getrusage(2) gives KiB on Linux, bytes on macOS."""
    return ru_maxrss if sys.platform == "darwin" else ru_maxrss * 1024


def _low_fd(fd: int) -> int:
    """Renumber ``fd`` below 10 when such a number is free (closing ``fd``), else keep it.

    POSIX shells only parse single-digit descriptors in redirections (dash rejects
    ``>&13``), and the protocol's shell one-liner is ``echo ... >&$PERFMON_FD``.
    ``F_DUPFD_CLOEXEC`` picks the lowest free number >= 3 atomically (fcntl(2)).
    """
    import fcntl

    low = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _CHILD_PROBE_FD)
    if low <= _MAX_SH_FD:
        os.close(fd)
        return low
    os.close(low)
    return fd


def _close_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


class Supervisor:
    """Runs sessions as subprocesses and reports what they did.

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

    Raises:
        ValueError: if ``sample_interval_s`` is not positive or ``grace_s`` is negative.
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
    ) -> None:
        if not sample_interval_s > 0:
            raise ValueError(f"sample_interval_s must be > 0, got {sample_interval_s!r}")
        if not grace_s >= 0:
            raise ValueError(f"grace_s must be >= 0, got {grace_s!r}")
        self.log_dir = Path(log_dir)
        self.log_cap_bytes = log_cap_bytes
        self.sample_interval_s = sample_interval_s
        self.grace_s = grace_s
        self._on_samples = on_samples
        self._on_update = on_update
        self._running: dict[int, _Running] = {}
        self._cancelled = False

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
        return list(self._running)

    async def run_session(self, spec: SessionSpec) -> SessionResult:
        """Run one session to its end and return what was measured.

        Never raises for the workload's failures: a command that cannot be started gives
        ``START_FAILED`` (with ``error`` set), a crash ``SIGNAL``, a non-zero exit ``EXIT``,
        the timeout ``TIMEOUT``, ``cancel_all`` ``CANCELLED``. After ``cancel_all`` a new
        session is not started and returns ``CANCELLED`` at once. If the task running this
        coroutine is cancelled, the session's group is SIGKILLed and reaped before the
        ``CancelledError`` propagates.

        Args:
            spec: the session; ``argv[0]`` is looked up on ``PATH`` (no shell).

        Returns:
            The final ``SessionResult`` (the same object passed to ``on_update``).
        """
        result = SessionResult(spec=spec)
        if self._cancelled:
            result.status = SessionStatus.CANCELLED
            result.error = "run cancelled before the session started"
            self._on_update(result)
            return result
        run = self._spawn(spec, result)
        if run is None:
            self._on_update(result)
            return result
        loop = asyncio.get_running_loop()
        self._running[spec.id] = run
        sampler = asyncio.create_task(self._sample_loop(run))
        try:
            self._watch(loop, run)
            if spec.timeout_s is not None:
                run.timers.append(
                    loop.call_later(spec.timeout_s, self._terminate, run, SessionStatus.TIMEOUT)
                )
            self._on_update(result)
            await run.exited.wait()
            self._reap(run)
            sampler.cancel()
            await self._clear_group(run)
            await self._drain(run)
        except asyncio.CancelledError:
            run.ended_by = run.ended_by or SessionStatus.CANCELLED
            self._abort(run)
            raise
        finally:
            sampler.cancel()
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
        for run in runs:
            self._terminate(run, SessionStatus.CANCELLED)
        for run in runs:
            await run.finished.wait()

    # -- spawning -----------------------------------------------------------------------------

    def _spawn(self, spec: SessionSpec, result: SessionResult) -> _Running | None:
        """Start the process; on failure fill ``result`` as START_FAILED and return None."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        probe_r, probe_w = os.pipe()
        probe_w = _low_fd(probe_w)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        if probe_w <= _MAX_SH_FD:
            child_fd, keep, dup_from = probe_w, probe_w, None
        else:
            # No fd below 10 free here: move the channel to fd 3 in the child, between fork
            # and exec.
            child_fd, keep, dup_from = _CHILD_PROBE_FD, _CHILD_PROBE_FD, probe_w
        preexec = functools.partial(_child_setup, os.getpid(), dup_from)
        env = {
            **os.environ,
            **dict(spec.env),
            "PERFMON_FD": str(child_fd),
            "PERFMON_SESSION": str(spec.id),
            "PERFMON_PROTOCOL": str(PROTOCOL_VERSION),
        }
        parent_maxrss = _maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        start_mono = time.monotonic()
        result.start_t = time.time()
        try:
            if not spec.argv:
                raise ValueError("empty command")
            proc = subprocess.Popen(
                list(spec.argv),
                cwd=spec.cwd or None,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                start_new_session=True,
                pass_fds=(keep,),
                close_fds=True,
                preexec_fn=preexec,
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            for fd in (probe_r, out_r, err_r):
                _close_fd(fd)
            result.status = SessionStatus.START_FAILED
            what = spec.argv[0] if spec.argv else "command"
            result.error = f"cannot start {what}: {exc}"
            result.end_t = time.time()
            result.wall_s = time.monotonic() - start_mono
            return None
        finally:
            for fd in (probe_w, out_w, err_w):
                _close_fd(fd)
        # The session's clock starts once the command is exec'd (Popen returns after a
        # successful exec): forking the daemon (page tables of a large parent, ~10 ms) is
        # perfmon's cost, not the workload's, and must not bias short sessions' timings.
        start_mono = time.monotonic()
        result.start_t = time.time()
        out_log, err_log = (_CappedLog(p, self.log_cap_bytes) for p in self.log_paths(spec.id))
        run = _Running(
            spec=spec,
            result=result,
            proc=proc,
            pid=proc.pid,
            start_mono=start_mono,
            decoder=Decoder(spec.id),
            logs=(out_log, err_log),
            parent_maxrss=parent_maxrss,
        )
        run.fds = {probe_r: asyncio.Event(), out_r: asyncio.Event(), err_r: asyncio.Event()}
        run.sinks = {probe_r: self._probe_sink(run), out_r: out_log.write, err_r: err_log.write}
        result.status = SessionStatus.RUNNING
        return run

    def _watch(self, loop: asyncio.AbstractEventLoop, run: _Running) -> None:
        """Register the pipe readers and the exit watch with the loop."""
        for fd in run.fds:
            os.set_blocking(fd, False)
            if sys.platform == "linux":
                with contextlib.suppress(OSError, AttributeError):
                    import fcntl

                    fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
            loop.add_reader(fd, self._on_readable, loop, run, fd)
        try:
            run.pidfd = os.pidfd_open(run.pid)
        except (AttributeError, OSError):
            run.pidfd = None
        if run.pidfd is not None:
            loop.add_reader(run.pidfd, run.exited.set)
        else:
            run.timers.append(loop.call_later(_POLL_S, self._poll_exit, loop, run))

    def _poll_exit(self, loop: asyncio.AbstractEventLoop, run: _Running) -> None:
        """Exit watch without pidfds: reap with WNOHANG, else look again in a while."""
        try:
            pid, status, usage = os.wait4(run.pid, os.WNOHANG)
        except ChildProcessError:
            run.exited.set()
            return
        if pid:
            run.wait = (status, usage)
            run.exited.set()
        else:
            run.timers.append(loop.call_later(_POLL_S, self._poll_exit, loop, run))

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
        run.sinks[fd](data)

    async def _sample_loop(self, run: _Running) -> None:
        """Sample the tree's RSS and the leader's VmHWM: a few times early (20 ms to 0.5 s,
        so that a session shorter than the interval still gets a peak RSS), then every
        ``sample_interval_s``."""
        result = run.result
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

    def _terminate(self, run: _Running, why: SessionStatus) -> None:
        """SIGTERM the group now, SIGKILL it after the grace period (once per session)."""
        if run.ended_by is not None or run.wait is not None:
            return
        run.ended_by = why
        if why is SessionStatus.TIMEOUT:
            run.result.error = f"timed out after {run.spec.timeout_s:g} s"
        else:
            run.result.error = "cancelled"
        _signal_group(run.pid, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        run.timers.append(loop.call_later(self.grace_s, self._kill, run))

    def _kill(self, run: _Running) -> None:
        if run.wait is None:
            run.sent_kill = True
            _signal_group(run.pid, signal.SIGKILL)

    # -- ending -------------------------------------------------------------------------------

    def _reap(self, run: _Running) -> None:
        """Collect the leader's wait status and rusage; fill in the result."""
        if run.wait is None:
            try:
                _, status, usage = os.wait4(run.pid, 0)
                run.wait = (status, usage)
            except ChildProcessError:
                run.wait = None
        result = run.result
        result.end_t = time.time()
        result.wall_s = time.monotonic() - run.start_mono
        if run.wait is None:
            result.status = run.ended_by or SessionStatus.EXIT
            result.error = result.error or "exit status lost (child reaped elsewhere)"
            run.proc.returncode = -1
            return
        status, usage = run.wait
        run.proc.returncode = os.waitstatus_to_exitcode(status)
        result.cpu_s = usage.ru_utime + usage.ru_stime
        # ru_maxrss starts from the forking parent's high-water mark (the kernel keeps the
        # pre-exec memory's in it), so it says something about the child only when it
        # exceeds perfmon's own ru_maxrss at spawn time.
        maxrss = _maxrss_bytes(usage.ru_maxrss)
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

    async def _clear_group(self, run: _Running) -> None:
        """SIGKILL whatever is left of the leader's group and wait until it is gone."""
        members = _live_group_members(run.pid)
        if not members:
            return
        _signal_group(run.pid, signal.SIGKILL)
        deadline = time.monotonic() + _GROUP_GONE_S
        while members and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_S)
            members = _live_group_members(run.pid)
        if members:
            run.result.error = (
                run.result.error + "; " if run.result.error else ""
            ) + f"{len(members)} process(es) of the group survived SIGKILL"

    async def _drain(self, run: _Running) -> None:
        """Wait (bounded) for EOF on the pipes, then decode a final unterminated line."""
        waits = [asyncio.create_task(ev.wait()) for ev in run.fds.values()]
        _, pending = await asyncio.wait(waits, timeout=_EOF_WAIT_S)
        for task in pending:
            task.cancel()
        for fd, eof in run.fds.items():
            if eof.is_set():
                continue
            # A process outside the group still holds the pipe: take what it holds now.
            with contextlib.suppress(OSError):
                for _ in range(_PIPE_SIZE // _READ_SIZE + 1):  # one pipeful, not forever
                    data = os.read(fd, _READ_SIZE)
                    if not data:
                        break
                    run.sinks[fd](data)
        tail = run.decoder.close_batch(time.time())
        self._deliver(run, tail)

    def _abort(self, run: _Running) -> None:
        """Synchronous end for a cancelled task: SIGKILL the group and reap the leader."""
        _signal_group(run.pid, signal.SIGKILL)
        if run.wait is None:
            with contextlib.suppress(ChildProcessError):
                _, status, usage = os.wait4(run.pid, 0)
                run.wait = (status, usage)
        self._reap(run)
        _signal_group(run.pid, signal.SIGKILL)

    def _close(self, loop: asyncio.AbstractEventLoop, run: _Running) -> None:
        for timer in run.timers:
            timer.cancel()
        if run.pidfd is not None:
            loop.remove_reader(run.pidfd)
            _close_fd(run.pidfd)
            run.pidfd = None
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
        def feed(data: bytes) -> None:
            self._deliver(run, run.decoder.feed_batch(data, time.time()))

        return feed
