"""The daemon: a campaign's ``Runner`` behind a Unix control socket that viewers attach to.

``perfmon run CAMPAIGN`` starts this as its own process (``python -m perfmon _daemon ...``,
in a new session, so that closing the terminal does not end the run) and attaches the viewer
to its socket. The viewer may go away at any time; the run does not notice.

Wire format: newline-delimited JSON, one object per line, UTF-8.

- daemon -> viewer: ``{"type": "hello", "version": 1, "run_id": ..., "run_dir": ...}`` once,
  then ``{"type": "snapshot", "snapshot": {...}}`` a few times a second (see
  ``perfmon.core.snapshot.Snapshot.to_dict``), and at the end
  ``{"type": "end", "exit_status": N, "verdict": "...", "report": "path or null"}``.
- viewer -> daemon: first ``{"hello": {"control": true|false}}``, then commands
  ``{"cmd": "stop" | "pause" | "resume" | "toggle-pause" | "export" | "profile [ID [S]]"}``
  (the grammar of ``perfmon.core.commands``). Viewers are read-only
  unless their hello asks for control (``perfmon run`` does; ``perfmon attach`` only with
  ``--control``); a refused or unknown command is answered ``{"type": "error", "message": ...}``.

Security (design.md section 7): the socket lives in a per-user directory created 0700
(``$XDG_RUNTIME_DIR/perfmon`` or ``/tmp/perfmon-<uid>``), is created 0600, and a peer whose uid
(``SO_PEERCRED``) is not the daemon's own is refused. No TCP listener is ever opened.

A slow viewer never slows the daemon: a snapshot is dropped for a viewer whose socket
buffer already holds more than ``MAX_BACKLOG_BYTES`` (the next one supersedes it anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import struct
from pathlib import Path
from typing import Any

from perfmon.core.commands import Split, parse_command
from perfmon.core.snapshot import Snapshot
from perfmon.engine import registry
from perfmon.engine.registry import runtime_dir  # re-exported: it lived here before issue 12

log = logging.getLogger(__name__)

WIRE_VERSION = 1
MAX_BACKLOG_BYTES = 4 << 20
MAX_COMMAND_BYTES = 64 << 10
READ_ONLY = "this viewer is read-only: attach with --control to pause, stop or profile"
SUN_PATH_MAX = 107
"""Longest usable AF_UNIX path on Linux (sun_path is 108 bytes with the terminating NUL)."""


def socket_path(run_id: str) -> Path:
    """Return the control socket path for a run.

    Raises:
        ValueError: if the path would be longer than an AF_UNIX address allows.
    """
    path = runtime_dir() / f"{run_id}.sock"
    if len(os.fsencode(str(path))) > SUN_PATH_MAX:
        raise ValueError(f"control socket path too long for AF_UNIX: {path}")
    return path


def peer_uid(sock: socket.socket) -> int:
    """Return the uid of the process at the other end of a Unix socket (Linux SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def encode(message: dict[str, Any]) -> bytes:
    """Encode one wire message as a JSON line."""
    return (json.dumps(message, separators=(",", ":"), allow_nan=False) + "\n").encode()


class ControlServer:
    """Serves a runner's snapshots to viewers and takes their commands.

    Args:
        runner: the ``perfmon.engine.runner.Runner`` to serve.
        path: the socket path (see ``socket_path``).
    """

    def __init__(self, runner: Any, path: Path) -> None:
        self.runner = runner
        self.path = path
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._split_owners: set[asyncio.StreamWriter] = set()
        """Viewers that asked for a split by a label (``split LABEL``) and are still connected."""
        self._last: bytes | None = None
        self._prepared: tuple[Snapshot, bytes] | None = None
        self.refused = 0

    async def start(self) -> None:
        """Bind the socket (0600 from the start, via the umask) and start accepting."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_COMMAND_BYTES
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    def prepare(self, snap: Snapshot) -> None:
        """Encode a snapshot ahead of ``publish`` (a runner snapshot preparer: runs in the
        runner's snapshot thread, so the encoding stays off the event loop)."""
        self._prepared = (snap, encode({"type": "snapshot", "snapshot": snap.to_dict()}))

    def publish(self, snap: Snapshot) -> None:
        """Send a snapshot to every viewer (a runner snapshot listener; never blocks)."""
        prepared = self._prepared
        if prepared is not None and prepared[0] is snap:
            data = prepared[1]
        else:
            data = encode({"type": "snapshot", "snapshot": snap.to_dict()})
        self._last = data
        for writer in list(self._writers):
            if writer.is_closing():
                self._writers.discard(writer)
                continue
            if writer.transport.get_write_buffer_size() > MAX_BACKLOG_BYTES:
                continue
            writer.write(data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            uid = peer_uid(sock) if sock is not None else -1
        except OSError:
            uid = -1
        if uid != os.getuid():
            self.refused += 1
            log.warning("refused a control connection from uid %s", uid)
            writer.close()
            return
        writer.write(
            encode(
                {
                    "type": "hello",
                    "version": WIRE_VERSION,
                    "run_id": self.runner.run_id,
                    "run_dir": str(self.runner.run_dir),
                }
            )
        )
        if self._last is not None:
            writer.write(self._last)
        self._writers.add(writer)
        control = False
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    message = json.loads(line)
                    if "hello" in message:
                        control = bool(message["hello"].get("control", False))
                        continue
                    if not control:
                        writer.write(encode({"type": "error", "message": READ_ONLY}))
                        continue
                    command = str(message["cmd"])
                    self.runner.handle_command(command)
                    self._note_split(writer, command)
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    writer.write(encode({"type": "error", "message": f"bad command: {exc}"}))
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            self._release_split(writer)
            writer.close()

    def _note_split(self, writer: asyncio.StreamWriter, command: str) -> None:
        """Remember which viewers asked for the metrics' split by a label (issue 11): the
        daemon splits only while one of them is connected."""
        parsed = parse_command(command)
        if isinstance(parsed, Split):
            if parsed.label:
                self._split_owners.add(writer)
            else:
                self._split_owners.clear()  # "split" alone: no split, for every viewer

    def _release_split(self, writer: asyncio.StreamWriter) -> None:
        """A viewer left: when it was the last one that asked for a split, stop splitting
        (the split's bookkeeping is work on the ingest path that nobody looks at any more)."""
        if writer not in self._split_owners:
            return
        self._split_owners.discard(writer)
        if not self._split_owners:
            with contextlib.suppress(ValueError, RuntimeError):
                self.runner.handle_command("split")

    async def finish(self, end: dict[str, Any], *, linger_s: float = 2.0) -> None:
        """Send the final snapshot and an ``end`` message, give viewers ``linger_s`` to read it,
        then close and remove the socket."""
        snap = self.runner.snapshot()
        self.publish(snap)
        data = encode({"type": "end", **end})
        for writer in list(self._writers):
            writer.write(data)
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.drain(), timeout=linger_s)
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


async def serve(
    campaign_path: Path,
    run_dir: Path,
    sock: Path,
    *,
    snapshot_hz: float = 4.0,
    set_sizes: list[str] | None = None,
    metrics_addr: str | None = None,
) -> int:
    """Run a campaign behind a control socket until it ends; return the run's exit status.

    SIGTERM and SIGINT stop the run cleanly (report written); SIGHUP is ignored, so the end of
    a terminal or SSH login does not end the run.
    """
    # Lazy: the viewer's side of this module (``socket_path``, used by ``perfmon attach``)
    # must not pay for the runner's imports (pyarrow, scipy) at start-up.
    from perfmon.core.campaign import load_campaign, override_sets
    from perfmon.engine.heap import HeapTrimmer, restore_workload_environment
    from perfmon.engine.runner import Runner

    # Started with PYTHONMALLOC=malloc by `perfmon run` (perfmon.engine.heap): the workloads
    # must not inherit it, so it leaves this process's environment before any session starts.
    allocator = os.environ.get("PYTHONMALLOC", "pymalloc (default)")
    ours = restore_workload_environment()
    campaign = override_sets(load_campaign(campaign_path), set_sizes or [])
    registry.remove_stale_sockets()  # sockets of daemons that died (kill -9) are left behind
    runner = Runner(campaign, run_dir, snapshot_hz=snapshot_hz)
    server = ControlServer(runner, sock)
    await server.start()
    registry.register(runner.run_id, run_dir, sock, campaign.name)
    runner.snapshot_preparers.append(server.prepare)
    runner.snapshot_listeners.append(server.publish)
    # Returns the heap's free pages to the system every few seconds, in the snapshot thread
    # (off the event loop that launches and reaps sessions): the daemon's RSS stays flat.
    trimmer = HeapTrimmer()

    def trim(_snap: Snapshot) -> None:
        trimmer.tick()

    if trimmer.available:
        runner.snapshot_preparers.append(trim)
        runner.session_listeners.append(trimmer.note_session)
    log.info("allocator: %s%s", allocator, " (set by perfmon for the daemon)" if ours else "")
    metrics = None
    if metrics_addr is not None:  # ``perfmon run --metrics-addr``; checked by the CLI already
        from perfmon.engine.prometheus import serve_metrics

        try:
            metrics = serve_metrics(
                runner.snapshot_listeners, metrics_addr, track_groups=runner.track_groups
            )
            log.info("serving %s", metrics.url)
        except (OSError, ValueError) as exc:
            log.error("--metrics-addr %s: %s (running without /metrics)", metrics_addr, exc)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.request_stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        outcome = await runner.run()
    except BaseException:
        if metrics is not None:
            metrics.close()
        registry.record_end(runner.run_id, exit_status=3, verdict="pending")
        await server.finish({"exit_status": 3, "verdict": "pending", "report": None})
        raise
    if metrics is not None:
        metrics.close()
    log.info("%s", trimmer.summary())
    registry.record_end(runner.run_id, exit_status=outcome.exit_status, verdict=outcome.verdict)
    await server.finish(
        {
            "exit_status": outcome.exit_status,
            "verdict": outcome.verdict,
            "report": str(outcome.report_md) if outcome.report_md else None,
        }
    )
    return outcome.exit_status
