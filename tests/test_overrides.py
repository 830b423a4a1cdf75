"""``perfmon run --set NAME=SIZE``: one campaign file for a 10-minute check and a 72-hour soak."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from perfmon.core.campaign import CampaignError, load_campaign, override_sets

CAMPAIGN = textwrap.dedent(
    """
    [campaign]
    name = "sizes"
    [[workload]]
    name = "w"
    command = ["true"]
    [set.golden]
    sessions = 3
    [set.canary]
    duration = "10min"
    """
)


@pytest.fixture
def campaign_path(tmp_path: Path) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(CAMPAIGN)
    return path


def test_a_count_or_a_duration_replaces_the_other(campaign_path: Path) -> None:
    c = load_campaign(campaign_path)
    resized = override_sets(c, ["canary=120", "golden=2h"])
    sets = {s.name: s for s in resized.sets}
    assert (sets["canary"].sessions, sets["canary"].duration_s) == (120, None)
    assert (sets["golden"].sessions, sets["golden"].duration_s) == (None, 7200.0)
    assert [s.name for s in resized.sets] == ["golden", "canary"]
    assert override_sets(c, []) == c


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("nope=3", "no set named 'nope'"),
        ("canary=0", "sessions must be >= 1"),
        ("canary=soon", "neither a session count nor a duration"),
        ("canary", "expected NAME=SIZE"),
    ],
)
def test_bad_overrides_name_the_set(campaign_path: Path, override: str, message: str) -> None:
    with pytest.raises(CampaignError) as info:
        override_sets(load_campaign(campaign_path), [override])
    assert message in str(info.value)


def test_the_cli_applies_overrides_and_rejects_bad_ones(campaign_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "perfmon", "validate", str(campaign_path), "--set", "canary=5"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert "set canary: 5 sessions" in ok.stdout
    assert "sessions planned: 8" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "perfmon", "run", str(campaign_path), "--set", "x=1", "--headless"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "set.x" in bad.stderr and "Traceback" not in bad.stderr
