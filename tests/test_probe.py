"""The probe, tested from real workload subprocesses writing to a real pipe."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# Generous deadline for reads: the machine is shared, we never assert how fast things are.
_DEADLINE_S = 60.0


def _env(fd: int | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERFMON_")}
    if fd is not None:
        env["PERFMON_FD"] = str(fd)
    env.update(extra)
    return env


def _read_until_eof(fd: int) -> bytes:
    chunks = []
    while True:
        ready, _, _ = select.select([fd], [], [], _DEADLINE_S)
        assert ready, "probe channel produced nothing before the deadline"
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


@contextmanager
def _workload(
    code: str, *, interval: str = "60", stdin: int | None = subprocess.DEVNULL
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Start ``code`` in a Python subprocess with a probe channel; yield (process, read end)."""
    r, w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        pass_fds=(w,),
        env=_env(w, PERFMON_FLUSH_INTERVAL=interval),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(w)
    try:
        yield proc, r
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        os.close(r)


def _run(code: str, *, interval: str = "60") -> tuple[list[str], str]:
    """Run a workload to the end; return (channel lines, stdout). Fails on a non-zero exit."""
    with _workload(code, interval=interval) as (proc, r):
        data = _read_until_eof(r)
        out, err = proc.communicate(timeout=_DEADLINE_S)
        assert proc.returncode == 0, err.decode()
    return data.decode("ascii").splitlines(), out.decode()


def test_every_call_sends_exact_protocol_lines() -> None:
    lines, out = _run(
        """
        from perfmon import probe
        assert probe.enabled()
        probe.gauge("event_queue_depth", 12)
        probe.count("chunks_total")
        probe.count("chunks_total", 3)
        probe.observe("payload_bytes", 1e-4)
        probe.value("sdpa_max_abs_diff", "2.5")
        probe.gauge("event_queue_depth", -3.5)
        with probe.timer("chunk_seconds"):
            pass

        @probe.timer("step_seconds")
        def step(x):
            return 2 * x

        print(step(21), step.__name__)
        """
    )
    assert out.split() == ["42", "step"]
    fixed = lines[:11]
    assert fixed == [
        "# PERFMON 1",
        "# TYPE event_queue_depth gauge",
        "event_queue_depth 12.0",
        "# TYPE chunks_total counter",
        "chunks_total 1.0",
        "chunks_total 3.0",
        "# TYPE payload_bytes histogram",
        "payload_bytes 0.0001",
        "# TYPE sdpa_max_abs_diff value",
        "sdpa_max_abs_diff 2.5",
        "event_queue_depth -3.5",
    ]
    timed = lines[11:]
    assert [line.split()[:-1] for line in timed] == [
        ["#", "TYPE", "chunk_seconds"],
        ["chunk_seconds"],
        ["#", "TYPE", "step_seconds"],
        ["step_seconds"],
    ]
    assert timed[0].endswith(" histogram") and timed[2].endswith(" histogram")
    for line in (timed[1], timed[3]):
        assert 0.0 <= float(line.split()[1]) < _DEADLINE_S


