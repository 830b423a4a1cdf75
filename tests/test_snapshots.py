"""SVG snapshot tests of the viewer's layouts (issue 14, point 2), with pytest-textual-snapshot.

The main screen and the help screen at 80x24, 100x30 and 200x50, on a fixed snapshot of an
attention audit with its comparison panel (tests/fixed_run.py): no daemon, no clock (the
status bar's elapsed time comes from the snapshot), so every run draws the same screen.
Regenerate after a deliberate change with ``pytest tests/test_snapshots.py --snapshot-update``
and look at the SVGs in tests/__snapshots__/ before committing them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

SIZES = [(80, 24), (100, 30), (200, 50)]
APP = str(Path(__file__).parent / "snapshot_app.py")
"""The app, by path: pytest-textual-snapshot 1.1 hashes the app's file for its cache."""


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_main_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(APP, terminal_size=size)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_help_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(APP, press=["question_mark"], terminal_size=size)


SPLIT_APP = str(Path(__file__).parent / "snapshot_app_split.py")
SPLIT_SIZES = [(80, 24), (100, 30), (160, 50), (200, 50)]


@pytest.mark.slow
@pytest.mark.parametrize("size", SPLIT_SIZES, ids=[f"{w}x{h}" for w, h in SPLIT_SIZES])
def test_main_screen_split_long_names(snap_compare: Any, size: tuple[int, int]) -> None:
    # no table cuts a number: long names are shortened with "…", columns hidden by priority
    assert snap_compare(SPLIT_APP, terminal_size=size)


@pytest.mark.slow
def test_comparison_detail_screen(snap_compare: Any) -> None:
    # focus the comparison panel (sessions -> gates -> comparison), pick events=268's
    # candidate row (the baseline there has an outlier) and open it
    keys = ["tab", "tab", "down", "down", "enter"]
    assert snap_compare(APP, press=keys, terminal_size=(100, 30))
