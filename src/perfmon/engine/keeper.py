"""The keeper: a tiny process that starts, times, reaps and contains a run's sessions.

The daemon (``perfmon.engine.supervisor.Supervisor``) starts one keeper per run, as
``python -I -S keeper.py CTL_FD PARENT_PID``: this file imports the standard library only, so
the keeper is a ~10 MB process that starts in a few milliseconds, whatever the daemon has loaded.
It does nothing but the launch/reap path, in its own single-threaded loop, so nothing the daemon
does (gate bootstraps holding the GIL, reports, snapshots, fsyncs) can delay a session's start
or end time, and spawning does not fork the large daemon.

**What it guarantees**

- *Timing*: each session's start is ``time.monotonic()`` taken as soon as ``posix_spawn``
  returns (glibc spawns with ``clone(CLONE_VM | CLONE_VFORK)``, so it returns once the child has
  exec'd); its end is taken as soon as ``wait4`` has reaped the leader, which the keeper learns
  of from ``SIGCHLD`` through ``signal.set_wakeup_fd`` (no polling). ``CLOCK_MONOTONIC`` is
  system-wide, so the daemon can compare these stamps with its own.
- *CPU*: the child does no Python between fork and exec (``posix_spawn`` with ``setsid``,
  ``setsigdef`` and file actions run in C), so a session's ``ru_utime + ru_stime`` is the
  workload's own; ``ru_maxrss`` carries the keeper's (small) high-water mark, reported as
  ``parent_maxrss`` so the daemon can tell when ``ru_maxrss`` says something about the child.
- *Containment*: the keeper is a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``, Linux
  >= 3.4), so every orphaned descendant of a session (a background grandchild, a process that
  called ``setsid`` and double-forked) is re-parented to the keeper instead of init. When a
  session's leader exits, the keeper SIGKILLs the leader's process group and every orphan in its
  own process tree that belongs to no *running* session (an orphan is attributed to a running
  session by its process group, its session id, or the ``PERFMON_SESSION`` variable in its
  environment), reaps them, and only then reports the exit. When the daemon dies (kill -9, OOM)
  its end of the control socket closes; the keeper then SIGKILLs every process it contains and
  exits (``PR_SET_PDEATHSIG`` = SIGTERM covers a daemon thread dying too).

**Protocol** (``AF_UNIX`` ``SOCK_SEQPACKET`` socketpair, one UTF-8 JSON object per message):

- keeper -> daemon, once at start: ``{"ev": "hello", "pid": N, "containment": "keeper-subreaper"
  | "keeper-process-group"}``;
- daemon -> keeper: ``{"op": "spawn", "id": SESSION, "argv": [...], "env": {...}, "cwd": str}``
  with three descriptors in ``SCM_RIGHTS``: the write ends of stdout, stderr and the probe
  channel, which become fds 1, 2 and 3 of the child (stdin is ``/dev/null``); the keeper closes
  its copies once the child is started;
- keeper -> daemon: ``{"ev": "started", "id", "pid", "asked_mono"`` (when the keeper read the
  request), ``"start_mono", "start_t", "parent_maxrss"}``
  or ``{"ev": "start_failed", "id", "error"}``;
- a spawn request may name ``"after": OTHER_ID``, a session the keeper is running (or holds
  queued itself): it is then queued and started the moment OTHER_ID's exit has been reported
  (no round trip through the daemon between the two sessions); ``{"op": "cancel", "id"}``
  drops a queued request
  (answered ``start_failed``, error ``"cancelled before start"``);
- daemon -> keeper: ``{"op": "signal", "id", "sig"}``: the signal to the session's process group
  while its leader lives (``SIGTERM`` then ``SIGKILL`` is the daemon's policy);
- keeper -> daemon, once per started session: ``{"ev": "exited", "id", "status"`` (the raw wait
  status), ``"utime", "stime"`` (seconds), ``"maxrss"`` (``ru_maxrss`` as the kernel gives it),
  ``"end_mono", "end_t", "killed"`` (leftover descendants SIGKILLed), ``"survivors"}`` (those
  still alive 5 s later, normally 0).

Times: ``*_mono`` are ``time.monotonic()`` seconds, ``*_t`` Unix seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>, Linux >= 3.4
MAX_MESSAGE = 1 << 20  # largest control message, bytes (a spawn request carries the env)
SOCKET_BUFFER = 4 << 20  # requested SO_SNDBUF / SO_RCVBUF of the control socket, bytes
CLEAR_POLL_S = 0.005  # how often a session's leftovers are swept again while they die
CLEAR_DEADLINE_S = 5.0  # how long SIGKILLed leftovers may take to disappear
CHILD_FDS = 3  # stdout, stderr, probe channel, in that order, in a spawn request
CHILD_PROBE_FD = 3  # the probe channel's number in the child
# Signals a session must start with at their default action: those the keeper ignores or
# handles, and those Python ignores at start-up (SIGPIPE, SIGXFSZ), as subprocess restores them.
_DEFAULT_SIGNALS = tuple(
    getattr(signal, name)
    for name in (
        "SIGINT",
        "SIGHUP",
        "SIGTERM",
        "SIGQUIT",
        "SIGPIPE",
        "SIGXFSZ",
        "SIGCHLD",
        "SIGUSR1",
        "SIGUSR2",
        "SIGALRM",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
    )
    if hasattr(signal, name)
)


def _prctl(option: int, arg: int) -> bool:
    """Call prctl(2) through libc; False where it is missing or fails."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, arg, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


