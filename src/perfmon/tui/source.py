"""Where the viewer's snapshots come from: the ``SnapshotSource`` protocol and in-process sources.

The viewer never owns a campaign. It polls a source for the newest ``Snapshot`` and sends it
commands. The engine's control-socket client implements ``SnapshotSource`` structurally; the
in-process sources here serve tests, demos and replays of recorded snapshots.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from perfmon.core.commands import VERBS, CommandError, Split, parse_command
from perfmon.core.snapshot import Snapshot

COMMANDS = VERBS
"""The commands a viewer sends to a run (see docs/protocol.md for the control socket), by
verb; ``profile`` may take arguments: ``profile [SESSION_ID [SECONDS]]``. The grammar is the
core's (``perfmon.core.commands``), the one the runner applies."""


def is_command(command: str) -> bool:
    """True for a command of the grammar (``perfmon.core.commands.parse_command``): one of
    ``COMMANDS``, ``profile`` with a session id and seconds in (0, 3600], or ``split``
    with at most one label name."""
    try:
        parse_command(command)
    except CommandError:
        return False
    return True


def is_split_command(command: str) -> bool:
    """True for ``split`` (no split) or ``split LABEL``: the metrics panel's split by a label
    (``perfmon.core.live.LiveState.set_split``)."""
    try:
        return isinstance(parse_command(command), Split)
    except CommandError:
        return False


@runtime_checkable
class SnapshotSource(Protocol):
    """A run as the viewer sees it: the newest snapshot, and a way to send commands.

    Implementations must make ``latest`` and ``finished`` cheap and thread-safe: the viewer
    calls them a few times a second from its event loop.
    """

    def latest(self) -> Snapshot | None:
        """Return the newest snapshot received, or None before the first one."""
        ...

    def send(self, command: str) -> None:
        """Send a command (one of ``COMMANDS``) to the run.

        Raises:
            OSError: if the run can no longer be reached.
        """
        ...

    @property
    def finished(self) -> bool:
        """True once the run has ended and the source will send nothing more."""
        ...

    def close(self) -> None:
        """Release the source's resources (sockets, threads). Safe to call twice."""
        ...


class ScriptedSource:
    """An in-process source that plays a list of snapshots, one step at a time.

    Tests and demos call ``advance()`` (or ``push()``) to make the next snapshot the latest;
    every command the viewer sends is recorded in ``commands``. The source is finished once
    ``finish()`` was called, or once ``advance()`` has played the last snapshot when
    ``finish_at_end`` is True.

    Args:
        snapshots: the snapshots to play, in order; the first one is the latest from the start
            (pass ``start=False`` to begin with none).
        start: make the first snapshot the latest immediately.
        finish_at_end: become finished when the last snapshot has been played.
    """

    def __init__(
        self,
        snapshots: Iterable[Snapshot] = (),
        *,
        start: bool = True,
        finish_at_end: bool = False,
    ) -> None:
        self._lock = threading.Lock()
        self._script: list[Snapshot] = list(snapshots)
        self._pos = -1
        self._latest: Snapshot | None = None
        self._finished = False
        self._finish_at_end = finish_at_end
        self._closed = False
        self.commands: list[str] = []
        """Commands received through ``send``, oldest first."""
        if start and self._script:
            self.advance()

    def latest(self) -> Snapshot | None:
        """Return the snapshot most recently played, or None before the first."""
        with self._lock:
            return self._latest

    def send(self, command: str) -> None:
        """Record a command.

        Raises:
            perfmon.core.commands.CommandError: (a ValueError) if the command is not in the
                grammar; the message says what was expected.
            OSError: if the source was closed.
        """
        parse_command(command)
        with self._lock:
            if self._closed:
                raise OSError("source is closed")
            self.commands.append(command)

    @property
    def finished(self) -> bool:
        """True once ``finish()`` was called or the script ran out (with ``finish_at_end``)."""
        with self._lock:
            return self._finished

    def close(self) -> None:
        """Mark the source closed; later ``send`` calls raise OSError."""
        with self._lock:
            self._closed = True

    @property
    def remaining(self) -> int:
        """Snapshots of the script not played yet."""
        with self._lock:
            return len(self._script) - 1 - self._pos

    def advance(self) -> Snapshot | None:
        """Play the next snapshot of the script and return it (None when the script is over)."""
        with self._lock:
            if self._pos + 1 >= len(self._script):
                if self._finish_at_end:
                    self._finished = True
                return None
            self._pos += 1
            self._latest = self._script[self._pos]
            if self._finish_at_end and self._pos == len(self._script) - 1:
                self._finished = True
            return self._latest

    def push(self, snapshot: Snapshot) -> None:
        """Make ``snapshot`` the latest at once (as if the daemon had just sent it)."""
        with self._lock:
            self._latest = snapshot

    def finish(self, snapshot: Snapshot | None = None) -> None:
        """End the run: optionally push a last snapshot, then report ``finished``."""
        with self._lock:
            if snapshot is not None:
                self._latest = snapshot
            self._finished = True


class StaticSource(ScriptedSource):
    """A finished run shown as one snapshot, e.g. the last snapshot of a recorded run.

    Args:
        snapshot: the snapshot to show.
    """

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__([snapshot])
        self.finish()