def test_noop_outside_perfmon() -> None:
    code = textwrap.dedent(
        """
        import sys
        from perfmon import probe
        assert not probe.enabled()
        assert probe.gauge is probe._noop_gauge and probe.count is probe._noop_count
        assert probe.gauge.__doc__.startswith("Set a gauge")
        probe.gauge("not a valid name", "whatever")  # no validation, no conversion: no-op
        probe.count("x_total", 5)
        probe.observe("y_bytes", 1)
        probe.value("z", 1)
        probe.flush()
        with probe.timer("t_seconds") as t:
            pass

        def f():
            return 7

        assert probe.timer("f_seconds")(f) is f
        assert "threading" not in sys.modules, "the no-op probe must not import threading"
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=_env(None), capture_output=True, check=True
    ).stdout
    assert out == b"ok\n"


def test_fd_not_open_at_import_means_noop() -> None:
    code = "from perfmon import probe; print(probe.enabled())"
    # 987 is not open in the child: an inherited variable without its descriptor.
    out = subprocess.run(
        [sys.executable, "-c", code], env=_env(987), capture_output=True, check=True
    ).stdout
    assert out == b"False\n"


def test_bad_names_and_kind_clashes_raise_at_the_call_site() -> None:
    lines, out = _run(
        """
        from perfmon import probe
        for call in (
            lambda: probe.gauge("bad name", 1),
            lambda: probe.gauge("1starts_with_digit", 1),
            lambda: probe.gauge("", 1),
            lambda: probe.count("dash-ed", 1),
            lambda: probe.timer("no spaces_seconds "),
            lambda: probe.gauge("x" * 5000, 1),
        ):
            try:
                call()
            except ValueError as exc:
                print("raised")
        probe.gauge("depth", 1)
        try:
            probe.observe("depth", 2)
        except ValueError as exc:
            print("clash", "gauge" in str(exc))
        try:
            probe.gauge("depth", "not a number")
        except ValueError:
            print("float")
        probe.gauge("ns:ok_name", 2)
        """
    )
    assert out.split("\n")[:-1] == ["raised"] * 6 + ["clash True", "float"]
    assert lines == [
        "# PERFMON 1",
        "# TYPE depth gauge",
        "depth 1.0",
        "# TYPE ns:ok_name gauge",
        "ns:ok_name 2.0",
    ]


def test_stdout_does_not_reach_the_channel() -> None:
    lines, out = _run(
        """
        import sys
        from perfmon import probe
        print("event_queue_depth 99")
        sys.stdout.flush()
        probe.gauge("event_queue_depth", 1)
        print("rss_bytes 5", file=sys.stderr)
        """
    )
    assert out == "event_queue_depth 99\n"
    assert lines == ["# PERFMON 1", "# TYPE event_queue_depth gauge", "event_queue_depth 1.0"]


def test_nothing_sent_when_nothing_emitted() -> None:
    lines, _ = _run("from perfmon import probe; probe.flush()")
    assert lines == []


def test_interval_flush_while_the_workload_runs() -> None:
    # The workload blocks on stdin after one gauge; only the background flush can send it.
    code = """
        import sys
        from perfmon import probe
        probe.gauge("event_queue_depth", 7)
        sys.stdin.read()
        """
    with _workload(code, interval="0.05", stdin=subprocess.PIPE) as (proc, r):
        received = b""
        while b"event_queue_depth 7.0\n" not in received:
            ready, _, _ = select.select([r], [], [], _DEADLINE_S)
            assert ready, "no interval flush arrived"
            received += os.read(r, 65536)
        assert proc.poll() is None, "the sample must arrive while the workload still runs"
        assert proc.stdin is not None
        proc.stdin.close()
        assert _read_until_eof(r) == b""
        assert proc.wait(timeout=_DEADLINE_S) == 0


def test_full_buffer_is_flushed_by_the_calling_thread() -> None:
    code = """
        import sys
        from perfmon import probe
        for i in range(probe.MAX_BUFFERED + 1):
            probe.count("chunks_total")
        sys.stdin.read()
        """
    # Interval 1 hour: only the buffer bound can trigger this flush.
    with _workload(code, interval="3600", stdin=subprocess.PIPE) as (proc, r):
        received = b""
        want = 8193
        while received.count(b"chunks_total 1.0\n") < want:
            ready, _, _ = select.select([r], [], [], _DEADLINE_S)
            assert ready, "the full buffer was not flushed"
            received += os.read(r, 65536)
        assert proc.poll() is None
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=_DEADLINE_S) == 0


def test_threads_lose_and_duplicate_nothing() -> None:
    lines, _ = _run(
        """
        import threading
        from perfmon import probe

        def work(k):
            for i in range(5000):
                probe.count(f"t{k}_total", 1)
                probe.observe("shared_seconds", i)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        """,
        interval="0.01",
    )
    assert lines[0] == "# PERFMON 1"
    assert lines.count("# PERFMON 1") == 1
    for k in range(4):
        assert lines.count(f"t{k}_total 1.0") == 5000
        assert lines.count(f"# TYPE t{k}_total counter") == 1
        first_type = lines.index(f"# TYPE t{k}_total counter")
        assert first_type < lines.index(f"t{k}_total 1.0")
    shared = [line for line in lines if line.startswith("shared_seconds ")]
    assert sorted(float(s.split()[1]) for s in shared) == sorted(
        [float(i) for i in range(5000)] * 4
    )


def test_fork_child_does_not_resend_the_parent_buffer() -> None:
    lines, _ = _run(
        """
        import os, sys
        from perfmon import probe
        probe.gauge("before_fork", 1)  # buffered (interval 60 s), not yet sent
        pid = os.fork()
        if pid == 0:
            probe.gauge("in_child", 2)
            sys.exit(0)  # normal exit: atexit flushes the child's own buffer
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        probe.gauge("after_fork", 3)
        """
    )
    samples = [line for line in lines if not line.startswith("#")]
    assert sorted(samples) == ["after_fork 3.0", "before_fork 1.0", "in_child 2.0"]
    assert lines.count("# TYPE before_fork gauge") == 1


def test_broken_pipe_disables_the_probe_quietly() -> None:
    r, w = os.pipe()
    code = textwrap.dedent(
        """
        from perfmon import probe
        assert probe.enabled()
        probe.gauge("event_queue_depth", 1)
        probe.flush()  # EPIPE: the reader is gone
        assert not probe.enabled()
        for i in range(20000):
            probe.gauge("event_queue_depth", i)  # no-ops now, buffer stays bounded
        probe.flush()
        print("still alive")
        """
    )
    os.close(r)  # perfmon went away before the workload wrote anything
    proc = subprocess.run(
        [sys.executable, "-c", code],
        pass_fds=(w,),
        env=_env(w, PERFMON_FLUSH_INTERVAL="60"),
        capture_output=True,
        timeout=_DEADLINE_S,
    )
    os.close(w)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"still alive\n"
    assert proc.stderr == b""


def test_closed_fd_disables_the_probe_quietly() -> None:
    lines, out = _run(
        """
        import os
        from perfmon import probe
        os.close(int(os.environ["PERFMON_FD"]))
        probe.gauge("event_queue_depth", 1)
        probe.flush()  # EBADF
        print(probe.enabled())
        """
    )
    assert out == "False\n"
    assert lines == []


@pytest.mark.parametrize("interval", ["0", "-1", "soon"])
def test_bad_flush_interval_falls_back_to_default(interval: str) -> None:
    lines, out = _run(
        """
        from perfmon import probe
        print(probe._interval)
        probe.gauge("g", 1)
        """,
        interval=interval,
    )
    assert float(out) == 0.1
    assert lines[-1] == "g 1.0"