@dataclass(eq=False)
class _Session:
    id: int
    pid: int
    exit: dict[str, object] | None = None  # the "exited" message, once the leader is reaped
    killed: set[int] = field(default_factory=set)  # leftover pids SIGKILLed
    deadline: float = 0.0


@dataclass(eq=False)
class Keeper:
    """The keeper's state and loop; see the module docstring. ``run()`` never returns normally.

    Args:
        ctl: the keeper's end of the control socketpair (SOCK_SEQPACKET).
        parent: the daemon's pid; if it is already gone the keeper exits at once.
    """

    ctl: socket.socket
    parent: int
    subreaper: bool = False
    sessions: dict[int, _Session] = field(default_factory=dict)  # by leader pid
    home: str = "/"
    wake_r: int = -1
    stopping: bool = False
    # session id -> a spawn request (message, descriptors, truncated) to start once it ends
    queued: dict[int, tuple[dict[str, object], list[int], bool]] = field(default_factory=dict)

    # -- set-up ---------------------------------------------------------------------------

    def setup(self) -> None:
        """Become a subreaper, ignore the terminal's signals, wake on SIGCHLD, say hello."""
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP):
            signal.signal(sig, signal.SIG_IGN)
        self.subreaper = _prctl(PR_SET_CHILD_SUBREAPER, 1)
        signal.signal(signal.SIGTERM, self._on_term)
        _prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.ctl.set_inheritable(False)
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            with contextlib.suppress(OSError):
                self.ctl.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
        self.home = "/"
        os.chdir(self.home)
        if os.getppid() != self.parent:
            self.shutdown()
        containment = "keeper-subreaper" if self.subreaper else "keeper-process-group"
        self.send({"ev": "hello", "pid": os.getpid(), "containment": containment})

    def _on_term(self, *_: object) -> None:
        self.stopping = True

    def send(self, msg: dict[str, object]) -> None:
        """Send one message to the daemon; a daemon that is gone means shutdown."""
        try:
            self.ctl.sendall(json.dumps(msg, separators=(",", ":")).encode())
        except OSError:
            self.shutdown()

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        """Serve requests and reap children until the daemon goes away."""
        while True:
            if self.stopping:
                self.shutdown()
            clearing = any(s.exit is not None for s in self.sessions.values())
            ctl = self.ctl.fileno()
            try:
                ready, _, _ = select.select(
                    [ctl, self.wake_r], [], [], CLEAR_POLL_S if clearing else None
                )
            except InterruptedError:  # pragma: no cover - PEP 475 retries select
                ready = []
            if self.wake_r in ready:
                with contextlib.suppress(OSError):
                    while os.read(self.wake_r, 4096):
                        pass
            self.reap()
            if ctl in ready:
                self.receive()
            if clearing or self.wake_r in ready:
                self.clear_ended()

    def receive(self) -> None:
        """Handle every request waiting on the control socket; EOF means the daemon died."""
        while True:
            try:
                data, anc, flags, _ = self.ctl.recvmsg(
                    MAX_MESSAGE,
                    socket.CMSG_SPACE(CHILD_FDS * 4),
                    socket.MSG_DONTWAIT | getattr(socket, "MSG_CMSG_CLOEXEC", 0),
                )
            except BlockingIOError:
                return
            except OSError:
                self.shutdown()
            fds: list[int] = []
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    usable = len(payload) - len(payload) % 4
                    fds.extend(memoryview(payload[:usable]).cast("i"))
            if not data and not fds:
                self.shutdown()
            msg: dict[str, object] = {}
            try:
                msg = json.loads(data)
                op = msg.get("op")
                if op == "spawn":
                    after = msg.get("after")
                    if after is not None and self.pending(after):
                        # Start it the moment session `after` has ended and been cleared.
                        self.queued[int(after)] = (msg, fds, bool(flags & socket.MSG_TRUNC))  # type: ignore[call-overload]
                        fds = []
                    else:
                        self.spawn(msg, fds, truncated=bool(flags & socket.MSG_TRUNC))
                elif op == "signal":
                    self.signal(int(msg["id"]), int(msg["sig"]))  # type: ignore[call-overload]
                elif op == "cancel":
                    self.cancel(int(msg["id"]))  # type: ignore[call-overload]
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                sid = msg.get("id") if isinstance(msg, dict) else None
                if sid is not None and msg.get("op") == "spawn":
                    self.send({"ev": "start_failed", "id": sid, "error": f"bad request: {exc}"})
            finally:
                for fd in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)

    # -- spawning --------------------------------------------------------------------------

    def spawn(self, msg: dict[str, object], fds: list[int], *, truncated: bool) -> None:
        """Start one session (``posix_spawn``, new session, stdio and probe channel moved)."""
        asked_mono = time.monotonic()
        sid = int(msg["id"])  # type: ignore[call-overload]
        argv = [str(a) for a in msg["argv"]]  # type: ignore[attr-defined]
        env = {str(k): str(v) for k, v in msg["env"].items()}  # type: ignore[attr-defined]
        cwd = str(msg.get("cwd") or self.home)
        if truncated or len(fds) != CHILD_FDS:
            self.send({"ev": "start_failed", "id": sid, "error": "request too large"})
            return
        out, err, probe = fds
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out, 1),
            (os.POSIX_SPAWN_DUP2, err, 2),
            (os.POSIX_SPAWN_DUP2, probe, CHILD_PROBE_FD),
        ]
        try:
            if not argv or not argv[0]:
                raise ValueError("empty command")
            os.chdir(cwd)  # the keeper is single-threaded: the child inherits this cwd
            try:
                pid = self._spawn_path(argv, env, actions)
            finally:
                os.chdir(self.home)
        except (OSError, ValueError) as exc:
            self.send({"ev": "start_failed", "id": sid, "error": str(exc)})
            return
        start_mono = time.monotonic()
        start_t = time.time()
        import resource

        parent_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.sessions[pid] = _Session(sid, pid)
        self.send(
            {
                "ev": "started",
                "id": sid,
                "pid": pid,
                "asked_mono": asked_mono,
                "start_mono": start_mono,
                "start_t": start_t,
                "parent_maxrss": parent_maxrss,
            }
        )

    @staticmethod
    def _spawn_path(argv: list[str], env: dict[str, str], actions: list[tuple]) -> int:  # type: ignore[type-arg]
        """posix_spawn ``argv``, looking ``argv[0]`` up on the *session's* PATH.

        The lookup is done with ``access(2)`` before spawning (as ``shutil.which`` does), not by
        trying an exec in each PATH directory as execvp does: each failed attempt would be a
        whole failed spawn (~0.3 ms idle, several ms on a loaded machine) between sessions.
        """
        kwargs = {
            "file_actions": actions,
            "setsid": True,
            "setsigdef": _DEFAULT_SIGNALS,
            "setsigmask": (),
        }
        path = argv[0]
        if not os.path.dirname(path):
            for directory in os.get_exec_path(env):
                candidate = os.path.join(directory, path)
                if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
                    path = candidate
                    break
            else:
                raise FileNotFoundError(2, "No such file or directory", argv[0])
        return os.posix_spawn(path, argv, env, **kwargs)  # type: ignore[arg-type]

    def signal(self, sid: int, sig: int) -> None:
        """Signal a session's process group while its leader lives."""
        for s in self.sessions.values():
            if s.id == sid and s.exit is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(s.pid, sig)

    # -- reaping and containment -----------------------------------------------------------

    def reap(self) -> None:
        """Reap every child that has exited: leaders get their exit recorded, orphans vanish."""
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            end_mono = time.monotonic()
            end_t = time.time()
            s = self.sessions.get(pid)
            if s is None or s.exit is not None:
                continue
            s.exit = {
                "ev": "exited",
                "id": s.id,
                "status": status,
                "utime": usage.ru_utime,
                "stime": usage.ru_stime,
                "maxrss": usage.ru_maxrss,
                "end_mono": end_mono,
                "end_t": end_t,
            }
            s.deadline = end_mono + CLEAR_DEADLINE_S
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    def clear_ended(self) -> None:
        """SIGKILL the leftovers of ended sessions; report each once nothing of it is left."""
        ended = [s for s in self.sessions.values() if s.exit is not None]
        if not ended:
            return
        live = {s.pid: s.id for s in self.sessions.values() if s.exit is None}
        left = self._kill_leftovers(live)
        now = time.monotonic()
        for s in ended:
            s.killed |= left
            if left and now < s.deadline:
                continue
            assert s.exit is not None
            s.exit["killed"] = len(s.killed)
            s.exit["survivors"] = len(left)
            del self.sessions[s.pid]
            queued = self.queued.pop(s.id, None)
            if queued is not None:
                # The successor starts before the exit is reported: waking the daemon first
                # could hand it the CPU (wake-up preemption) while the successor waits.
                msg, fds, truncated = queued
                try:
                    self.spawn(msg, fds, truncated=truncated)
                finally:
                    for fd in fds:
                        with contextlib.suppress(OSError):
                            os.close(fd)
            self.send(s.exit)

    def pending(self, sid: object) -> bool:
        """True while session ``sid`` runs, is being cleared, or waits in the queue."""
        return any(s.id == sid for s in self.sessions.values()) or any(
            m.get("id") == sid for m, _, _ in self.queued.values()
        )

    def cancel(self, sid: int) -> None:
        """Drop a queued spawn request of session ``sid`` (answered ``start_failed``)."""
        for after, (msg, fds, _) in list(self.queued.items()):
            if msg.get("id") == sid:
                del self.queued[after]
                for fd in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                self.send({"ev": "start_failed", "id": sid, "error": "cancelled before start"})

    def _kill_leftovers(self, live: dict[int, int]) -> set[int]:
        """SIGKILL every process of the keeper's tree that no running session owns.

        Returns:
            The live (non-zombie) processes found and signalled.
        """
        found: set[int] = set()
        tree = _ProcTree()
        live_ids = set(live.values())
        for root in tree.children(os.getpid()):
            if root in live:
                continue  # a running session's leader and its tree
            owner = _owner(root, live)
            if owner is not None and owner in live_ids:
                continue
            for pid in tree.subtree(root):
                if _is_zombie(pid):
                    continue
                found.add(pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        return found

    def shutdown(self) -> None:
        """The daemon is gone: SIGKILL every session and leftover, reap them, exit."""
        for s in list(self.sessions.values()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(s.pid, signal.SIGKILL)
        deadline = time.monotonic() + CLEAR_DEADLINE_S
        while time.monotonic() < deadline:
            if not self._kill_leftovers({}):
                break
            with contextlib.suppress(ChildProcessError):
                while os.wait4(-1, os.WNOHANG)[0]:
                    pass
            time.sleep(CLEAR_POLL_S)
        with contextlib.suppress(ChildProcessError):
            while os.wait4(-1, os.WNOHANG)[0]:
                pass
        os._exit(0)


class _ProcTree:
    """Children of processes, from ``/proc/PID/task/TID/children`` (Linux >= 3.5 with
    CONFIG_PROC_CHILDREN), else from one scan of every ``/proc/PID/stat``."""

    def __init__(self) -> None:
        self._by_parent: dict[int, list[int]] | None = None

    def children(self, pid: int) -> list[int]:
        if self._by_parent is None:
            try:
                kids: list[int] = []
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                        kids.extend(int(x) for x in f.read().split())
                return kids
            except FileNotFoundError:
                if pid != os.getpid():
                    return []  # the process is gone
                self._by_parent = self._scan()
            except (OSError, ValueError):
                return []
        return self._by_parent.get(pid, [])

    @staticmethod
    def _scan() -> dict[int, list[int]]:
        by_parent: dict[int, list[int]] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            stat = _stat(int(name))
            if stat is not None:
                by_parent.setdefault(int(stat[1]), []).append(int(name))
        return by_parent

    def subtree(self, root: int) -> list[int]:
        out, stack = [], [root]
        while stack:
            pid = stack.pop()
            out.append(pid)
            stack.extend(self.children(pid))
        return out


def _stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name: state, ppid, pgrp, session, ..."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _is_zombie(pid: int) -> bool:
    stat = _stat(pid)
    return stat is None or stat[0] in ("Z", "X")


def _owner(pid: int, live: dict[int, int]) -> int | None:
    """The running session an orphan belongs to: by process group or session id (a leader's
    pid is both), else by ``PERFMON_SESSION`` in its environment; None when unknown."""
    stat = _stat(pid)
    if stat is None:
        return None
    for field_ in (stat[2], stat[3]):  # pgrp, session
        if int(field_) in live:
            return live[int(field_)]
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return None
    for entry in env.split(b"\0"):
        if entry.startswith(b"PERFMON_SESSION="):
            with contextlib.suppress(ValueError):
                return int(entry.split(b"=", 1)[1])
    return None


def main(argv: list[str]) -> None:
    """Entry point: ``keeper.py CTL_FD PARENT_PID``."""
    ctl = socket.socket(fileno=int(argv[1]))
    keeper = Keeper(ctl=ctl, parent=int(argv[2]))
    keeper.setup()
    keeper.run()


if __name__ == "__main__":
    main(sys.argv)
