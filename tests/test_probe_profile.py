"""A real py-spy profile of a probe-heavy workload shows nothing of perfmon but the emit calls.

design.md section 3: the probe leaves no frames in the user's profiles. The emitting calls
(``probe.gauge`` and the flush they do when it is due) are real cost of the user's own code and
may show, under the user's frames; a thread of perfmon's own may not show at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

_WORKLOAD = """
import sys, time
from perfmon import probe

def work(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        x = 0
        for k in range(200):
            x += k * k
        probe.gauge("event_queue_depth", x)
        probe.count("chunks_total")
        with probe.timer("chunk_seconds"):
            pass

sys.stdout.write("ready\\n")
sys.stdout.flush()
work(float(sys.argv[1]))
"""


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.access(found, os.X_OK):
        pytest.skip("py-spy is not installed")
    return found


@pytest.mark.slow
def test_a_real_py_spy_profile_shows_no_perfmon_thread(tmp_path: Path) -> None:
    py_spy = _py_spy()
    script = tmp_path / "heavy.py"
    script.write_text(textwrap.dedent(_WORKLOAD))
    r, w = os.pipe()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERFMON_")}
    env["PERFMON_FD"] = str(w)
    proc = subprocess.Popen(
        [sys.executable, str(script), "4"],
        pass_fds=(w,),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(w)
    drained = 0

    def drain() -> None:
        # Drain the channel as perfmon does, while py-spy samples, so the workload never
        # blocks on a full pipe (a blocked write would put every sample in the probe).
        nonlocal drained
        while chunk := os.read(r, 1 << 16):
            drained += len(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        raw = tmp_path / "profile.txt"
        spy = subprocess.run(
            [
                *(py_spy, "record", "--pid", str(proc.pid), "--duration", "2", "--rate", "100"),
                *("--format", "raw", "--threads", "--idle", "-o", str(raw)),
            ],
            capture_output=True,
            timeout=60,
        )
        if spy.returncode != 0 or not raw.exists():
            pytest.skip(f"py-spy could not attach: {spy.stderr.decode(errors='replace')[-300:]}")
        assert proc.wait(timeout=60) == 0
        reader.join(timeout=60)  # the workload's end closes the channel
        assert not reader.is_alive()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        os.close(r)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert drained > 0, "the probe sent nothing: it was not enabled"
    stacks: list[tuple[list[str], int]] = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        stacks.append((stack.split(";"), int(count)))
    total = sum(n for _, n in stacks)
    assert total >= 50, f"too few samples to judge: {total}"
    threads = {frames[0] for frames, _ in stacks}
    assert len(threads) == 1, f"samples from more than one thread: {threads}"
    in_probe = 0
    for frames, n in stacks:
        probe_at = [i for i, f in enumerate(frames) if "perfmon/probe.py" in f]
        if not probe_at:
            continue
        in_probe += n
        # Every perfmon frame sits under the user's emitting call in work().
        below = frames[: probe_at[0]]
        assert any(f.startswith("work (") for f in below), frames
    # The emit calls themselves are real cost and may show, but never most of the profile.
    assert in_probe < total
