"""Fuzzing campaign files: every mutated campaign is valid (exit 0) or gets exit 2 and one line.

The mutations start from the bundled samples (``samples/*.toml``) and a fixed seed, so a failure
names a reproducible case: lines deleted, duplicated or swapped, random bytes, huge numbers,
deep nesting, wrong types, unicode, truncation, empty files. Each runs in-process through
``perfmon.cli.main(["validate", FILE])`` (fast); a handful also run through a real subprocess,
where a traceback or exit status 1 could not hide behind pytest.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from perfmon.cli import main

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted((REPO / "samples").glob("*.toml"))
SEED = 20261201
CASES = 320

_VALUES = (
    "1e400",
    "-1e400",
    "1" + "0" * 400,
    "-" + "9" * 30,
    '"1e400GB"',
    '"1e400s"',
    '"-5s"',
    '"nan"',
    "nan",
    "inf",
    "-inf",
    "0",
    "-1",
    "true",
    '""',
    "[]",
    "{}",
    '["a", 1, true]',
    "1979-05-27T07:32:00Z",
    '"\u00e9\u00e8\u2603\U0001f600"',
    '"\\u0000\\u001b[31m"',
    '"\\u001b]0;TITLE\\u0007\\u009b2J"',
    '"' + "x" * 5000 + '"',
    "[" * 3000 + "]" * 3000,
    "{ a = " * 500 + "1" + " }" * 500,
    '"' + "(" * 3000 + "max(x)" + ")" * 3000 + ' < 1"',
    '"{undefined}"',
    '"a;echo INJECTED"',
    '"../../../../etc/passwd"',
)


def _mutate(rng: random.Random, text: str) -> bytes:
    """One to three random mutations of a campaign's text."""
    lines = text.splitlines()
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(11)
        if op == 0 and lines:  # delete a line
            del lines[rng.randrange(len(lines))]
        elif op == 1 and lines:  # duplicate a line
            i = rng.randrange(len(lines))
            lines.insert(i, lines[i])
        elif op == 2 and len(lines) > 1:  # swap two lines
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 3 and lines:  # replace a value by a hostile one
            idxs = [k for k, line in enumerate(lines) if "=" in line]
            if idxs:
                k = rng.choice(idxs)
                key = lines[k].split("=", 1)[0]
                lines[k] = f"{key}= {rng.choice(_VALUES)}"
        elif op == 4:  # random bytes somewhere
            blob = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
            i = rng.randrange(len(lines) + 1)
            lines.insert(i, blob.decode("latin-1"))
        elif op == 5 and lines:  # truncate the file
            lines = lines[: rng.randrange(len(lines))]
        elif op == 6:  # a hostile key in a random table
            i = rng.randrange(len(lines) + 1)
            key = rng.choice(
                ["name", "command", "timeout", "sessions", "log_cap", "expr", "matrix", "env"]
            )
            lines.insert(i, f"{key} = {rng.choice(_VALUES)}")
        elif op == 7 and lines:  # flip one character
            k = rng.randrange(len(lines))
            if lines[k]:
                c = rng.randrange(len(lines[k]))
                lines[k] = lines[k][:c] + chr(rng.randrange(1, 0x3000)) + lines[k][c + 1 :]
        elif op == 8:  # a random table header
            header = rng.choice(
                ["[campaign]", "[[workload]]", "[[gate]]", "[set.x]", "[variant]", "[profile]"]
            )
            lines.insert(rng.randrange(len(lines) + 1), header)
        elif op == 9:  # deep nesting as its own key
            depth = rng.choice([100, 1000, 5000])
            lines.append(f"deep = {'[' * depth}{']' * depth}")
        else:  # empty or whitespace file
            lines = rng.choice([[], [""], ["   "], ["\x00"]])
    data = "\n".join(lines).encode("utf-8", "surrogateescape")
    if rng.random() < 0.05:  # invalid UTF-8
        data += b"\xff\xfe\x80"
    return data


def _cases() -> list[bytes]:
    rng = random.Random(SEED)
    texts = [p.read_text() for p in SAMPLES]
    return [_mutate(rng, rng.choice(texts)) for _ in range(CASES)]


def _no_controls(text: str) -> bool:
    return not any((ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F for c in text)


def _check(status: int, err: str, path: Path, out: str = "") -> None:
    assert "Traceback" not in err, err
    assert status in (0, 2), (status, err)
    assert _no_controls(err) and _no_controls(out), (err, out)
    if status == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"perfmon: error: {path}"), err


def test_samples_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert SAMPLES
    for path in SAMPLES:
        assert main(["validate", str(path)]) == 0, capsys.readouterr().err


def test_mutated_campaigns_exit_0_or_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    statuses = {0: 0, 2: 0}
    for i, data in enumerate(_cases()):
        path = tmp_path / f"case{i:03d}.toml"
        path.write_bytes(data)
        capsys.readouterr()
        try:
            status = main(["validate", str(path)])
        except BaseException as exc:  # any escape at all is the failure reported
            pytest.fail(f"case {i}: {type(exc).__name__}: {exc}\n{data[:300]!r}")
        captured = capsys.readouterr()
        _check(status, captured.err, path, captured.out)
        statuses[status] += 1
    assert sum(statuses.values()) == CASES >= 300
    assert statuses[2] > CASES // 2  # most mutations break a campaign: the errors were tested


@pytest.mark.parametrize(
    "content",
    [
        b'[campaign]\nname = "x"\nlog_cap = "1e400GB"\n'
        b'[[workload]]\nname = "a"\ncommand = ["true"]\n',
        b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n",
        b'[campaign]\nname = "x"\n[[workload]]\nname = "a"\ncommand = ["true"]\n'
        b'[[gate]]\nname = "g"\nexpr = "' + b"(" * 5000 + b"max(x)" + b")" * 5000 + b' < 1"\n',
        b"\xff\xfe not utf-8",
        b"",
    ],
    ids=["overflow", "deep-arrays", "deep-gate", "not-utf8", "empty"],
)
def test_hostile_campaigns_through_a_subprocess(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    proc = subprocess.run(
        [sys.executable, "-m", "perfmon", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2, proc.stderr
    _check(proc.returncode, proc.stderr, path)


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null", "/"])
def test_special_files_are_refused(special: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["validate", special])
    err = capsys.readouterr().err
    assert status == 2
    _check(status, err, Path(special))


def test_a_huge_campaign_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "huge.toml"
    path.write_bytes(b"# padding\n" * 200_000)  # 2 MB
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "limit" in err
    _check(2, err, path)


def test_a_fifo_is_refused_without_waiting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    path = tmp_path / "fifo.toml"
    os.mkfifo(path)
    assert main(["validate", str(path)]) == 2
    _check(2, capsys.readouterr().err, path)


def test_escape_sequences_in_keys_and_names_never_reach_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "esc.toml"
    path.write_text('[campaign]\nname = "x"\n"\\u001b]0;T\\u0007k\\u001b[2J" = 1\n')
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    _check(2, captured.err, path, captured.out)
    path.write_text(
        '[campaign]\nname = "x"\n[[workload]]\nname = "w"\ncommand = ["true"]\n'
        '[[gate]]\nname = "g\\u001b[31m"\nexpr = "max(x) < 1"\n'
    )
    assert main(["validate", str(path)]) == 0
    captured = capsys.readouterr()
    _check(0, captured.err, path, captured.out)
    assert "gate 'g\\x1b[31m'" in captured.out  # repr shows it, harmlessly
