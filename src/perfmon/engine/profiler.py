"""py-spy sampling of running sessions, stored as collapsed stacks in the run directory.

perfmon drives py-spy (https://github.com/benfred/py-spy) as a subprocess::

    py-spy record --pid PID --format raw --function --rate 100 --duration N
                  [--subprocesses] [--nonblocking] --output FILE

``--format raw`` writes collapsed stacks (``perfmon.core.stacks`` parses them); ``--function``
names each frame by its function's first line rather than the line being run, so that one
function is one frame. Each profile becomes two files under ``run_dir/profiles/``:

- ``<name>.collapsed``: the stacks as py-spy wrote them (``name`` is e.g. ``s0007-p01``);
- one line of ``index.jsonl``: a ``ProfileRecord`` as JSON (session, workload, variant,
  params, start, duration, rate, samples, status, message).

Every failure becomes a ``ProfileRecord`` with status ``failed`` and a message saying what to
do; the profiler never raises into the run: py-spy missing, no permission to attach (the
kernel's Yama ``ptrace_scope``, a container without ``CAP_SYS_PTRACE``), the session exiting
before or during sampling (during: status ``partial``, the stacks so far are kept), a
non-Python workload.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfmon.core.model import SessionSpec
from perfmon.core.snapshot import ProfileEntry
from perfmon.engine.recorder import atomic_write_text

PROFILES_DIR = "profiles"
INDEX_FILE = "index.jsonl"
DEFAULT_RATE_HZ = 100
DEFAULT_SECONDS = 5.0
"""On-demand profiles (key f in the viewer) sample this long unless told otherwise."""
SNAPSHOT_PROFILES = 50
"""Snapshots carry the records of the latest this many profiles (bounded over a soak)."""
_STDERR_CAP = 4000  # characters of py-spy's stderr kept for the message

PTRACE_HELP = (
    "py-spy needs permission to read another process's memory (ptrace). Run perfmon as the "
    "same user with kernel.yama.ptrace_scope = 0 (sudo sysctl kernel.yama.ptrace_scope=0), "
    "or run perfmon as root; in Docker add --cap-add SYS_PTRACE (Kubernetes: "
    "securityContext.capabilities.add: [SYS_PTRACE])."
)


def find_py_spy() -> str | None:
    """The py-spy executable: on ``PATH``, else next to this Python (a virtualenv's bin/).

    Returns:
        Its path, or None when py-spy is not installed.
    """
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return None


@dataclass(frozen=True, slots=True)
class ProfileRecord(ProfileEntry):
    """One py-spy profile of one session (one line of ``profiles/index.jsonl``): the
    snapshot's ``perfmon.core.snapshot.ProfileEntry`` (the same fields, one definition), with
    what the engine needs of it.

    Attributes:
        name: file stem, e.g. ``"s0007-p01"``; the stacks are ``profiles/<name>.collapsed``.
        session: session id; workload / variant / params / set_name: what the session ran.
        started_t: Unix seconds when sampling began; seconds: wall time sampled.
        rate_hz: samples per second asked of py-spy; nonblocking: ``--nonblocking`` was used.
        reason: ``"on demand"``, ``"1 in 5 sessions of its variant"``, ``"duty 10s/300s"``.
        status: ``"ok"``, ``"partial"`` (the session ended while sampled: what was sampled is
            kept), ``"failed"`` (no stacks; ``message`` says why and what to do).
        samples: stack samples written (the sum of the collapsed counts); errors: py-spy's own
            count of samples it could not take.
        message: a sentence for the viewer and the report.
        pyspy_cpu_s: CPU seconds (user + system) py-spy itself used while sampling, read with
            psutil every ``CPU_POLL_S`` while it ran (so within that of its end); None when it
            could not be read. This is the cost of sampling on the machine, shown beside it.
    """

    @property
    def ok(self) -> bool:
        """True when the profile holds stacks (status ok or partial)."""
        return self.status in ("ok", "partial") and self.samples > 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProfileRecord:
        """Inverse of ``to_dict``; unknown keys are ignored.

        Raises:
            TypeError / KeyError: if a field is missing.
        """
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in fields})


def process_alive(pid: int) -> bool:
    """True when ``pid`` names a process that is running (not gone, not a zombie)."""
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def explain_failure(stderr: str, returncode: int | None, pid: int, *, alive: bool = True) -> str:
    """Turn py-spy's error output into a sentence saying what happened and what to do.

    Args:
        stderr: py-spy's stderr (its ``Error: ...`` lines).
        returncode: py-spy's exit status (None if it did not start).
        pid: the process that was to be sampled.
        alive: whether that process still runs (py-spy says "no python processes found" of a
            pid that has gone, too).

    Returns:
        One or two sentences; the permission case includes ``PTRACE_HELP``.
    """
    text = stderr.lower()
    if "permission denied" in text or "operation not permitted" in text or "os error 1)" in text:
        return f"py-spy was not allowed to attach to pid {pid}. {PTRACE_HELP}"
    if (
        not alive
        or "failed to get process executable name" in text
        or "no such process" in text
        or "no such file or directory" in text
    ):
        return f"the session (pid {pid}) exited before py-spy could attach; nothing was sampled"
    if (
        "failed to find python version" in text
        or "failed to find a python interpreter" in text
        or "no python processes found" in text
    ):
        return (
            f"pid {pid} does not look like a Python process (py-spy found no interpreter); "
            "py-spy samples Python programs only"
        )
    first = next(
        (ln.strip() for ln in stderr.splitlines() if ln.strip().lower().startswith("error")),
        "",
    )
    return f"py-spy failed (exit status {returncode}): {first or stderr.strip()[:200] or '?'}"


def _count_samples(text: str) -> int:
    total = 0
    for line in text.splitlines():
        head, _, count = line.rpartition(" ")
        if head and count.isdigit():
            total += int(count)
    return total


def _py_spy_errors(stderr: str) -> int:
    """py-spy's ``Samples: N Errors: M`` summary: M, or 0."""
    marker = "Errors:"
    pos = stderr.rfind(marker)
    if pos < 0:
        return 0
    word = stderr[pos + len(marker) :].split()
    return int(word[0]) if word and word[0].isdigit() else 0


@dataclass(frozen=True, slots=True)
class SpyOutcome:
    """What one py-spy run against one process gave, wherever it ran (``run_py_spy``); plain
    data, so it travels back from a remote host unchanged.

    Attributes:
        returncode: py-spy's exit status (None: it was not started).
        stderr: the last ``_STDERR_CAP`` characters of its stderr.
        text: the collapsed stacks it wrote, as written ("" when none).
        wrote: True when py-spy wrote its output file.
        alive: whether the sampled process was still alive once py-spy had ended.
        cpu_s: CPU seconds (user + system) py-spy itself used (psutil), None if unread.
        start_error: why py-spy could not be started (then the rest is empty), else None.
    """

    returncode: int | None
    stderr: str = ""
    text: str = ""
    wrote: bool = False
    alive: bool = False
    cpu_s: float | None = None
    start_error: str | None = None


EARLY_END_S = 0.5
"""py-spy that ends this much (seconds) before its duration stopped for its process's end."""

EXIT_WAIT_S = 1.0
"""How long such a process is given to finish exiting before it is taken as alive, seconds."""

RemoteSpy = Callable[[int, float | None, int, bool, bool], Awaitable[SpyOutcome]]
"""``remote(pid, seconds, rate_hz, nonblocking, subprocesses)``: py-spy run on another host."""


def py_spy_argv(
    py_spy: str,
    pid: int,
    seconds: float | None,
    rate: int,
    nonblocking: bool,
    subprocesses: bool,
    out: Path,
) -> list[str]:
    """py-spy's command line: raw collapsed stacks of ``pid`` into ``out`` at ``rate`` Hz,
    for ``seconds`` rounded up to whole seconds (None: until it exits)."""
    argv = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--function"]
    argv += ["--rate", str(rate), "--output", str(out)]
    if seconds is not None:
        argv += ["--duration", str(max(1, math.ceil(seconds)))]
    if subprocesses:
        argv.append("--subprocesses")
    if nonblocking:
        argv.append("--nonblocking")
    return argv


async def run_py_spy(
    py_spy: str | None,
    pid: int,
    seconds: float | None,
    rate: int,
    nonblocking: bool,
    subprocesses: bool,
    work_dir: Path,
    name: str,
    procs: set[asyncio.subprocess.Process] | None = None,
) -> SpyOutcome:
    """Run py-spy against ``pid`` on this host and collect what it wrote.

    Used by ``Profiler`` for a local session and, on a session's own host, by the Ray
    executor's node agent; the caller turns the outcome into a ``ProfileRecord``.

    Args:
        py_spy: the py-spy executable (None: not installed; ``start_error`` says so).
        pid: the process to sample; seconds / rate / nonblocking / subprocesses: as in
            ``py_spy_argv``.
        work_dir: where py-spy writes its output (``.<name>.collapsed.tmp``, removed after).
        name: the profile's file stem.
        procs: a set to hold the py-spy process while it runs (so ``Profiler.close`` can
            kill it), or None.

    Returns:
        The ``SpyOutcome``. Never raises for py-spy's failures; a cancelled call kills
        py-spy, removes its output and re-raises.
    """
    if py_spy is None:
        return SpyOutcome(None, start_error="py-spy is not installed: pip install py-spy")
    work_dir.mkdir(parents=True, exist_ok=True)
    tmp = work_dir / f".{name}.collapsed.tmp"
    argv = py_spy_argv(py_spy, pid, seconds, rate, nonblocking, subprocesses, tmp)
    cpu: list[float] = []
    proc: asyncio.subprocess.Process | None = None
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        if procs is not None:
            procs.add(proc)
        watcher = asyncio.create_task(_watch_cpu(proc.pid, cpu))
        try:
            _, err = await proc.communicate()
        finally:
            watcher.cancel()
        stderr = err.decode("utf-8", "replace")[-_STDERR_CAP:]
    except OSError as exc:
        return SpyOutcome(None, start_error=str(exc))
    except asyncio.CancelledError:
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    finally:
        if proc is not None and procs is not None:
            procs.discard(proc)
    text = ""
    with contextlib.suppress(OSError):
        text = tmp.read_text("utf-8", "replace")
    wrote = tmp.exists()
    with contextlib.suppress(OSError):
        tmp.unlink()
    alive = process_alive(pid)
    if alive and seconds is not None and time.monotonic() - started < seconds - EARLY_END_S:
        # py-spy stopped before its duration: the process is ending, but may still be in its
        # exit path (not yet a zombie) on a loaded machine; let it finish
        deadline = time.monotonic() + EXIT_WAIT_S
        while alive and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            alive = process_alive(pid)
    return SpyOutcome(
        proc.returncode,
        stderr=stderr,
        text=text,
        wrote=wrote,
        alive=alive,
        cpu_s=cpu[-1] if cpu else None,
    )


@dataclass(frozen=True, slots=True)
class ProfileRequest:
    """One request to sample one session with py-spy: what ``Profiler.profile`` takes.

    Attributes:
        session_id: the session; pid: its process (the process group leader).
        seconds: how long to sample (rounded up to whole seconds, py-spy's unit); None: until
            the session exits.
        reason: why (shown in the viewer and report): ``"on demand"``, ``"every 5th
            session"``, ``"duty 10s/300s"``.
        workload / variant / params / set_name: the session's description, stored with the
            profile (``params`` as ``"k=v k=v"``).
        rate_hz / nonblocking: override the profiler's defaults (None: keep them).
        remote: None: py-spy runs here against the local ``pid``. Otherwise the session runs
            on another host (``pid`` is its process id there) and ``remote(pid, seconds,
            rate_hz, nonblocking, subprocesses)`` runs py-spy on that host and returns its
            ``SpyOutcome`` (``perfmon.engine.ray_executor`` sends it to a Ray actor pinned
            to the session's node); the stacks are then trimmed and recorded here exactly
            like a local profile's.
        host: the host the session runs on, named in the record's message ("" locally).
    """

    session_id: int
    pid: int
    seconds: float | None
    reason: str
    workload: str = ""
    variant: str = ""
    params: str = ""
    set_name: str = ""
    rate_hz: int | None = None
    nonblocking: bool | None = None
    remote: RemoteSpy | None = None
    host: str = ""

    @classmethod
    def for_session(
        cls,
        spec: SessionSpec | None,
        *,
        session_id: int,
        pid: int,
        seconds: float | None,
        reason: str,
        remote: RemoteSpy | None = None,
        host: str = "",
    ) -> ProfileRequest:
        """A request describing the session by its spec (None: a session without one, which
        is stored with an empty description); ``remote``/``host`` as in the class."""
        if spec is None:
            return cls(session_id, pid, seconds, reason, remote=remote, host=host)
        return cls(
            session_id,
            pid,
            seconds,
            reason,
            workload=spec.workload,
            variant=spec.variant,
            params=" ".join(f"{k}={v}" for k, v in spec.params),
            set_name=spec.set_name,
            remote=remote,
            host=host,
        )


class Profiler:
    """Runs py-spy against sessions and records the profiles in ``run_dir/profiles/``.

    Args:
        run_dir: the run directory.
        py_spy: path of the py-spy executable (default: ``find_py_spy()``).
        rate_hz: default sampling rate, samples per second.
        nonblocking: default for py-spy's ``--nonblocking``.
        subprocesses: also sample the session's Python subprocesses.

    All methods run on the event loop's thread. Profiles of one session never overlap: a
    second request while one runs is answered with a message instead.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        py_spy: str | None = None,
        rate_hz: int = DEFAULT_RATE_HZ,
        nonblocking: bool = False,
        subprocesses: bool = True,
    ) -> None:
        self.dir = Path(run_dir) / PROFILES_DIR
        self.py_spy = py_spy if py_spy is not None else find_py_spy()
        self.rate_hz = rate_hz
        self.nonblocking = nonblocking
        self.subprocesses = subprocesses
        self.records: list[ProfileRecord] = load_index(Path(run_dir))
        self.active: dict[int, float] = {}
        """Session id -> Unix time sampling began, for the profiles running now."""
        self._seq = len(self.records)
        self._procs: set[asyncio.subprocess.Process] = set()

    def busy(self, session_id: int) -> bool:
        """True while a profile of this session is being taken."""
        return session_id in self.active

    def start(
        self, request: ProfileRequest | None = None, /, **kwargs: Any
    ) -> asyncio.Task[ProfileRecord]:
        """Start ``profile(request)`` as a task; the session counts as busy from now on.

        Args:
            request: what to sample; or, instead, ``ProfileRequest``'s fields as keywords.

        Raises:
            RuntimeError: if that session is being profiled already.
            TypeError: for both a request and keywords, or keywords ``ProfileRequest`` lacks.
        """
        req = _request(request, kwargs)
        sid = req.session_id
        if sid in self.active:
            raise RuntimeError(f"session {sid} is already being profiled")
        self.active[sid] = time.time()
        try:
            return asyncio.get_running_loop().create_task(self._claimed(req), name=f"profile-{sid}")
        except BaseException:
            self.active.pop(sid, None)
            raise

    async def profile(
        self, request: ProfileRequest | None = None, /, **kwargs: Any
    ) -> ProfileRecord:
        """Sample one session with py-spy and record the result.

        Args:
            request: what to sample (``ProfileRequest``); or, instead, its fields as keywords
                (``session_id=..., pid=..., seconds=..., reason=...``).

        Returns:
            The record (also appended to ``index.jsonl`` and ``records``). Never raises for
            py-spy's failures; a cancelled call kills py-spy and re-raises.

        Raises:
            RuntimeError: if that session is being profiled already.
            TypeError: for both a request and keywords, or keywords ``ProfileRequest`` lacks.
        """
        req = _request(request, kwargs)
        if req.session_id in self.active:
            raise RuntimeError(f"session {req.session_id} is already being profiled")
        self.active[req.session_id] = time.time()
        return await self._claimed(req)

    async def _claimed(self, req: ProfileRequest) -> ProfileRecord:
        """``_profile`` for a session already marked active; unmarks it at the end."""
        try:
            return await self._profile(req)
        finally:
            self.active.pop(req.session_id, None)

    async def _profile(self, req: ProfileRequest) -> ProfileRecord:
        session_id, pid, seconds, reason = req.session_id, req.pid, req.seconds, req.reason
        rate_hz, nonblocking = req.rate_hz, req.nonblocking
        rate = rate_hz or self.rate_hz
        nb = self.nonblocking if nonblocking is None else nonblocking
        self._seq += 1
        name = f"s{session_id:04d}-p{self._seq:02d}"
        started = time.time()

        cpu: list[float] = []

        def record(status: str, samples: int, errors: int, message: str) -> ProfileRecord:
            elapsed = time.time() - started
            if cpu and status != "failed":
                share = cpu[-1] / elapsed if elapsed > 0 else 0.0
                message += f"; py-spy used {cpu[-1]:.2f} CPU-s ({share:.0%} of one core)"
            rec = ProfileRecord(
                name=name,
                session=session_id,
                workload=req.workload,
                variant=req.variant,
                params=req.params,
                set_name=req.set_name,
                started_t=started,
                seconds=round(time.time() - started, 3),
                rate_hz=rate,
                nonblocking=nb,
                reason=reason,
                status=status,
                samples=samples,
                errors=errors,
                message=message,
                pyspy_cpu_s=round(cpu[-1], 3) if cpu else None,
            )
            self._append(rec)
            return rec

        if self.py_spy is None and req.remote is None:
            return record(
                "failed",
                0,
                0,
                "py-spy is not installed: pip install py-spy (into perfmon's environment), "
                "then press f again",
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        out = self.dir / f"{name}.collapsed"
        if req.remote is not None:  # py-spy runs on the session's host; its stacks come back
            spied = await req.remote(pid, seconds, rate, nb, self.subprocesses)
        else:
            spied = await run_py_spy(
                self.py_spy, pid, seconds, rate, nb, self.subprocesses, self.dir, name, self._procs
            )
        if spied.cpu_s is not None:
            cpu.append(spied.cpu_s)
        if spied.start_error is not None:
            return record("failed", 0, 0, f"py-spy could not be started: {spied.start_error}")
        text, stderr = spied.text, spied.stderr
        samples = _count_samples(text)
        errors = _py_spy_errors(stderr)
        if spied.returncode != 0 or not spied.wrote:
            why = explain_failure(stderr, spied.returncode, pid, alive=spied.alive)
            return record("failed", 0, errors, why)
        if self.subprocesses and samples:
            from perfmon.core.stacks import parse_collapsed

            tree = parse_collapsed(text, processes="keep").trimmed(f"process {pid}:")
            text = tree.to_collapsed()
            samples = tree.total
        atomic_write_text(out, text)
        exited = "process exited" in stderr.lower() or not spied.alive
        if samples == 0:
            why = (
                "the session exited before any sample was taken"
                if exited
                else "py-spy took no samples (the process was idle or not running Python code)"
            )
            return record("failed", 0, errors, why)
        what = f"{samples:,} samples at {rate} Hz of session {session_id}"
        if req.host:
            what += f" on {req.host}"
        if exited and seconds is not None:
            return record("partial", samples, errors, f"{what}; the session ended while sampled")
        return record("ok", samples, errors, what)

    async def close(self) -> None:
        """Kill the py-spy processes still running (their profiles end as failed/cancelled)."""
        for proc in list(self._procs):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()

    def _append(self, rec: ProfileRecord) -> None:
        self.records.append(rec)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with open(self.dir / INDEX_FILE, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec.to_dict()) + "\n")
        except OSError:  # the record stays in memory; the run goes on
            pass


def _request(request: ProfileRequest | None, kwargs: dict[str, Any]) -> ProfileRequest:
    """The request given, or one built from ``ProfileRequest``'s fields as keywords.

    Raises:
        TypeError: for both, neither, or keywords ``ProfileRequest`` lacks.
    """
    if request is not None:
        if kwargs:
            raise TypeError("give a ProfileRequest or its fields as keywords, not both")
        return request
    return ProfileRequest(**kwargs)


CPU_POLL_S = 0.2
"""How often py-spy's own CPU time is read while it samples."""


async def _watch_cpu(pid: int, out: list[float]) -> None:
    """Append py-spy's user + system CPU seconds to ``out`` every ``CPU_POLL_S`` until it exits."""
    import psutil

    try:
        proc = psutil.Process(pid)
        while True:
            times = proc.cpu_times()
            out.append(float(times.user + times.system))
            await asyncio.sleep(CPU_POLL_S)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return


def load_index(run_dir: Path) -> list[ProfileRecord]:
    """The profiles recorded in a run directory (``profiles/index.jsonl``), oldest first.

    Args:
        run_dir: the run directory.

    Returns:
        The records; a missing file gives ``[]``; unreadable lines (a torn last line after a
        crash) are skipped.
    """
    path = Path(run_dir) / PROFILES_DIR / INDEX_FILE
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(ProfileRecord.from_dict(json.loads(line)))
        except (ValueError, TypeError, KeyError):
            continue
    return out


def load_stacks(run_dir: Path, name: str) -> str:
    """The collapsed stacks text of profile ``name`` in a run directory.

    Raises:
        OSError: if the file cannot be read.
        ValueError: if ``name`` is not a plain file stem.
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad profile name {name!r}")
    return (Path(run_dir) / PROFILES_DIR / f"{name}.collapsed").read_text("utf-8", "replace")
