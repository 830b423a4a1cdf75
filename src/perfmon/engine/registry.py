"""The run registry: which runs this user started, where they record, and whether they live.

A daemon registers its run in ``<runtime dir>/runs/<run_id>.json`` when it starts (run
directory, pid, control socket, campaign) and records its end there (exit status, verdict), so
that ``perfmon ls``, ``perfmon attach`` and ``perfmon stop`` can find runs from any directory and
any terminal. The registry is only an index: the run directory stays the source of truth, and a
registry entry whose daemon died without recording an end is shown as ``crashed``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

REGISTRY_VERSION = 1
STALE_SOCKET_AGE_S = 10.0
"""A control socket nobody listens on is removed only once it is this old (seconds), so that a
daemon between its ``bind`` and its ``listen`` never loses its socket."""


def runtime_dir() -> Path:
    """Return perfmon's per-user runtime directory, creating it 0700 if needed.

    ``$PERFMON_RUNTIME_DIR`` when set (tests use it), else ``$XDG_RUNTIME_DIR/perfmon`` when
    that variable names a directory, else ``/tmp/perfmon-<uid>`` (XDG Base Directory
    Specification).

    Raises:
        PermissionError: if the directory exists but belongs to another user or is open to
            others (someone could then connect to or replace our sockets).
    """
    override = os.environ.get("PERFMON_RUNTIME_DIR")
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = (
        Path(override)
        if override
        else (
            Path(base) / "perfmon"
            if base and Path(base).is_dir()
            else Path(f"/tmp/perfmon-{os.getuid()}")
        )
    )
    path.mkdir(mode=0o700, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise PermissionError(f"{path} is not a directory owned by uid {os.getuid()}")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


class RuntimeDirError(Exception):
    """perfmon's runtime directory (or its ``runs`` registry) cannot be trusted or created.

    ``str(error)`` is one line naming the directory, what is wrong with it, and what to do;
    the command line prints it and exits 2 (a usage error: the environment, not a run).
    """


def _why_untrusted(path: Path) -> str | None:
    """Why ``path`` is not a private directory of ours, or None when it is one (or absent)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be examined ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != os.getuid():
        return f"belongs to uid {st.st_uid}, not to this user (uid {os.getuid()})"
    return None


def checked_runtime_dir() -> Path:
    """Return perfmon's runtime directory, created 0700, after refusing a hostile one.

    A symlink, a non-directory, or a directory owned by another user could let someone
    connect to, replace or read our control sockets and registry; perfmon refuses them instead
    of following them. The directory is ``$PERFMON_RUNTIME_DIR``, ``$XDG_RUNTIME_DIR/perfmon``
    or ``/tmp/perfmon-<uid>`` (see ``perfmon.engine.daemon.runtime_dir``); its ``runs``
    subdirectory is checked the same way.

    Raises:
        RuntimeDirError: one line naming the directory and the problem.
    """
    try:
        path = runtime_dir()
    except (OSError, ValueError) as exc:
        guess = _runtime_candidate()
        why = _why_untrusted(guess) or f"cannot be used ({getattr(exc, 'strerror', None) or exc})"
        raise RuntimeDirError(
            f"runtime directory {guess} {why}; refusing it (remove it, or set "
            "PERFMON_RUNTIME_DIR to a private directory)"
        ) from None
    runs = path / "runs"
    problem = _why_untrusted(runs)
    if problem is not None:
        raise RuntimeDirError(f"run registry {runs} {problem}; refusing it (remove it)")
    try:
        runs.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise RuntimeDirError(f"cannot create the run registry {runs}: {exc.strerror}") from None
    return path


def _runtime_candidate() -> Path:
    """The runtime directory ``runtime_dir`` would use (for error messages)."""
    override = os.environ.get("PERFMON_RUNTIME_DIR")
    base = os.environ.get("XDG_RUNTIME_DIR")
    if override:
        return Path(override)
    if base and Path(base).is_dir():
        return Path(base) / "perfmon"
    return Path(f"/tmp/perfmon-{os.getuid()}")


def registry_dir() -> Path:
    """Return ``<runtime dir>/runs``, created 0700.

    Raises:
        RuntimeDirError: the runtime directory or the registry is a symlink, not a
            directory, or belongs to another user (see ``checked_runtime_dir``).
    """
    return checked_runtime_dir() / "runs"


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def register(
    run_id: str, run_dir: Path, socket: Path, campaign: str, *, pid: int | None = None
) -> Path:
    """Record a starting run; returns the registry entry's path."""
    path = registry_dir() / f"{run_id}.json"
    _write(
        path,
        {
            "version": REGISTRY_VERSION,
            "run_id": run_id,
            "run_dir": str(Path(run_dir).resolve()),
            "socket": str(socket),
            "campaign": campaign,
            "pid": pid if pid is not None else os.getpid(),
            "started_t": time.time(),
            "ended_t": None,
            "exit_status": None,
            "verdict": None,
        },
    )
    return path


