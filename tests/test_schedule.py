"""The scheduler: orders, warm-ups, durations, substitution."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfmon.core.campaign import (
    Campaign,
    SetConfig,
    VariantConfig,
    WorkloadConfig,
    parse_campaign,
)
from perfmon.core.model import SessionSpec
from perfmon.core.schedule import Scheduler, substitute

DIR = Path("/camp")


def _campaign(
    sets: tuple[SetConfig, ...],
    variants: tuple[VariantConfig, ...] = (VariantConfig("A"), VariantConfig("B")),
    workloads: tuple[WorkloadConfig, ...] = (WorkloadConfig("w", ("run",)),),
) -> Campaign:
    return Campaign("c", DIR / "c.toml", workloads, variants, sets, ())


def _all(s: Scheduler) -> list[SessionSpec]:
    out = []
    while (spec := s.next_session()) is not None:
        out.append(spec)
    return out


def test_interleaved_order() -> None:
    c = _campaign((SetConfig("golden", sessions=3),))
    specs = _all(Scheduler(c, "py"))
    assert [s.variant for s in specs] == ["A", "B", "A", "B", "A", "B"]
    assert [s.id for s in specs] == list(range(6))
    assert [s.index for s in specs] == [0, 0, 1, 1, 2, 2]
    assert all(s.set_name == "golden" and not s.warmup for s in specs)


def test_blocked_order() -> None:
    c = _campaign((SetConfig("golden", sessions=3, order="blocked"),))
    specs = _all(Scheduler(c, "py"))
    assert [s.variant for s in specs] == ["A", "A", "A", "B", "B", "B"]
    assert [s.index for s in specs] == [0, 1, 2, 0, 1, 2]


def test_matrix_rounds_interleaved_and_blocked() -> None:
    w = WorkloadConfig("w", ("run", "{n}"), matrix={"n": ("1", "2")})
    c = _campaign((SetConfig("s", sessions=2),), workloads=(w,))
    got = [(s.params, s.variant, s.index) for s in _all(Scheduler(c, "py"))]
    n1, n2 = (("n", "1"),), (("n", "2"),)
    assert got == [
        (n1, "A", 0), (n1, "B", 0), (n2, "A", 0), (n2, "B", 0),
        (n1, "A", 1), (n1, "B", 1), (n2, "A", 1), (n2, "B", 1),
    ]  # fmt: skip
    c = _campaign((SetConfig("s", sessions=2, order="blocked"),), workloads=(w,))
    blocked = [(s.params, s.variant) for s in _all(Scheduler(c, "py"))]
    assert blocked == [(n1, "A"), (n1, "A"), (n1, "B"), (n1, "B"),
                   (n2, "A"), (n2, "A"), (n2, "B"), (n2, "B")]  # fmt: skip


def test_warmups_first_then_measured_and_sets_in_order() -> None:
    c = _campaign((SetConfig("golden", sessions=2, warmup=1), SetConfig("canary", sessions=1)))
    s = Scheduler(c, "py")
    assert s.planned_total == (1 + 2) * 2 + 1 * 2
    specs = _all(s)
    assert len(specs) == s.planned_total == s.handed_out
    assert [(x.set_name, x.variant, x.warmup, x.index) for x in specs] == [
        ("golden", "A", True, 0),
        ("golden", "B", True, 0),
        ("golden", "A", False, 0),
        ("golden", "B", False, 0),
        ("golden", "A", False, 1),
        ("golden", "B", False, 1),
        ("canary", "A", False, 0),
        ("canary", "B", False, 0),
    ]
    assert s.next_session() is None


def test_multiple_workloads_cross_variants() -> None:
    wl = (WorkloadConfig("x", ("x",)), WorkloadConfig("y", ("y",)))
    c = _campaign((SetConfig("s", sessions=1),), workloads=wl)
    assert [(s.workload, s.variant) for s in _all(Scheduler(c, "py"))] == [
        ("x", "A"), ("x", "B"), ("y", "A"), ("y", "B"),
    ]  # fmt: skip


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_duration_set_runs_whole_rounds_until_elapsed() -> None:
    clock = FakeClock()
    c = _campaign((SetConfig("canary", duration_s=10.0, warmup=1), SetConfig("after", sessions=1)))
    s = Scheduler(c, "py", clock=clock)
    assert s.planned_total is None
    seen = []
    for _ in range(6):  # warm-up round + 2 measured rounds, 4 s per session
        spec = s.next_session()
        assert spec is not None
        seen.append((spec.set_name, spec.variant, spec.warmup))
        clock.now += 2.0
    # 12 s have passed since the set's first session (the warm-up): the round in progress
    # ended, so the next session is from the next set.
    nxt = s.next_session()
    assert nxt is not None and nxt.set_name == "after"
    assert seen == [
        ("canary", "A", True),
        ("canary", "B", True),
        ("canary", "A", False),
        ("canary", "B", False),
        ("canary", "A", False),
        ("canary", "B", False),
    ]


def test_duration_round_is_never_cut_in_the_middle() -> None:
    clock = FakeClock()
    c = _campaign((SetConfig("canary", duration_s=5.0),))
    s = Scheduler(c, "py", clock=clock)
    a = s.next_session()
    clock.now += 100.0  # time is up, but B has not run this round
    b = s.next_session()
    assert a is not None and b is not None
    assert (a.variant, b.variant) == ("A", "B")
    assert s.next_session() is None


def test_duration_keeps_going_while_time_remains() -> None:
    clock = FakeClock()
    c = _campaign((SetConfig("canary", duration_s=3600.0),))
    s = Scheduler(c, "py", clock=clock)
    specs = [s.next_session() for _ in range(200)]
    assert all(x is not None for x in specs)
    assert specs[-1] is not None and specs[-1].index == 99
    s.stop()
    assert s.stopped
    assert s.next_session() is None


def test_stop_ends_a_counted_campaign() -> None:
    s = Scheduler(_campaign((SetConfig("g", sessions=5),)), "py")
    assert s.next_session() is not None
    s.stop()
    assert s.next_session() is None
    assert s.handed_out == 1


def test_substitute_only_known_placeholders() -> None:
    values = {"python": "/usr/bin/python3", "n": "5"}
    assert substitute("{python}", values) == "/usr/bin/python3"
    assert substitute("--n={n}", values) == "--n=5"
    assert substitute('{"json": {n}}', values) == '{"json": 5}'
    assert substitute("{other} {n}{n}", values) == "{other} 55"


def test_spec_argv_env_cwd_timeout(tmp_path: Path) -> None:
    text = """
