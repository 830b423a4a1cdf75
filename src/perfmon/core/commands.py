"""The viewer's commands to a run: one grammar, parsed into typed objects.

A viewer (``perfmon.tui``) sends a run one line of text per command over the control socket
(docs/protocol.md: ``{"cmd": TEXT}``); the runner (``perfmon.engine.runner``) applies it. Both
read the text with ``parse_command`` here, so what a viewer lets through is exactly what the
runner accepts::

    command := "stop" | "pause" | "resume" | "toggle-pause" | "export"
             | "profile" [ SESSION_ID [ SECONDS ] ]
             | "split" [ LABEL ]
    SESSION_ID := ASCII digits: a session id, >= 0
    SECONDS    := a decimal number of seconds, 0 < SECONDS <= PROFILE_MAX_SECONDS
    LABEL      := a label name, [A-Za-z_][A-Za-z0-9_.-]{0,63}: variant, workload, set or a
                  matrix key (``split`` alone: no split)

Words are separated by whitespace; leading and trailing whitespace is ignored. ``inf``,
``nan``, negative ids and more than two arguments are errors. ``str(command)`` gives the
canonical text back (``parse_command(str(c)) == c``).

This module is pure: no I/O, no third-party imports.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = [
    "PROFILE_MAX_SECONDS",
    "VERBS",
    "Command",
    "CommandError",
    "Export",
    "Pause",
    "Profile",
    "Resume",
    "Split",
    "Stop",
    "TogglePause",
    "parse_command",
]

PROFILE_MAX_SECONDS = 3600.0
"""The longest profile a viewer may ask for, seconds: py-spy's output grows with its duration,
and an hour covers any session a person watches live (longer: ``[profile]`` in the campaign)."""

PROFILE_USAGE = "profile [SESSION_ID [SECONDS]]"
"""The ``profile`` command's usage line, as error messages give it."""

SPLIT_LABEL_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}\Z")
"""A label name the split accepts: ``variant``, ``workload``, ``set`` or a matrix key."""

SPLIT_USAGE = "split [LABEL]"
"""The ``split`` command's usage line, as error messages give it."""

_DIGITS_RE = re.compile(r"[0-9]+\Z")
_DECIMAL_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")


class CommandError(ValueError):
    """A command that is not in the grammar; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class Command:
    """A command to a run (the base of the commands below); ``str()`` is its canonical text."""

    def __str__(self) -> str:
        return VERB_OF[type(self)]


@dataclass(frozen=True, slots=True)
class Stop(Command):
    """Stop launching sessions, end the running one, write the report."""


@dataclass(frozen=True, slots=True)
class Pause(Command):
    """Launch no new session until ``Resume``; the running one finishes normally."""


@dataclass(frozen=True, slots=True)
class Resume(Command):
    """Launch sessions again after ``Pause``."""


@dataclass(frozen=True, slots=True)
class TogglePause(Command):
    """``Pause`` when running, ``Resume`` when paused."""


@dataclass(frozen=True, slots=True)
class Export(Command):
    """Write the report now, from what has been recorded so far."""


@dataclass(frozen=True, slots=True)
class Profile(Command):
    """Sample a running session with py-spy.

    Attributes:
        session_id: the session (None: the most recently started running one).
        seconds: how long, in (0, ``PROFILE_MAX_SECONDS``] (None: the runner's default).

    Raises:
        CommandError: on construction, for a negative id, seconds without an id, or seconds
            outside (0, ``PROFILE_MAX_SECONDS``] (NaN and infinities included).
    """

    session_id: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.session_id is not None and self.session_id < 0:
            raise CommandError(f"a session id is >= 0, got {self.session_id}")
        if self.seconds is None:
            return
        if self.session_id is None:
            raise CommandError(f"seconds need a session id ({PROFILE_USAGE})")
        if not (math.isfinite(self.seconds) and 0 < self.seconds <= PROFILE_MAX_SECONDS):
            raise CommandError(
                f"profile seconds must be in (0, {PROFILE_MAX_SECONDS:g}], got {self.seconds:g}"
            )

    def __str__(self) -> str:
        parts = ["profile"]
        if self.session_id is not None:
            parts.append(str(self.session_id))
        if self.seconds is not None:
            parts.append(repr(float(self.seconds)))
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Split(Command):
    """Split the snapshot's metrics by a label (issue 11): one row per (metric, label value).

    Attributes:
        label: ``variant``, ``workload``, ``set`` or a matrix key; "" for no split.

    Raises:
        CommandError: on construction, for a label that is not a label name
            (``SPLIT_LABEL_RE``).
    """

    label: str = ""

    def __post_init__(self) -> None:
        if self.label and not SPLIT_LABEL_RE.match(self.label):
            raise CommandError(f"expected {SPLIT_USAGE!r} with a label name, got {self.label!r}")

    def __str__(self) -> str:
        return f"split {self.label}" if self.label else "split"


VERB_OF: dict[type[Command], str] = {
    Stop: "stop",
    Pause: "pause",
    Resume: "resume",
    TogglePause: "toggle-pause",
    Export: "export",
    Profile: "profile",
    Split: "split",
}
"""Each command's verb, its first word."""

VERBS: tuple[str, ...] = tuple(VERB_OF.values())
"""Every verb of the grammar, in the order the help lists them."""

_PLAIN: dict[str, Command] = {
    verb: cls() for cls, verb in VERB_OF.items() if cls not in (Profile, Split)
}


def parse_command(text: str) -> Command:
    """Parse one command line (see the module docstring for the grammar).

    Args:
        text: e.g. ``"pause"``, ``"profile"``, ``"profile 3"``, ``"profile 3 2.5"``.

    Returns:
        The command as a typed object (``Stop()``, ``Profile(3, 2.5)``, ...).

    Raises:
        CommandError: for an unknown verb, arguments to a verb that takes none, or a
            ``profile`` whose arguments are not a session id (ASCII digits) and seconds in
            (0, ``PROFILE_MAX_SECONDS``]; the message names what was expected.
    """
    if not isinstance(text, str):
        raise CommandError(f"a command is text, got {type(text).__name__}")
    parts = text.split()
    if not parts:
        raise CommandError(f"empty command (known: {', '.join(VERBS)})")
    verb, args = parts[0], parts[1:]
    if verb == "profile":
        return _profile(text, args)
    if verb == "split":
        if len(args) > 1:
            raise CommandError(f"expected {SPLIT_USAGE!r}, got {text.strip()[:80]!r}")
        return Split(args[0] if args else "")
    if verb not in _PLAIN:
        raise CommandError(f"unknown command {text.strip()[:80]!r} (known: {', '.join(VERBS)})")
    if args:
        raise CommandError(f"{verb} takes no arguments, got {' '.join(args)[:80]!r}")
    return _PLAIN[verb]


def _profile(text: str, args: list[str]) -> Profile:
    """``profile``'s arguments (see ``parse_command``)."""
    bad = CommandError(f"expected {PROFILE_USAGE!r}, got {text.strip()[:80]!r}")
    if len(args) > 2:
        raise bad
    if args and not _DIGITS_RE.match(args[0]):
        raise bad
    if len(args) == 2 and not _DECIMAL_RE.match(args[1]):
        raise bad
    session_id = int(args[0]) if args else None
    seconds = float(args[1]) if len(args) == 2 else None
    return Profile(session_id, seconds)