def record_end(run_id: str, *, exit_status: int, verdict: str) -> None:
    """Record how a run ended (called by its daemon)."""
    path = registry_dir() / f"{run_id}.json"
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        data.update(ended_t=time.time(), exit_status=exit_status, verdict=verdict)
        _write(path, data)


@dataclass(frozen=True, slots=True)
class RunEntry:
    """One registered run, with its state worked out now.

    Attributes:
        run_id / run_dir / socket / campaign / pid: as registered.
        state: ``running`` (daemon alive), ``finished`` (end recorded), or ``crashed``
            (daemon gone without recording an end).
        started_t / ended_t: Unix seconds (ended_t None while running or after a crash).
        sessions_done: sessions recorded in the run directory so far.
        exit_status / verdict: as recorded at the end (None before).
    """

    run_id: str
    run_dir: Path
    socket: Path
    campaign: str
    pid: int
    state: str
    started_t: float
    ended_t: float | None
    sessions_done: int
    exit_status: int | None
    verdict: str | None


def _alive(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return any("perfmon" in part for part in proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _sessions_done(run_dir: Path) -> int:
    try:
        with open(run_dir / "sessions.jsonl", "rb") as f:
            return sum(1 for line in f if line.endswith(b"\n"))
    except OSError:
        return 0


def remove_stale_sockets(*, min_age_s: float = STALE_SOCKET_AGE_S) -> int:
    """Remove control sockets of dead daemons from the runtime directory.

    A ``*.sock`` file is stale when connecting to it is refused (no process listens on it: its
    daemon died without removing it, e.g. kill -9) and it is at least ``min_age_s`` old. Live
    daemons' sockets accept the connection and are kept; the connection is closed at once
    (the daemon drops a viewer that says no hello).

    Args:
        min_age_s: minimum age (by mtime) of a socket before it may be removed, seconds.

    Returns:
        How many socket files were removed. Never raises for one unreadable entry.
    """
    removed = 0
    try:
        paths = list(runtime_dir().glob("*.sock"))
    except (OSError, ValueError):
        return 0
    now = time.time()
    for path in paths:
        try:
            st = path.lstat()
            if not stat.S_ISSOCK(st.st_mode) or now - st.st_mtime < min_age_s:
                continue
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(1.0)
                probe.connect(str(path))
        except ConnectionRefusedError:
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def list_runs(*, damaged: list[Path] | None = None) -> list[RunEntry]:
    """Return every registered run, newest first (stale control sockets are removed first,
    see ``remove_stale_sockets``).

    Args:
        damaged: when given, the registry entries that could not be read (garbage, wrong
            types, another version) are appended to it; they are skipped, never raised.

    Raises:
        RuntimeDirError: see ``registry_dir``.
    """
    remove_stale_sockets()
    entries = []
    for path in registry_dir().glob("*.json"):
        try:
            entries.append(_entry(path))
        except (OSError, ValueError, KeyError, TypeError, OverflowError):
            if damaged is not None:
                damaged.append(path)
    entries.sort(key=lambda e: e.started_t, reverse=True)
    return entries


def _entry(path: Path) -> RunEntry:
    """Read one registry entry.

    Raises:
        OSError, ValueError, KeyError, TypeError, OverflowError: a damaged entry.
    """
    if path.is_symlink():
        raise ValueError(f"{path} is a symbolic link")
    with open(path, "rb") as f:
        raw = f.read(1 << 20)
    data = json.loads(raw)
    if not isinstance(data, dict) or data.get("version") != REGISTRY_VERSION:
        raise ValueError(f"{path}: not a version {REGISTRY_VERSION} registry entry")
    pid = int(data["pid"])
    if data.get("exit_status") is not None:
        state = "finished"
    elif _alive(pid):
        state = "running"
    else:
        state = "crashed"
    run_dir = Path(data["run_dir"])
    return RunEntry(
        run_id=str(data["run_id"]),
        run_dir=run_dir,
        socket=Path(data["socket"]),
        campaign=str(data["campaign"]),
        pid=pid,
        state=state,
        started_t=float(data["started_t"]),
        ended_t=data.get("ended_t"),
        sessions_done=_sessions_done(run_dir),
        exit_status=data.get("exit_status"),
        verdict=data.get("verdict"),
    )


def find_run(name: str | None) -> RunEntry:
    """Find a run by id, id prefix, or run directory path; None means the newest running run.

    Raises:
        LookupError: if no run matches, or a prefix matches several.
    """
    runs = list_runs()
    if name is None:
        running = [r for r in runs if r.state == "running"]
        if not running:
            raise LookupError("no running perfmon run (perfmon ls lists the known runs)")
        return running[0]
    as_path = Path(name)
    if as_path.is_dir():
        resolved = as_path.resolve()
        for r in runs:
            if r.run_dir == resolved:
                return r
    exact = [r for r in runs if r.run_id == name]
    if exact:
        return exact[0]
    matches = [r for r in runs if r.run_id.startswith(name) or name in r.run_id]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise LookupError(f"no run matches {name!r} (perfmon ls lists the known runs)")
    ids = ", ".join(r.run_id for r in matches[:5])
    raise LookupError(f"{name!r} matches several runs: {ids}")
