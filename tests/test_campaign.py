"""Campaign files: a valid campaign, and every error with its file, line and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from perfmon.core.campaign import (
    Campaign,
    CampaignError,
    SetConfig,
    VariantConfig,
    load_campaign,
    parse_campaign,
)
from perfmon.core.gates import Reduce

FULL = """\
# A full campaign
[campaign]
name = "quickstart"
sample_interval = "250ms"
grace = "5s"
log_cap = "10MB"
runs_dir = "out/runs"

[[workload]]
name = "pipeline"
command = ["{python}", "streaming_pipeline.py", "--chunks", "{chunks}"]
env = { PIPELINE_SEED = "1", LEVEL = 3 }
cwd = "."
timeout = "120s"
matrix = { chunks = [200, 400], mode = ["a"] }
shell = false

[[workload]]
name = "shellish"
command = "echo {campaign_dir}"
shell = true

[variant.baseline]
env = { X = "1" }
args = ["--slow"]

[variant.candidate]
env = { X = "2" }
args = ["--fast"]

[set.golden]
sessions = 5
warmup = 1
order = "blocked"

[set.canary]
duration = "2h"

[[gate]]
name = "Queue depth"
expr = "p95(event_queue_depth) < 100"
window = "1h"

[[gate]]
name = "Trace"
expr = "max(causal_trace_bytes) < 50MB"
"""


def _parse(text: str, tmp_path: Path) -> Campaign:
    return parse_campaign(textwrap.dedent(text), tmp_path / "camp.toml")


def test_full_campaign(tmp_path: Path) -> None:
    c = parse_campaign(FULL, tmp_path / "camp.toml")
    assert c.name == "quickstart"
    assert c.path == tmp_path / "camp.toml"
    assert c.directory == tmp_path
    assert c.sample_interval_s == 0.25
    assert c.grace_s == 5.0
    assert c.log_cap_bytes == 10_000_000
    assert c.runs_dir == tmp_path / "out/runs"

    w, sh = c.workloads
    assert w.name == "pipeline"
    assert w.command == ("{python}", "streaming_pipeline.py", "--chunks", "{chunks}")
    assert w.env == {"PIPELINE_SEED": "1", "LEVEL": "3"}
    assert w.cwd == tmp_path / "."
    assert w.timeout_s == 120.0
    assert w.matrix == {"chunks": ("200", "400"), "mode": ("a",)}
    assert w.shell is False
    assert sh.command == ("echo {campaign_dir}",)
    assert sh.shell is True
    assert sh.timeout_s is None and sh.cwd is None

    assert c.variants == (
        VariantConfig("baseline", {"X": "1"}, ("--slow",)),
        VariantConfig("candidate", {"X": "2"}, ("--fast",)),
    )
    assert c.sets == (
        SetConfig("golden", sessions=5, warmup=1, order="blocked"),
        SetConfig("canary", duration_s=7200.0),
    )
    g1, g2 = c.gates
    assert (g1.name, g1.expr, g1.window_s) == (
        "Queue depth",
        "p95(event_queue_depth) < 100",
        3600.0,
    )
    assert isinstance(g1.gate.lhs, Reduce) and g1.gate.threshold == 100.0
    assert g2.gate.threshold == 50e6 and g2.window_s is None


def test_defaults(tmp_path: Path) -> None:
    c = _parse(
        """
        [campaign]
        name = "min"
        [[workload]]
        name = "w"
        command = ["true"]
        """,
        tmp_path,
    )
    assert c.variants == (VariantConfig("default"),)
    assert c.sets == (SetConfig("default", sessions=1),)
    assert c.gates == ()
    assert c.sample_interval_s == 0.25 and c.grace_s == 5.0
    assert c.log_cap_bytes == 10_000_000
    assert c.runs_dir == tmp_path / "runs"


def test_numbers_as_durations_and_sizes(tmp_path: Path) -> None:
    c = _parse(
        """
        [campaign]
        name = "n"
        sample_interval = 0.5
        grace = 0
        log_cap = 1024
        [[workload]]
        name = "w"
        command = ["true"]
        timeout = 30
        """,
        tmp_path,
    )
    assert c.sample_interval_s == 0.5 and c.grace_s == 0.0 and c.log_cap_bytes == 1024
    assert c.workloads[0].timeout_s == 30.0


def test_load_campaign_reads_file(tmp_path: Path) -> None:
    path = tmp_path / "camp.toml"
    path.write_text(FULL, encoding="utf-8")
    c = load_campaign(str(path))
    assert c.name == "quickstart"
    assert c.path == path


def test_load_relative_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "camp.toml").write_text(FULL, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    c = load_campaign("camp.toml")
    assert c.path == tmp_path / "camp.toml"
    assert c.path.is_absolute()


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(CampaignError) as info:
        load_campaign(path)
    err = info.value
    assert (err.file, err.line, err.key) == (str(path), None, "")
    assert "cannot read campaign file" in err.message
    assert str(err).startswith(f"{path}: cannot read")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'[campaign]\nname = "\xff"\n')
    with pytest.raises(CampaignError, match="not UTF-8"):
        load_campaign(path)


def _error(text: str, tmp_path: Path) -> CampaignError:
    with pytest.raises(CampaignError) as info:
        parse_campaign(textwrap.dedent(text).lstrip("\n"), tmp_path / "c.toml")
    err = info.value
    assert err.file == str(tmp_path / "c.toml")
    return err


HEAD = """# head
[campaign]
name = "c"
[[workload]]
name = "w"
command = ["true"]
"""


@pytest.mark.parametrize(
    ("text", "line", "key", "fragment"),
    [
        # TOML syntax errors: line from tomllib.
        ('[campaign]\nname = "c"\nbroken =\n', 3, "", "TOML syntax error"),
        ('[campaign]\nname = "c"\n[campaign]\n', 3, "", "TOML syntax error"),
        ("[campaign]\nname = [1,\n", 2, "", "at end of file"),
        # Structure.
        (
            "[[workload]]\nname = 'w'\ncommand = ['x']\n",
            None,
            "",
            "missing required key 'campaign'",
        ),
        ("title = 'x'\n[campaign]\nname = 'c'\n", 1, "title", "unknown key 'title'"),
        ("campaign = 3\n", 1, "campaign", "expected a table, got integer"),
        ('[campaign]\nname = "c"\n', None, "workload", "at least one [[workload]]"),
        (
            '[campaign]\nname = "c"\n[workload]\nname = "w"\n',
            3,
            "workload",
            "expected an array of tables ([[workload]]), got table",
        ),
        ("variant = 3\n" + HEAD, 1, "variant", "expected a table, got integer"),
        (
            "gate = { name = 'g' }\n" + HEAD,
            1,
            "gate",
            "expected an array of tables ([[gate]]), got table",
        ),
        # [campaign]
        ('[campaign]\nnam = "c"\n', 2, "campaign.nam", "allowed: name, sample_interval"),
        ("[campaign]\nsample_interval = '1s'\n", 1, "campaign", "missing required key 'name'"),
        ('[campaign]\nname = "bad name"\n', 2, "campaign.name", "invalid name 'bad name'"),
        ("[campaign]\nname = 3\n", 2, "campaign.name", "expected a string, got integer"),
        (
            '[campaign]\nname = "c"\nsample_interval = "5 parsecs"\n',
            3,
            "campaign.sample_interval",
            "bad duration",
        ),
        (
            '[campaign]\nname = "c"\nsample_interval = "0s"\n',
            3,
            "campaign.sample_interval",
            "must be > 0",
        ),
        ('[campaign]\nname = "c"\ngrace = "5MB"\n', 3, "campaign.grace", "not a duration"),
        ('[campaign]\nname = "c"\ngrace = true\n', 3, "campaign.grace", "got boolean"),
        ('[campaign]\nname = "c"\nlog_cap = "10s"\n', 3, "campaign.log_cap", "bad size"),
        ('[campaign]\nname = "c"\nlog_cap = 1.5\n', 3, "campaign.log_cap", "got float"),
        ('[campaign]\nname = "c"\nruns_dir = 1\n', 3, "campaign.runs_dir", "expected a string"),
    ],
)
def test_structure_errors(
    text: str, line: int | None, key: str, fragment: str, tmp_path: Path
) -> None:
    err = _error(text, tmp_path)
    assert (err.line, err.key) == (line, key)
    assert fragment in err.message


@pytest.mark.parametrize(
    ("body", "line", "key", "fragment"),
    [
        ("[[workload]]\ncommand = ['x']\n", 7, "workload[1]", "missing required key 'name'"),
        ("[[workload]]\nname = 'v'\n", 7, "workload[1]", "missing required key 'command'"),
        (
            "[[workload]]\nname = 'v'\ncommand = ['x']\ntimout = '1s'\n",
            10,
            "workload[1].timout",
            "unknown key 'timout' (allowed: name, command, env, cwd, timeout, matrix, shell, "
            "idle_timeout, metrics, units, units_metric, workers_key)",
        ),
        ("[[workload]]\nname = 'w'\ncommand = ['x']\n", 8, "workload[1].name", "duplicate"),
        ("[[workload]]\nname = 'a/b'\ncommand = ['x']\n", 8, "workload[1].name", "invalid name"),
        ("[[workload]]\nname = 'v'\ncommand = []\n", 9, "workload[1].command", "empty"),
        ("[[workload]]\nname = 'v'\ncommand = ['']\n", 9, "workload[1].command", "empty"),
        (
            "[[workload]]\nname = 'v'\ncommand = 'ls -l'\n",
            9,
            "workload[1].command",
            "set shell = true",
        ),
        (
            "[[workload]]\nname = 'v'\ncommand = ['x', 3]\n",
            9,
            "workload[1].command[1]",
            "expected a string, got integer",
        ),
        (
            "[[workload]]\nname = 'v'\ncommand = ['x']\nshell = true\n",
            9,
            "workload[1].command",
            "single string, got array",
        ),
        (
            "[[workload]]\nname = 'v'\ncommand = '  '\nshell = true\n",
            9,
            "workload[1].command",
            "empty",
        ),
        (
            "[[workload]]\nname = 'v'\ncommand = 'x'\nshell = 'yes'\n",
            10,
            "workload[1].shell",
            "expected a boolean, got string",
        ),
        (
            "[[workload]]\nname = 'v'\ncommand = ['x']\ntimeout = '-1s'\n",
            10,
            "workload[1].timeout",
            "bad duration",
        ),
        (
            "[[workload]]\nname = 'v'\ncommand = ['x']\ntimeout = '10 fortnights'\n",
            10,
            "workload[1].timeout",
            "unknown unit",
        ),
        (
            "[[workload]]\nname = 'v'\ncommand = ['x']\ntimeout = [1]\n",
            10,
            "workload[1].timeout",
            "got array",
        ),
        (
            "[[workload]]\nname = 'v'\ncommand = ['x']\nenv = { A = [1] }\n",
            10,
            "workload[1].env.A",
            "expected a string or a number, got array",
        ),
        (
            "[[workload]]\nname = 'v'\ncommand = ['x']\nenv = { 'A-B' = '1' }\n",
            10,
            "workload[1].env.A-B",
            "invalid environment variable name",
        ),
        (
            "[[workload]]\nname = 'v'\ncommand = ['x']\nenv = 'A=1'\n",
            10,
            "workload[1].env",
            "expected a table, got string",
        ),
        (
            "[[workload]]\nname = 'v'\ncommand = ['x']\ncwd = 1\n",
            10,
            "workload[1].cwd",
            "expected a string",
        ),
        (
            "[[workload]]\nname = 'v'\ncommand = ['x']\nmatrix = { n = [] }\n",
            10,
            "workload[1].matrix.n",
            "non-empty array",
        ),
        (
            "[[workload]]\nname = 'v'\ncommand = ['x']\nmatrix = { n = 3 }\n",
            10,
            "workload[1].matrix.n",
            "got integer",
        ),
        (
            "[[workload]]\nname = 'v'\ncommand = ['x']\nmatrix = { python = [1] }\n",
            10,
            "workload[1].matrix.python",
            "invalid matrix key",
        ),
        (
            "[[workload]]\nname = 'v'\ncommand = ['x']\nmatrix = { n = [{ a = 1 }] }\n",
            10,
            "workload[1].matrix.n[0]",
            "expected a string or a number, got table",
        ),
        (
            "[[workload]]\nname = 'v'\ncommand = ['{python}', '--n={events}']\n",
            9,
            "workload[1].command[1]",
            "unknown placeholder {events} (known: {python}, {campaign_dir})",
        ),
        (
            "[[workload]]\nname = 'v'\ncommand = ['x', '{n}', '{m}']\nmatrix = { n = [1] }\n",
            9,
            "workload[1].command[2]",
            "unknown placeholder {m}",
        ),
        (
            "[[workload]]\nname = 'v'\ncommand = 'echo {nope}'\nshell = true\n",
            9,
            "workload[1].command",
            "unknown placeholder {nope}",
        ),
    ],
)
def test_workload_errors(body: str, line: int, key: str, fragment: str, tmp_path: Path) -> None:
    err = _error(HEAD + body, tmp_path)
    assert (err.line, err.key) == (line, key)
    assert fragment in err.message
    assert str(err) == f"{tmp_path / 'c.toml'}:{line}: {key}: {err.message}"


def test_workload_table_not_array(tmp_path: Path) -> None:
    # After [[workload]], "workload = ..." is a key of that workload's table.
    err = _error(HEAD + "workload = [1]\n", tmp_path)
    assert (err.line, err.key) == (7, "workload[0].workload")
    assert "unknown key 'workload'" in err.message
    err = _error('workload = [1]\n[campaign]\nname = "c"\n', tmp_path)
    assert (err.line, err.key) == (1, "workload[0]")
    assert "expected a table, got integer" in err.message


@pytest.mark.parametrize(
    ("body", "line", "key", "fragment"),
    [
        ("[variant.base]\nenv = 'x'\n", 8, "variant.base.env", "expected a table, got string"),
        ("[variant.base]\nargs = 'x'\n", 8, "variant.base.args", "expected an array of strings"),
        ("[variant.base]\nargs = [1]\n", 8, "variant.base.args[0]", "got integer"),
        ("[variant.base]\nflags = [1]\n", 8, "variant.base.flags", "allowed: env, args"),
        ("[variant]\nbase = 3\n", 8, "variant.base", "expected a table, got integer"),
        ("[variant.'a b']\n", 7, "variant.a b", "invalid name"),
        ("[set.g]\nwarmup = 1\n", 7, "set.g", "exactly one of 'sessions' and 'duration'"),
        ("[set.g]\nsessions = 2\nduration = '1h'\n", 7, "set.g", "exactly one"),
        ("[set.g]\nsessions = 0\n", 8, "set.g.sessions", "must be >= 1, got 0"),
        ("[set.g]\nsessions = 2.5\n", 8, "set.g.sessions", "expected an integer, got float"),
        ("[set.g]\nsessions = true\n", 8, "set.g.sessions", "expected an integer, got boolean"),
        ("[set.g]\nduration = '0s'\n", 8, "set.g.duration", "must be > 0"),
        ("[set.g]\nduration = '72 hours'\n", 8, "set.g.duration", "bad duration"),
        ("[set.g]\nsessions = 1\nwarmup = -1\n", 9, "set.g.warmup", "must be >= 0"),
        ("[set.g]\nsessions = 1\norder = 'shuffled'\n", 9, "set.g.order", "unknown order"),
        ("[set.g]\nsessions = 1\norder = 1\n", 9, "set.g.order", "expected a string"),
        ("[set.g]\nsessions = 1\nrepeat = 1\n", 9, "set.g.repeat", "allowed: sessions"),
        ("[set]\ng = { sessions = 0 }\n", 8, "set.g.sessions", "must be >= 1"),
    ],
)
def test_variant_and_set_errors(
    body: str, line: int, key: str, fragment: str, tmp_path: Path
) -> None:
    err = _error(HEAD + body, tmp_path)
    assert (err.line, err.key) == (line, key)
    assert fragment in err.message


GATE = "[[gate]]\nname = 'ok'\nexpr = 'max(x) < 1'\n"


@pytest.mark.parametrize(
    ("body", "line", "key", "fragment"),
    [
        ("[[gate]]\nexpr = 'max(x) < 1'\n", 10, "gate[1]", "missing required key 'name'"),
        ("[[gate]]\nname = 'g'\n", 10, "gate[1]", "missing required key 'expr'"),
        ("[[gate]]\nname = ''\nexpr = 'max(x) < 1'\n", 11, "gate[1].name", "empty"),
        ("[[gate]]\nname = 'ok'\nexpr = 'max(x) < 1'\n", 11, "gate[1].name", "duplicate"),
        ("[[gate]]\nname = 'g'\nexpr = 3\n", 12, "gate[1].expr", "expected a string"),
        (
            "[[gate]]\nname = 'g'\nexpr = 'max(x) < 1'\nwindow = 'soon'\n",
            13,
            "gate[1].window",
            "bad duration",
        ),
        (
            "[[gate]]\nname = 'g'\nexpr = 'max(x) < 1'\nlimit = 1\n",
            13,
            "gate[1].limit",
            "allowed: name, expr, window",
        ),
        (
            "[[gate]]\nname = 'g'\nexpr = 'p95(event_queue_depth) <'\n",
            12,
            "gate[1].expr",
            "expected a threshold after '<' (column 25",
        ),
        (
            "[[gate]]\nname = 'g'\nexpr = 'max(chunk_seconds) < 50MB'\n",
            12,
            "gate[1].expr",
            "threshold 50MB is bytes but metric chunk_seconds is time (column 22",
        ),
        (
            "[[gate]]\nname = 'g'\nexpr = 'speedy(x) > 1'\n",
            12,
            "gate[1].expr",
            "unknown function 'speedy'",
        ),
    ],
)
def test_gate_errors(body: str, line: int, key: str, fragment: str, tmp_path: Path) -> None:
    err = _error(HEAD + GATE + body, tmp_path)
    assert (err.line, err.key) == (line, key)
    assert fragment in err.message


def test_line_lookup_with_comments_multiline_arrays_and_many_workloads(tmp_path: Path) -> None:
    text = """
    [campaign]  # the campaign
    name = "c"

    [[workload]]
    name = "a"
    command = [
      "x",
      "--y=1",
    ]

    [[workload]]   # second
    name = "b"
    command = ["x"]
    env.A = "1"
    timeout = "soon"
    """
    err = _error(text, tmp_path)
    assert (err.line, err.key) == (15, "workload[1].timeout")


def test_variant_subtable_line(tmp_path: Path) -> None:
    err = _error(HEAD + "[variant.base]\nargs = []\n[variant.base.env]\nA = []\n", tmp_path)
    assert (err.line, err.key) == (9, "variant.base.env.A")


def test_error_never_leaks_raw_exceptions(tmp_path: Path) -> None:
    """Odd values anywhere give CampaignError, not KeyError or TypeError."""
    bodies = [
        "[campaign]\nname = 1979-05-27\n",
        HEAD + "[[workload]]\nname = 'v'\ncommand = ['x']\nmatrix = [1]\n",
        HEAD + "[set.g]\nsessions = '5'\n",
        HEAD + "[[gate]]\nname = ['g']\nexpr = 'max(x) < 1'\n",
        HEAD + "[[gate]]\nname = 'g'\nexpr = 'max(x) < 1'\nwindow = {}\n",
        HEAD + "[variant.v]\nenv = { A = true }\n",
        HEAD + "set = []\n",
    ]
    for body in bodies:
        _error(body, tmp_path)


def test_caps_and_share_keys(tmp_path: Path) -> None:
    base = "[campaign]\nname = 'c'\n{extra}\n[[workload]]\nname = 'w'\ncommand = ['x']\n"
    c = parse_campaign(base.format(extra=""), tmp_path / "c.toml")
    assert (c.max_metrics, c.max_metric_name_bytes, c.share) == (1000, 200, "private")
    c = parse_campaign(
        base.format(extra="max_metrics = 50\nmax_metric_name_bytes = 64\nshare = 'group'"),
        tmp_path / "c.toml",
    )
    assert (c.max_metrics, c.max_metric_name_bytes, c.share) == (50, 64, "group")
    for extra, key, fragment in [
        ("max_metrics = 0", "campaign.max_metrics", "must be >= 1"),
        ("max_metrics = 2_000_000", "campaign.max_metrics", "<= 1000000"),
        ("max_metric_name_bytes = 5000", "campaign.max_metric_name_bytes", "<= 4096"),
        ("max_metric_name_bytes = '1'", "campaign.max_metric_name_bytes", "integer"),
        ("share = 'world'", "campaign.share", "unknown share 'world'"),
    ]:
        err = _error(base.format(extra=extra), tmp_path)
        assert (err.line, err.key) == (3, key) and fragment in err.message, str(err)


def test_overflowing_numbers_and_deep_nesting_are_campaign_errors(tmp_path: Path) -> None:
    for body, key in [
        (HEAD.replace("name = ", "log_cap = '1e400GB'\nname = ", 1), "campaign.log_cap"),
        (HEAD + "[[workload]]\nname = 'v'\ncommand = ['x']\ntimeout = " + "9" * 400, None),
        (HEAD + "x = " + "[" * 5000 + "]" * 5000 + "\n", None),
        (
            HEAD
            + "[[gate]]\nname = 'g'\nexpr = '"
            + "(" * 3000
            + "max(x)"
            + ")" * 3000
            + " < 1'\n",
            None,
        ),
        (
            HEAD + "[[workload]]\nname = 'v'\ncommand = ['x']\n"
            "matrix = { a = ["
            + ", ".join(map(str, range(400)))
            + "], b = ["
            + ", ".join(map(str, range(400)))
            + "] }\n",
            "workload[1].matrix",
        ),
    ]:
        err = _error(body, tmp_path)
        if key is not None:
            assert err.key == key, str(err)


def test_load_refuses_special_and_huge_files(tmp_path: Path) -> None:
    from perfmon.core.campaign import MAX_CAMPAIGN_BYTES, load_campaign

    for special, fragment in [("/dev/zero", "not a regular file"), (str(tmp_path), "a directory")]:
        with pytest.raises(CampaignError, match=fragment):
            load_campaign(special)
    huge = tmp_path / "huge.toml"
    huge.write_bytes(b"#" * (MAX_CAMPAIGN_BYTES + 1))
    with pytest.raises(CampaignError, match="the limit is"):
        load_campaign(huge)
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"a = 1\nb = '\xff'\n")
    with pytest.raises(CampaignError) as info:
        load_campaign(bad)
    assert info.value.line == 2
