"""One command grammar (issue 12, point 2): the viewer and the runner read commands alike."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest

from perfmon.core.commands import (
    PROFILE_MAX_SECONDS,
    VERBS,
    CommandError,
    Export,
    Pause,
    Profile,
    Resume,
    Stop,
    TogglePause,
    parse_command,
)
from perfmon.engine.client import SocketClient
from perfmon.engine.runner import parse_profile_command
from perfmon.tui.source import COMMANDS, ScriptedSource, is_command

GOOD = {
    "stop": Stop(),
    "pause": Pause(),
    "resume": Resume(),
    "toggle-pause": TogglePause(),
    "export": Export(),
    "profile": Profile(),
    "profile 3": Profile(3),
    "profile 0 1": Profile(0, 1.0),
    "profile 3 2.5": Profile(3, 2.5),
    "profile 3 3600": Profile(3, 3600.0),
    "profile 3 .5": Profile(3, 0.5),
    "profile 3 1e1": Profile(3, 10.0),
    "  profile\t3   2.5 ": Profile(3, 2.5),
}

BAD = [
    "",
    "   ",
    "rm",
    "profiles",
    "Stop",
    "stop now",
    "export report.md",
    "profile x",
    "profile -1",
    "profile +3",
    "profile 3.0",
    "profile 0x3",
    "profile ３",  # a full-width digit: str.isdigit() says yes, the grammar says no
    "profile 3 0",
    "profile 3 -2",
    "profile 3 7200",
    "profile 3 inf",
    "profile 3 nan",
    "profile 3 1e999",
    "profile 3 2s",
    "profile 1 2 3",
]


@pytest.mark.parametrize(("text", "command"), GOOD.items())
def test_the_grammar_accepts(text: str, command: object) -> None:
    assert parse_command(text) == command
    assert is_command(text)  # the viewer lets through ...
    if isinstance(command, Profile):  # ... exactly what the runner applies
        assert parse_profile_command(text) == (command.session_id, command.seconds)


@pytest.mark.parametrize("text", BAD)
def test_the_grammar_rejects_with_a_clear_error(text: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(text)
    message = str(info.value)
    assert any(w in message for w in ("expected", "unknown", "empty", "takes", "must be in"))
    assert not is_command(text)
    with pytest.raises(ValueError):  # the runner refuses the same texts
        parse_profile_command(text)
    with pytest.raises(ValueError):
        ScriptedSource().send(text)
    with pytest.raises(CommandError):  # the socket client refuses it before sending anything
        SocketClient(Path("/nonexistent/perfmon.sock")).send(text)


def test_errors_say_what_was_expected() -> None:
    with pytest.raises(CommandError, match=r"profile \[SESSION_ID \[SECONDS\]\]"):
        parse_command("profile -1")
    with pytest.raises(CommandError, match=r"must be in \(0, 3600\], got 7200"):
        parse_command("profile 3 7200")
    with pytest.raises(CommandError, match="known: stop, pause, resume, toggle-pause, export"):
        parse_command("rm -rf /")
    with pytest.raises(CommandError, match="takes no arguments"):
        parse_command("stop now")


def test_the_text_round_trips() -> None:
    for command in GOOD.values():
        assert parse_command(str(command)) == command
    assert str(Profile(3, 2.5)) == "profile 3 2.5" and str(TogglePause()) == "toggle-pause"


def test_typed_objects_check_themselves() -> None:
    bads: tuple[Callable[[], Profile], ...] = (
        lambda: Profile(-1),
        lambda: Profile(None, 2.0),
        lambda: Profile(1, 0.0),
        lambda: Profile(1, math.inf),
        lambda: Profile(1, math.nan),
        lambda: Profile(1, PROFILE_MAX_SECONDS * 2),
    )
    for bad in bads:
        with pytest.raises(CommandError):
            bad()


def test_the_viewer_knows_every_verb_the_runner_applies() -> None:
    assert COMMANDS == VERBS
    assert set(VERBS) == {"stop", "pause", "resume", "toggle-pause", "export", "profile", "split"}
    source = ScriptedSource()
    source.send("toggle-pause")
    source.send("profile 3 2.5")
    assert source.commands == ["toggle-pause", "profile 3 2.5"]
