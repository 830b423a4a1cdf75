"""User key bindings: a ``keys.toml`` that remaps the viewer's keys by binding id.

Every ``Binding`` of the viewer has an ``id`` (``stop``, ``detach``, ``flame.search``, ...);
Textual's keymap (``App.set_keymap``, https://textual.textualize.io/guide/input/#keymaps)
replaces the keys of the bindings whose id it names, on every screen at once. perfmon reads the
keymap from a TOML file, as posting does (darrenburns/posting, ``keymap`` in its config)::

    # ~/.config/perfmon/keys.toml
    [keys]
    stop = "ctrl+x"            # one key
    detach = "D,ctrl+d"        # or several, comma-separated
    "flame.search" = "f3"      # ids with a dot need quotes

The file is ``$PERFMON_KEYS`` when set, else ``$XDG_CONFIG_HOME/perfmon/keys.toml`` (XDG Base
Directory Specification, https://specifications.freedesktop.org/basedir-spec/latest/; the
default of ``XDG_CONFIG_HOME`` is ``~/.config``). A missing file is no error. A bad file (not
TOML, an unknown id, a key that is not text, two actions on one key of one screen) is refused
as a whole with a ``KeymapError`` whose message names the file, the line or id, and what to do;
the viewer then shows that message and keeps its default keys.

Key names are Textual's (``ctrl+x``, ``f3``, ``escape``, ``question_mark`` or ``?``, ``a``,
``A`` for shift+a); ``perfmon keys`` is not a command: the help screen (``?``) lists every id
with its current keys.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from textual.binding import Binding

KEYS_ENV = "PERFMON_KEYS"
"""Environment variable naming the keys file (overrides the XDG location)."""

TOGETHER = (frozenset({"pause", "resume"}),)
"""Binding ids that share one key on purpose (``p`` pauses, or resumes when paused: only one
is active at a time); remapping one of them remaps the other with it."""

_KEY_RE = re.compile(r"[^\s,]+\Z")
_CHARACTERS = {"?": "question_mark", "/": "slash", "+": "plus", "-": "minus", "=": "equals_sign"}


class KeymapError(ValueError):
    """A keys file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True, slots=True)
class BindingInfo:
    """One remappable binding of the viewer.

    Attributes:
        id: the binding id (the key of ``keys.toml``).
        keys: its default keys, comma-separated (Textual's key names).
        description: what it does (the footer's text or the tooltip).
        scope: where it acts: ``"everywhere"``, or a screen (``"run"``, ``"flame"``,
            ``"timeline"``, ``"help"``, ``"confirm"``).
    """

    id: str
    keys: str
    description: str
    scope: str


def default_path(env: Mapping[str, str] | None = None) -> Path:
    """The keys file: ``$PERFMON_KEYS``, else ``$XDG_CONFIG_HOME/perfmon/keys.toml``.

    Args:
        env: the environment (default ``os.environ``); an empty or relative
            ``XDG_CONFIG_HOME`` is ignored, as the XDG specification says.
    """
    env = os.environ if env is None else env
    if env.get(KEYS_ENV):
        return Path(env[KEYS_ENV]).expanduser()
    xdg = env.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"
    return base / "perfmon" / "keys.toml"


Scopes = Mapping[str, Sequence[Binding]]
"""Each screen of the viewer by name, with the bindings active on it (app-wide ones included)."""

_scopes_provider: Callable[[], Scopes] | None = None


def set_scopes_provider(provider: Callable[[], Scopes]) -> None:
    """Register where the viewer's bindings per screen come from (``perfmon.tui.app`` does,
    with ``binding_scopes``): this module checks keys files against them without importing
    the app and its screens, which import it (no import cycle).

    Args:
        provider: returns screen name -> its bindings (see ``scopes``).
    """
    global _scopes_provider
    _scopes_provider = provider


def scopes() -> Scopes:
    """Each screen of the viewer with the bindings active on it (app-wide ones included), as
    the registered provider gives them (``perfmon.tui.app.binding_scopes``).

    Returns:
        Screen name -> its bindings: ``run`` (the app's), ``flame``, ``timeline``,
        ``comparison`` (app + the screen's own), ``help`` and ``confirm`` (modal screens: the
        app's bindings do not reach them).

    Raises:
        RuntimeError: if no provider was registered (``perfmon.tui.app`` not imported).
    """
    if _scopes_provider is None:
        raise RuntimeError("no binding scopes registered: import perfmon.tui.app first")
    return _scopes_provider()


def known_bindings(screens: Mapping[str, Sequence[Binding]] | None = None) -> list[BindingInfo]:
    """Every binding id of the viewer, once, with its default keys and where it acts.

    Args:
        screens: as ``scopes()`` returns (default: ``scopes()``).

    Returns:
        ``BindingInfo``s in the order the screens list them; the app's ids (active on every
        screen but the modal ones) are ``"everywhere"``, the others name their screens.
    """
    screens = scopes() if screens is None else screens
    app_ids = {b.id for b in screens.get("run", ())}
    first: dict[str, Binding] = {}
    keys: dict[str, list[str]] = {}
    where: dict[str, list[str]] = {}
    for scope, bindings in screens.items():
        for b in bindings:
            if b.id is None:
                continue
            first.setdefault(b.id, b)
            if b.key not in keys.setdefault(b.id, []):
                keys[b.id].append(b.key)
            if scope not in where.setdefault(b.id, []):
                where[b.id].append(scope)
    return [
        BindingInfo(
            i,
            ",".join(keys[i]),
            b.tooltip or b.description or b.action,
            "everywhere" if i in app_ids else ", ".join(where[i]),
        )
        for i, b in first.items()
    ]


