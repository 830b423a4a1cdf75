"""The viewer's side of the control socket: a thread that keeps the newest snapshot.

``SocketClient`` implements the TUI's ``SnapshotSource`` protocol structurally (the engine never
imports the TUI): ``latest()``, ``send(command)``, ``finished``, ``close()``. One background
thread reads the daemon's JSON lines and keeps only the newest snapshot, so a viewer that
redraws four times a second never queues up stale frames (memray's live reporter does the same
with its update thread).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from perfmon.core.commands import parse_command
from perfmon.core.snapshot import Snapshot


class DaemonUnavailable(ConnectionError):
    """The daemon's socket could not be reached (it exited, or never started)."""


class SocketClient:
    """Connects to a run's control socket and follows its snapshots.

    Args:
        path: the control socket path.
        alive: optional callable telling whether the daemon process still runs; connecting
            gives up at once when it returns False.
        control: ask for control (pause, stop, export); a read-only viewer's commands are
            refused by the daemon.

    Attributes:
        hello: the daemon's hello message, once connected.
        end: the daemon's ``end`` message once the run is over (exit_status, verdict, report).
        errors: error messages the daemon sent back.
    """

    def __init__(
        self, path: Path, *, alive: Callable[[], bool] | None = None, control: bool = True
    ) -> None:
        self.path = path
        self.control = control
        self._alive = alive
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._latest: Snapshot | None = None
        self._thread: threading.Thread | None = None
        self._finished = threading.Event()
        self.hello: dict[str, Any] | None = None
        self.end: dict[str, Any] | None = None
        self.errors: list[str] = []
        self.snapshots_received = 0

    def connect(self, timeout_s: float = 15.0, *, alive: Callable[[], bool] | None = None) -> None:
        """Connect, retrying while the daemon starts, then start the reader thread.

        Args:
            timeout_s: give up after this many seconds.
            alive: overrides the constructor's ``alive`` check.

        Raises:
            DaemonUnavailable: if no connection was made within ``timeout_s`` or the daemon died.
        """
        if alive is not None:
            self._alive = alive
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._alive is not None and not self._alive():
                raise DaemonUnavailable("the perfmon daemon exited before accepting viewers")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.path))
            except OSError as exc:
                sock.close()
                last = exc
                time.sleep(0.05)
                continue
            hello = {"hello": {"control": self.control}}
            try:
                sock.sendall((json.dumps(hello) + "\n").encode())
            except OSError as exc:
                sock.close()
                last = exc
                time.sleep(0.05)
                continue
            self._sock = sock
            self._thread = threading.Thread(target=self._read, name="perfmon-client", daemon=True)
            self._thread.start()
            return
        raise DaemonUnavailable(f"could not connect to {self.path}: {last}")

    def _read(self) -> None:
        # A local reference: close() clears self._sock while this thread may be in recv().
        sock = self._sock
        assert sock is not None
        buf = b""
        try:
            while True:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                newest: dict[str, Any] | None = None
                for line in lines:
                    if not line.strip():
                        continue
                    message = json.loads(line)
                    kind = message.get("type")
                    if kind == "snapshot":
                        newest = message["snapshot"]
                    elif kind == "hello":
                        self.hello = message
                    elif kind == "end":
                        self.end = message
                    elif kind == "error":
                        self.errors.append(str(message.get("message")))
                if newest is not None:
                    snap = Snapshot.from_dict(newest)
                    with self._lock:
                        self._latest = snap
                        self.snapshots_received += 1
        except (OSError, ValueError):
            pass
        finally:
            self._finished.set()

    # -- SnapshotSource -------------------------------------------------------
    def latest(self) -> Snapshot | None:
        """The newest snapshot received, or None before the first."""
        with self._lock:
            return self._latest

    def send(self, command: str) -> None:
        """Send a command (``stop``, ``pause``, ``resume``, ``toggle-pause``, ``export``,
        ``profile [SESSION_ID [SECONDS]]``: the grammar of ``perfmon.core.commands``, which the
        daemon's runner applies).

        Raises:
            perfmon.core.commands.CommandError: (a ValueError) for a command outside the
                grammar, before anything is sent.
            OSError: if the daemon cannot be reached (not connected, or the run has ended and
                the connection closed); the viewer shows that in its message line.
        """
        parse_command(command)
        sock = self._sock
        if sock is None or self._finished.is_set():
            raise ConnectionError("the run is no longer reachable (it has ended)")
        if not self.control:
            raise PermissionError("read-only viewer: attach with --control to send commands")
        sock.sendall((json.dumps({"cmd": command}) + "\n").encode())

    @property
    def finished(self) -> bool:
        """True once the daemon said the run ended, or the connection closed."""
        return self._finished.is_set()

    def wait_finished(self, timeout_s: float | None = None) -> bool:
        """Block until ``finished``; return whether it happened within ``timeout_s``."""
        return self._finished.wait(timeout_s)

    def close(self) -> None:
        """Close the connection (the run goes on)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._thread is not None:
            self._thread.join(timeout=2)
