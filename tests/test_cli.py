"""The ``perfmon`` command end to end: real campaigns, real subprocesses, real exit statuses."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from perfmon.engine.client import SocketClient

pytestmark = pytest.mark.slow  # real processes (see README: the fast suite)

REPO = Path(__file__).resolve().parents[1]
WORKLOADS = Path(__file__).resolve().parent / "workloads"


def perfmon(
    *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perfmon", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


SMALL = """
[campaign]
name = "small"
sample_interval = "50ms"
grace = "1s"

[[workload]]
name = "emit"
command = ["/bin/sh", "-c", '''
for i in 1 2 3 4 5; do
  echo "event_queue_depth $i" >&$PERFMON_FD
  echo "# TYPE chunks_total counter" >&$PERFMON_FD
  echo "chunks_total 1" >&$PERFMON_FD
  echo not a sample >&$PERFMON_FD
done
''']
timeout = "20s"

[variant.baseline]
env = { X = "1" }
[variant.candidate]
env = { X = "2" }

[set.golden]
sessions = 2
warmup = 1

[[gate]]
name = "Queue"
expr = "max(event_queue_depth) < 100"
{extra_gate}
"""


def write_campaign(tmp_path: Path, extra_gate: str = "") -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL.replace("{extra_gate}", extra_gate))
    return path


def only_run_dir(tmp_path: Path) -> Path:
    runs = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_version_and_help() -> None:
    out = perfmon("--version")
    assert out.returncode == 0 and out.stdout.startswith("perfmon ")
    out = perfmon("--help")
    assert out.returncode == 0
    assert "run" in out.stdout and "--headless" in perfmon("run", "--help").stdout


def test_bare_perfmon_says_how_to_start(tmp_path: Path) -> None:
    out = perfmon(cwd=tmp_path)
    assert out.returncode == 2
    assert "perfmon run" in out.stdout
    assert "quickstart.toml" in out.stdout


def test_bad_campaign_names_file_line_and_key_with_status_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[campaign]\nname = "x"\n\n[[workload]]\nname = "w"\ncommand = ["true"]\ntimeout = "soon"\n'
    )
    out = perfmon("run", str(path), "--headless")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert f"{path}:7" in out.stderr
    assert "timeout" in out.stderr


def test_bad_gate_is_a_campaign_error(tmp_path: Path) -> None:
    path = write_campaign(tmp_path, '[[gate]]\nname = "Bad"\nexpr = "p95(event_queue_depth) <"\n')
    out = perfmon("run", str(path), "--headless")
    assert out.returncode == 2, out.stderr
    assert "gate" in out.stderr and "Traceback" not in out.stderr


def test_headless_run_passes_and_writes_a_report(tmp_path: Path) -> None:
    path = write_campaign(tmp_path)
    out = perfmon("run", str(path), "--headless")
    assert out.returncode == 0, out.stdout + out.stderr
    # one line per finished session: 2 variants x (1 warm-up + 2 measured)
    assert sum(1 for line in out.stdout.splitlines() if re.match(r"\[\s*\d+/\d+\]", line)) == 6
    assert "verdict: PASS" in out.stdout
    run_dir = only_run_dir(tmp_path)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["campaign"]["name"] == "small"
    report = json.loads((run_dir / "report.json").read_text())
    assert report["verdict"] == "pass"
    md = (run_dir / "report.md").read_text()
    assert "Queue" in md and "max(event_queue_depth) < 100" in md


def test_headless_failed_gate_exits_1_and_malformed_lines_are_counted(tmp_path: Path) -> None:
    path = write_campaign(
        tmp_path, '[[gate]]\nname = "Too strict"\nexpr = "max(event_queue_depth) < 3"\n'
    )
    out = perfmon("run", str(path), "--headless")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAIL" in out.stdout
    assert "malformed 5" in out.stdout  # five "not a sample" lines per session
    run_dir = only_run_dir(tmp_path)
    report = json.loads((run_dir / "report.json").read_text())
    states = {g["name"]: g["state"] for g in report["gates"]}
    assert states == {"Queue": "pass", "Too strict": "fail"}


def test_failing_workloads_get_statuses_and_the_campaign_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "mixed.toml"
    path.write_text(
        textwrap.dedent(
            """
            [campaign]
            name = "mixed"
            grace = "500ms"
            [[workload]]
            name = "crash"
            command = ["{python}", "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
            [[workload]]
            name = "missing"
            command = ["/nonexistent/perfmon-test-binary"]
            [[workload]]
            name = "slow"
            command = ["{python}", "-c", "import time; time.sleep(60)"]
            timeout = "1s"
            [[workload]]
            name = "fine"
            command = ["{python}", "-c", "print('hello')"]
            """
        )
    )
    out = perfmon("run", str(path), "--headless")
    assert out.returncode == 0, out.stdout + out.stderr  # no gates: vacuously pass
    text = out.stdout
    assert "SIGSEGV" in text
    assert "start failed" in text
    assert "timeout" in text
    assert " ok " in text


def _marked_processes(mark: str) -> list[psutil.Process]:
    """Live processes whose environment has ``PERFMON_TEST_RUN=mark`` (zombies left out)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.status() != psutil.STATUS_ZOMBIE and p.environ().get("PERFMON_TEST_RUN") == mark:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_daemon_serves_snapshots_over_a_private_socket_and_stops_on_command(tmp_path: Path) -> None:
    """The viewer's path without the viewer: daemon process, socket, snapshots, stop, report."""
    path = tmp_path / "long.toml"
    path.write_text(
        textwrap.dedent(
            """
            [campaign]
            name = "long"
            sample_interval = "50ms"
            grace = "1s"
            [[workload]]
            name = "ticker"
            command = ["{python}", "TICKER", "600", "7", "0.05"]
            env = { PERFMON_TEST_RUN = "MARK" }
            [set.golden]
            sessions = 50
            [[gate]]
            name = "Queue"
            expr = "max(event_queue_depth) < 100"
            """
        )
        .replace("TICKER", str(WORKLOADS / "ticker.py"))
        .replace("MARK", str(tmp_path))
    )
    from perfmon.engine.daemon import socket_path
    from perfmon.engine.recorder import make_run_dir

    run_dir = make_run_dir(tmp_path / "runs", "long", time.time())
    sock = socket_path(run_dir.name)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "perfmon",
            "_daemon",
            str(path),
            "--run-dir",
            str(run_dir),
            "--socket",
            str(sock),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    client = SocketClient(sock, alive=lambda: proc.poll() is None)
    try:
        client.connect()
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(sock.parent).st_mode) == 0o700
        deadline = time.monotonic() + 30
        snap = None
        while time.monotonic() < deadline:
            snap = client.latest()
            if snap and snap.gates and snap.gates[0].state.value == "pass":
                break
            time.sleep(0.1)
        assert snap is not None and snap.campaign == "long"
        assert snap.gates[0].state.value == "pass"
        assert any(m.name == "event_queue_depth" for m in snap.metrics)
        assert _marked_processes(str(tmp_path))  # the mark finds the running workload
        # no TCP listener
        conns = psutil.Process(proc.pid).net_connections(kind="inet")
        assert not [c for c in conns if c.status == psutil.CONN_LISTEN]
        client.send("stop")
        assert client.wait_finished(60)
        assert client.end is not None and client.end["exit_status"] == 3  # stopped early
        assert proc.wait(timeout=30) == 3
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
    assert (run_dir / "report.md").is_file()
    assert not sock.exists()
    # nothing left behind: no process of this test's ticker workload survives (marked in its
    # environment: other tests run ticker.py at the same time in other workers)
    assert not _marked_processes(str(tmp_path))


def test_report_of_a_damaged_manifest_is_exit_1_with_damage_found(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A damaged manifest is damage like any other: the report is written, says "Damage
    found", its verdict is pending (unknown gates can never pass), and the exit status is 1;
    one line on stderr, never a traceback. A directory with no run file at all is exit 2."""
    from perfmon.cli import main

    for content in ("garbage", "[1, 2]", '{"campaign": 3}', '{"campaign": {"gates": [{"x": 1}]}}'):
        (tmp_path / "manifest.json").write_text(content)
        assert main(["report", str(tmp_path)]) == 1, content
        captured = capsys.readouterr()
        assert captured.err.count("\n") == 1 and captured.err.startswith("damage found"), content
        assert "verdict: PENDING" in captured.out, content
        assert "Damage found" in (tmp_path / "report.md").read_text(), content
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("perfmon: error: "), err