def _normal(key: str) -> str:
    return _CHARACTERS.get(key, key)


MODIFIERS = frozenset({"ctrl", "shift", "alt", "meta", "super", "hyper"})


def is_key_name(key: str) -> bool:
    """True for a key Textual can bind: modifiers joined by ``+`` to one key, which is a
    character (``a``, ``A``, ``?``), one of Textual's key names (``escape``, ``f3``,
    ``pageup``) or a character's name (``question_mark``, ``slash``, ``plus``).

    Args:
        key: one key, e.g. ``"ctrl+shift+f3"``.
    """
    from textual.keys import REPLACED_KEYS, Keys, key_to_character

    *mods, name = key.split("+")
    if not name or any(m not in MODIFIERS for m in mods):
        return False
    if len(name) == 1 or name in REPLACED_KEYS:
        return True
    plain = {k.value for k in Keys if "+" not in k.value and not k.value.startswith("<")}
    if name in plain:
        return True
    char = key_to_character(name)  # a printable character's name; "esc" names U+001B
    return char is not None and char.isprintable()


def parse_keymap(
    text: str,
    path: Path | str = "keys.toml",
    screens: Mapping[str, Sequence[Binding]] | None = None,
) -> dict[str, str]:
    """Parse and check a keys file.

    Args:
        text: the file's text (TOML with one ``[keys]`` table of ``id = "keys"``).
        path: the file's name, for messages.
        screens: the viewer's bindings per screen (default: ``scopes()``), to check the ids
            and that no screen ends up with two actions on one key.

    Returns:
        Binding id -> keys, comma-separated, as ``App.set_keymap`` takes it (ids in
        ``TOGETHER`` are filled in with their partner's keys).

    Raises:
        KeymapError: for invalid TOML (the message has tomllib's line and column), a missing
            or extra table, an unknown id (with the nearest known ids), a value that is not a
            non-empty string of keys, or a clash (two ids on one key of one screen).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KeymapError(f"{path}: not valid TOML: {exc}") from None
    extra = sorted(k for k in data if k != "keys")
    if extra:
        raise KeymapError(
            f"{path}: unknown table or key {extra[0]!r}: put the bindings under [keys], "
            'e.g. [keys] stop = "ctrl+x"'
        )
    table = data.get("keys", {})
    if not isinstance(table, dict):
        raise KeymapError(f'{path}: "keys" must be a table: [keys] then id = "key" lines')
    screens = scopes() if screens is None else screens
    known = {b.id for bindings in screens.values() for b in bindings if b.id}
    keymap: dict[str, str] = {}
    for binding_id, value in table.items():
        if binding_id not in known:
            near = difflib.get_close_matches(binding_id, sorted(known), n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise KeymapError(
                f"{path}: [keys] {binding_id!r} is not a binding id{hint}; "
                "the help screen (?) lists them"
            )
        if not isinstance(value, str) or not value.strip():
            raise KeymapError(
                f'{path}: [keys] {binding_id}: expected a key name such as "ctrl+x" '
                f"(several: comma-separated), got {value!r}"
            )
        parts = [p.strip() for p in value.split(",")]
        bad = [p for p in parts if not (_KEY_RE.match(p) and is_key_name(p))]
        if bad:
            raise KeymapError(
                f"{path}: [keys] {binding_id}: {bad[0]!r} is not a key name (examples: "
                '"x", "X", "ctrl+x", "f3", "escape", "question_mark")'
            )
        keymap[binding_id] = ",".join(parts)
    for group in TOGETHER:
        given = [i for i in sorted(group) if i in keymap]
        for other in group:
            if given and other not in keymap:
                keymap[other] = keymap[given[0]]
    _check_clashes(keymap, screens, path)
    return keymap


def _check_clashes(
    keymap: Mapping[str, str], screens: Mapping[str, Sequence[Binding]], path: Path | str
) -> None:
    together = {i: g for g in TOGETHER for i in g}
    for scope, bindings in screens.items():
        owner: dict[str, str] = {}
        for b in bindings:
            keys = keymap.get(b.id, b.key) if b.id else b.key
            for key in (k.strip() for k in keys.split(",")):
                key = _normal(key)
                first = owner.setdefault(key, b.id or b.action)
                same = first == (b.id or b.action) or (b.id in together and first in together[b.id])
                if not same:
                    raise KeymapError(
                        f"{path}: key {key!r} would do two things on the {scope} screen: "
                        f"{first} and {b.id or b.action}; give one of them another key"
                    )


def load_keymap(
    path: Path | None = None, screens: Mapping[str, Sequence[Binding]] | None = None
) -> dict[str, str]:
    """Read and check the keys file.

    Args:
        path: the file (default ``default_path()``).
        screens: as for ``parse_keymap``.

    Returns:
        The keymap; ``{}`` when the file does not exist.

    Raises:
        KeymapError: if the file exists but cannot be read or used (see ``parse_keymap``).
    """
    path = default_path() if path is None else path
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise KeymapError(f"{path}: cannot be read: {exc}") from None
    return parse_keymap(text, path, screens)


def describe(infos: Iterable[BindingInfo], keymap: Mapping[str, str]) -> list[BindingInfo]:
    """``infos`` with the keys the keymap gives them (for the help screen)."""
    return [BindingInfo(i.id, keymap.get(i.id, i.keys), i.description, i.scope) for i in infos]


__all__ = [
    "KEYS_ENV",
    "TOGETHER",
    "BindingInfo",
    "KeymapError",
    "default_path",
    "describe",
    "is_key_name",
    "known_bindings",
    "load_keymap",
    "parse_keymap",
    "scopes",
]
