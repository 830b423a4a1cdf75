"""Keys as users expect: stop asks, detach leaves, same keys on every screen, palette, keymap."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
from textual.binding import Binding

import perfmon.tui
from perfmon.tui.app import PerfmonApp
from perfmon.tui.commands import COMMANDS
from perfmon.tui.keymap import (
    KEYS_ENV,
    KeymapError,
    default_path,
    is_key_name,
    known_bindings,
    load_keymap,
    parse_keymap,
)
from perfmon.tui.screens.confirm import ConfirmStop, stop_question
from perfmon.tui.screens.flame import FlameScreen
from perfmon.tui.screens.help import HelpScreen, bindings_table
from perfmon.tui.source import ScriptedSource, StaticSource
from test_tui import demo_script, settle, snapshot


def all_bindings() -> list[tuple[str, Binding]]:
    """Every Binding declared by a class under perfmon.tui."""
    out = []
    for mod in pkgutil.walk_packages(perfmon.tui.__path__, "perfmon.tui."):
        module = importlib.import_module(mod.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for b in cls.__dict__.get("BINDINGS", []):
                if isinstance(b, Binding):
                    out.append((f"{module.__name__}.{name}", b))
    return out


def test_every_binding_has_an_id_and_an_id_means_one_action() -> None:
    found = all_bindings()
    assert len(found) >= 31
    missing = [f"{where}: {b.key} -> {b.action}" for where, b in found if not b.id]
    assert missing == []
    actions: dict[str, set[str]] = {}
    for _, b in found:
        assert b.id is not None
        actions.setdefault(b.id, set()).add(b.action)
    # one id, one meaning (detach is "leave" both on the run and in the stop question)
    assert {i: a for i, a in actions.items() if len(a) > 1} == {
        "detach": {"detach", "choose('detach')"}
    }
    # what the help screen lists covers every id
    assert {i.id for i in known_bindings()} == set(actions)


def test_palette_covers_every_app_action() -> None:
    app_actions = {b.action for b in PerfmonApp.BINDINGS if isinstance(b, Binding)}
    offered = {c.action for c in COMMANDS if c.where == "app"}
    assert app_actions - {"focus_next"} <= offered


def test_default_path_follows_xdg_and_the_override(tmp_path: Path) -> None:
    assert default_path({KEYS_ENV: str(tmp_path / "k.toml")}) == tmp_path / "k.toml"
    assert default_path({"XDG_CONFIG_HOME": "/cfg"}) == Path("/cfg/perfmon/keys.toml")
    home = Path.home() / ".config" / "perfmon" / "keys.toml"
    assert default_path({"XDG_CONFIG_HOME": "relative"}) == home  # ignored, as XDG says
    assert default_path({}) == home


def test_parse_keymap_good_file_and_partners() -> None:
    text = '[keys]\nstop = "ctrl+x"\npause = " P "\n"flame.search" = "f3,ctrl+f"\n'
    assert parse_keymap(text) == {
        "stop": "ctrl+x",
        "pause": "P",
        "resume": "P",  # p pauses or resumes: they move together
        "flame.search": "f3,ctrl+f",
    }
    assert parse_keymap("") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[keys\nstop = 1", "keys.toml: not valid TOML: "),
        ('[keys]\nstpo = "x"', "'stpo' is not a binding id (did you mean stop"),
        ("[keys]\nstop = 3", 'stop: expected a key name such as "ctrl+x"'),
        ('[keys]\nstop = ""', "expected a key name"),
        ('[keys]\nstop = "ctrl x"', "'ctrl x' is not a key name"),
        ('[keys]\nstop = "ctrl+esacpe"', "'ctrl+esacpe' is not a key name (examples:"),
        ('[keys]\nstop = "cmd+x"', "'cmd+x' is not a key name"),
        ('stop = "x"', "put the bindings under [keys]"),
        ('keys = "x"', '"keys" must be a table'),
        ('[keys]\nstop = "e"', "key 'e' would do two things on the run screen: stop and export"),
        (
            '[keys]\n"flame.search" = "n"',
            "key 'n' would do two things on the flame screen",
        ),
    ],
)
def test_bad_keymaps_are_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(KeymapError) as err:
        parse_keymap(text, "keys.toml")
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("x", True),
        ("X", True),
        ("?", True),
        ("ctrl+x", True),
        ("ctrl+shift+f3", True),
        ("question_mark", True),
        ("slash", True),
        ("plus", True),
        ("equals_sign", True),
        ("pageup", True),
        ("escape", True),
        ("esc", False),
        ("ctrl+", False),
        ("cmd+x", False),
        ("<any>", False),
    ],
)
def test_key_names(key: str, ok: bool) -> None:
    assert is_key_name(key) is ok


def test_remapping_away_removes_the_clash() -> None:
    # e moves to x, so q may take e
    assert parse_keymap('[keys]\nstop = "e"\nexport = "x"') == {"stop": "e", "export": "x"}


def test_load_keymap_missing_file_is_no_error(tmp_path: Path) -> None:
    assert load_keymap(tmp_path / "none.toml") == {}
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(KeymapError, match="cannot be read"):
        load_keymap(bad)


def test_stop_question_counts_what_is_cancelled() -> None:
    title, text = stop_question(snapshot(3, total=12))
    assert title.startswith("Stop run ") and title.endswith("?")
    assert text.startswith("1 running session will be cancelled and 8 planned sessions will not")
    assert stop_question(None)[0] == "Stop the run?"


async def test_q_asks_and_n_keeps_the_run_going() -> None:
    src = ScriptedSource(demo_script(3))
    app = PerfmonApp(src, keys=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmStop)
        assert "1 running session will be cancelled" in app.screen.text
        await pilot.press("n")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmStop) and app.is_running
        await pilot.press("ctrl+c")  # the same question
        await pilot.pause()
        assert isinstance(app.screen, ConfirmStop)
        await pilot.press("escape")
        await pilot.pause()
        assert app.is_running and not app.stop_requested
    assert src.commands == []


@pytest.mark.parametrize("keys", [("d",), ("ctrl+q",), ("q", "d")])
async def test_detach_leaves_without_stopping(keys: tuple[str, ...]) -> None:
    src = ScriptedSource(demo_script(3))
    app = PerfmonApp(src, keys=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press(*keys)
        await pilot.pause()
    assert not app.is_running and app.detached and not app.stop_requested
    assert src.commands == []


@pytest.mark.slow  # three screens under pilot: seconds on a loaded machine
async def test_q_means_stop_on_the_flame_and_timeline_screens_too() -> None:
    src = ScriptedSource(demo_script(3))
    app = PerfmonApp(src, keys=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("g")
        await pilot.pause()
        assert isinstance(app.screen, FlameScreen)
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmStop)
        await pilot.press("n", "escape")  # keep running, then back
        await pilot.pause()
        assert not isinstance(app.screen, FlameScreen | ConfirmStop)
        await pilot.press("t", "q", "y")
        await pilot.pause()
        assert src.commands == ["stop"] and app.stop_requested


async def test_read_only_viewer_says_q_cannot_stop() -> None:
    src = ScriptedSource(demo_script(3))
    src.control = False  # type: ignore[attr-defined]
    app = PerfmonApp(src, keys=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("q")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmStop)
        assert "read-only viewer: d detaches" in app._note_message
    assert src.commands == []


async def test_finished_run_q_leaves_without_asking() -> None:
    app = PerfmonApp(StaticSource(snapshot(12, total=12)), keys=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("q")
        await pilot.pause()
    assert not app.is_running and not app.detached


@pytest.mark.slow  # three screens under pilot: seconds on a loaded machine
async def test_keys_file_remaps_everywhere(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text('[keys]\nstop = "x"\nflames = "F"\n"flame.search" = "f3"\n')
    src = ScriptedSource(demo_script(3))
    app = PerfmonApp(src, keys=keys)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("q", "g")  # old keys do nothing now
        await pilot.pause()
        assert app.screen is app.screen_stack[0]
        await pilot.press("F")
        await pilot.pause()
        assert isinstance(app.screen, FlameScreen)
        await pilot.press("f3")
        await pilot.pause()
        assert app.screen.query_one("#flame-search").has_class("-shown")
        await pilot.press("escape", "escape", "question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmStop)
    assert app.keys_error == ""


async def test_bad_keys_file_is_shown_and_defaults_kept(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text('[keys]\nstop = "x"\nnot_an_id = "y"\n')
    app = PerfmonApp(ScriptedSource(demo_script(3)), keys=keys)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        assert "'not_an_id' is not a binding id" in app.keys_error
        assert any("not_an_id" in str(n.message) for n in app._notifications)
        await pilot.press("q")  # the default keys work
        await pilot.pause()
        assert isinstance(app.screen, ConfirmStop)


@pytest.mark.slow  # three screens under pilot: seconds on a loaded machine
async def test_command_palette_runs_perfmon_actions_and_has_no_quit() -> None:
    src = ScriptedSource(demo_script(3))
    app = PerfmonApp(src, keys=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        assert "Quit" not in [c.title for c in app.get_system_commands(app.screen)]
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"export")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert src.commands == ["export"]
        await pilot.press("ctrl+p", *"detach")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.2)
    assert app.detached and src.commands == ["export"]


def test_help_lists_the_binding_ids_with_the_keys_in_force() -> None:
    table = bindings_table({"stop": "x"})
    assert "| `stop` | `x` | everywhere |" in table
    assert "| `flame.search` | `slash` | flame |" in table
