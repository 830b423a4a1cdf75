"""Themes from TOML files: ``themes/*.toml`` parsed into ``textual.theme.Theme`` objects.

A theme file holds the fields of ``textual.theme.Theme`` (``name``, ``primary``, ``secondary``,
``accent``, ``foreground``, ``background``, ``surface``, ``panel``, ``success``, ``warning``,
``error``, ``dark``, and optionally ``boost``, ``luminosity_spread``, ``text_alpha`` and a
``[variables]`` table of extra CSS variables), in the manner of darrenburns/posting's themes.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from textual.app import App
from textual.color import Color, ColorParseError
from textual.theme import Theme

COLOR_KEYS = (
    "primary",
    "secondary",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
    "success",
    "warning",
    "error",
)
"""Theme fields that hold a colour."""

_OTHER_KEYS = {"name", "dark", "luminosity_spread", "text_alpha", "variables"}


class ThemeError(ValueError):
    """A theme file that cannot be used; the message names the file and the key."""


def themes_dir() -> Path | None:
    """Return the directory of perfmon's theme files, or None if there is none.

    Looks first in the installed package (``perfmon/themes``, where the wheel puts them),
    then in the source checkout's ``themes/`` directory.
    """
    import perfmon

    candidates = (
        Path(perfmon.__file__).parent / "themes",
        Path(__file__).resolve().parents[3] / "themes",
    )
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


def theme_from_dict(data: dict[str, Any], *, source: str = "<theme>") -> Theme:
    """Build a ``Theme`` from a parsed theme file.

    Args:
        data: the TOML table (see the module docstring for its keys).
        source: where it came from, for error messages.

    Raises:
        ThemeError: on a missing ``name`` or ``primary``, an unknown key, a colour that does
            not parse or a value of the wrong type.
    """
    unknown = set(data) - set(COLOR_KEYS) - _OTHER_KEYS
    if unknown:
        raise ThemeError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
    for required in ("name", "primary"):
        if not isinstance(data.get(required), str) or not data[required]:
            raise ThemeError(f"{source}: key {required!r} must be a non-empty string")
    colors: dict[str, str] = {}
    for key in COLOR_KEYS:
        if key not in data:
            continue
        value = data[key]
        if not isinstance(value, str):
            raise ThemeError(f"{source}: key {key!r} must be a colour string")
        try:
            Color.parse(value)
        except ColorParseError as exc:
            raise ThemeError(f"{source}: key {key!r}: {exc}") from exc
        colors[key] = value
    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise ThemeError(f"{source}: key 'dark' must be true or false")
    variables = data.get("variables", {})
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in variables.items()
    ):
        raise ThemeError(f"{source}: [variables] must map names to strings")
    extra: dict[str, float] = {}
    for key in ("luminosity_spread", "text_alpha"):
        if key in data:
            if not isinstance(data[key], int | float) or isinstance(data[key], bool):
                raise ThemeError(f"{source}: key {key!r} must be a number")
            extra[key] = float(data[key])
    return Theme(name=data["name"], dark=dark, variables=dict(variables), **colors, **extra)  # type: ignore[arg-type]


def load_theme_file(path: Path) -> Theme:
    """Parse one theme file.

    Raises:
        ThemeError: if the file is not valid TOML or not a valid theme (see ``theme_from_dict``).
        OSError: if it cannot be read.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ThemeError(f"{path}: {exc}") from exc
    return theme_from_dict(data, source=str(path))


def load_themes(directory: Path | None = None) -> dict[str, Theme]:
    """Load every ``*.toml`` theme of ``directory`` (default: ``themes_dir()``), by name.

    Raises:
        ThemeError: if a file is not a valid theme.
    """
    directory = directory if directory is not None else themes_dir()
    if directory is None:
        return {}
    themes: dict[str, Theme] = {}
    for path in sorted(directory.glob("*.toml")):
        theme = load_theme_file(path)
        themes[theme.name] = theme
    return themes


def register_themes(app: App[Any], directory: Path | None = None) -> list[str]:
    """Register perfmon's themes with ``app``; return their names.

    Raises:
        ThemeError: if a theme file is not valid.
    """
    themes = load_themes(directory)
    for theme in themes.values():
        app.register_theme(theme)
    return list(themes)