[campaign]
name = "c"
[[workload]]
name = "w"
command = ["{python}", "{campaign_dir}/x.py", "--events={events}", "{ literal }"]
env = { A = "w", B = "w" }
cwd = "sub"
timeout = "2min"
matrix = { events = [117, 268] }
[variant.base]
env = { B = "v" }
[variant.cand]
args = ["--fast", "{events}"]
[set.g]
sessions = 1
"""
    c = parse_campaign(text, tmp_path / "c.toml")
    specs = _all(Scheduler(c, "/opt/py"))
    assert len(specs) == 4
    first, second = specs[0], specs[1]
    assert first.argv == ("/opt/py", f"{tmp_path}/x.py", "--events=117", "{ literal }")
    # Variant args are appended as written.
    assert second.argv == (
        "/opt/py", f"{tmp_path}/x.py", "--events=117", "{ literal }", "--fast", "{events}",
    )  # fmt: skip
    assert dict(first.env) == {"A": "w", "B": "v"}
    assert dict(second.env) == {"A": "w", "B": "w"}
    assert first.cwd == str(tmp_path / "sub")
    assert Path(first.cwd).is_absolute()
    assert first.timeout_s == 120.0
    assert first.params == (("events", "117"),)
    assert specs[2].argv[2] == "--events=268"


def test_default_cwd_is_campaign_dir() -> None:
    spec = Scheduler(_campaign((SetConfig("g", sessions=1),)), "py").next_session()
    assert spec is not None
    assert spec.cwd == str(DIR)
    assert spec.argv == ("run",)
    assert spec.timeout_s is None


def test_shell_workload() -> None:
    w = WorkloadConfig("sh", ("echo {n} && {python} -V",), matrix={"n": ("7",)}, shell=True)
    variants = (VariantConfig("A", args=("a b",)), VariantConfig("B"))
    c = _campaign((SetConfig("g", sessions=1),), variants=variants, workloads=(w,))
    specs = _all(Scheduler(c, "py"))
    assert specs[0].argv == ("/bin/sh", "-c", "echo 7 && py -V 'a b'")
    assert specs[1].argv == ("/bin/sh", "-c", "echo 7 && py -V")


@pytest.mark.parametrize("order", ["interleaved", "blocked"])
def test_balanced_counts(order: str) -> None:
    w = WorkloadConfig("w", ("r",), matrix={"a": ("1", "2", "3"), "b": ("x", "y")})
    c = _campaign((SetConfig("g", sessions=4, warmup=2, order=order),), workloads=(w,))
    s = Scheduler(c, "py")
    specs = _all(s)
    assert len(specs) == s.planned_total == 6 * 2 * 6
    counts: dict[tuple[object, ...], int] = {}
    for x in specs:
        key = (x.params, x.variant, x.warmup)
        counts[key] = counts.get(key, 0) + 1
    assert set(counts.values()) == {2, 4}
    assert len(counts) == 6 * 2 * 2
    first_measured = next(i for i, x in enumerate(specs) if not x.warmup)
    assert all(x.warmup for x in specs[:first_measured])
    assert not any(x.warmup for x in specs[first_measured:])


def test_substitute_scans_once_and_quotes_in_shell_mode() -> None:
    values = {"a": "{b}", "b": "x y"}
    assert substitute("{a} {b}", values) == "{b} x y"  # a replacement is never re-scanned
    assert substitute("{a} {b}", values, quote=True) == "'{b}' 'x y'"
    assert substitute("run {b}", {"b": "a;echo MATRIX-INJECTED"}, quote=True) == (
        "run 'a;echo MATRIX-INJECTED'"
    )


def _shell_output(tmp_path: Path, campaign_dir: Path, matrix_value: str, python: str) -> str:
    """Run the single session of a shell-mode campaign in ``campaign_dir``; return its stdout."""
    import subprocess

    campaign_dir.mkdir(parents=True)
    toml = campaign_dir / "c.toml"
    toml.write_text(
        "[campaign]\nname = 'c'\n[[workload]]\nname = 'w'\nshell = true\n"
        "command = 'echo DIR={campaign_dir} PY={python} M={m}'\n"
        f"matrix = {{ m = [{matrix_value!r}] }}\n"
    )
    from perfmon.core.campaign import load_campaign

    spec = Scheduler(load_campaign(toml), python).next_session()
    assert spec is not None and spec.argv[:2] == ("/bin/sh", "-c")
    proc = subprocess.run(
        spec.argv, capture_output=True, text=True, timeout=10, cwd=tmp_path, check=True
    )
    return proc.stdout


def test_shell_mode_placeholders_cannot_inject(tmp_path: Path) -> None:
    # The two strings of issue 13: a hostile directory name and a hostile matrix value.
    hostile_dir = tmp_path / "dir $(echo INJECTED) x"
    out = _shell_output(tmp_path, hostile_dir, "a;echo MATRIX-INJECTED", "py `echo PY-INJECTED`")
    assert out.count("\n") == 1  # one echo ran, nothing else
    assert f"DIR={hostile_dir} " in out
    assert "M=a;echo MATRIX-INJECTED" in out
    assert "PY=py `echo PY-INJECTED`" in out
    assert "\nINJECTED" not in out and not out.startswith(("INJECTED", "MATRIX-INJECTED"))


def test_argv_mode_is_unchanged_by_quoting() -> None:
    w = WorkloadConfig("w", ("{python}", "--m={m}"), matrix={"m": ("a;b c",)})
    c = _campaign((SetConfig("s", sessions=1),), variants=(VariantConfig("A"),), workloads=(w,))
    spec = Scheduler(c, "/py thon").next_session()
    assert spec is not None and spec.argv == ("/py thon", "--m=a;b c")
