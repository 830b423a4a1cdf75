"""The probe, tested from real workload subprocesses writing to a real pipe."""

from __future__ import annotations

import os
import select
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from perfmon.core.protocol import Decoder

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


def _decode(data: bytes) -> list[tuple[str, str, float]]:
    """Decode a channel with perfmon's own decoder: (name, kind, value) per sample, in order.

    Fails if any part of the channel is malformed.
    """
    dec = Decoder(0)
    samples = dec.feed(data, 0.0) + dec.close(0.0)
    assert dec.malformed == 0, dec.last_error
    return [(s.metric, s.kind.value, s.value) for s in samples]


def _frames(data: bytes) -> list[tuple[str, str, int]]:
    """The (name, kind, count) of each binary frame header, read by walking the frames."""
    assert data.startswith(b"# PERFMON 2\n")
    pos, out = len(b"# PERFMON 2\n"), []
    while pos < len(data):
        nl = data.index(b"\n", pos)
        tag, name, kind, count = data[pos:nl].decode("ascii").split(" ")
        assert tag == "#B"
        out.append((name, kind, int(count)))
        pos = nl + 1 + 8 * int(count)
    assert pos == len(data)
    return out


def _run(code: str, *, interval: str = "60") -> tuple[list[tuple[str, str, float]], str]:
    """Run a workload to the end; return (decoded samples, stdout). Fails on a non-zero exit."""
    with _workload(code, interval=interval) as (proc, r):
        data = _read_until_eof(r)
        out, err = proc.communicate(timeout=_DEADLINE_S)
        assert proc.returncode == 0, err.decode()
    return _decode(data), out.decode()


def _run_raw(code: str, *, interval: str = "60") -> bytes:
    """Run a workload to the end; return the channel's bytes."""
    with _workload(code, interval=interval) as (proc, r):
        data = _read_until_eof(r)
        _, err = proc.communicate(timeout=_DEADLINE_S)
        assert proc.returncode == 0, err.decode()
    return data


def test_every_call_sends_exact_protocol_frames() -> None:
    with _workload(
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
    ) as (proc, r):
        data = _read_until_eof(r)
        out, err = proc.communicate(timeout=_DEADLINE_S)
        assert proc.returncode == 0, err.decode()
    assert out.split() == [b"42", b"step"]
    # One flush at exit: the header, then one frame per name: gauges, counters, histograms,
    # values, each in first-use order.
    assert _frames(data) == [
        ("event_queue_depth", "gauge", 2),
        ("chunks_total", "counter", 2),
        ("payload_bytes", "histogram", 1),
        ("chunk_seconds", "histogram", 1),
        ("step_seconds", "histogram", 1),
        ("sdpa_max_abs_diff", "value", 1),
    ]
    first = b"# PERFMON 2\n#B event_queue_depth gauge 2\n" + struct.pack("<2d", 12.0, -3.5)
    assert data.startswith(first)
    samples = _decode(data)
    assert samples[:5] == [
        ("event_queue_depth", "gauge", 12.0),
        ("event_queue_depth", "gauge", -3.5),
        ("chunks_total", "counter", 1.0),
        ("chunks_total", "counter", 3.0),
        ("payload_bytes", "histogram", 1e-4),
    ]
    assert samples[-1] == ("sdpa_max_abs_diff", "value", 2.5)
    timed = samples[5:7]
    assert [(name, kind) for name, kind, _ in timed] == [
        ("chunk_seconds", "histogram"),
        ("step_seconds", "histogram"),
    ]
    for _, _, seconds in timed:
        assert 0.0 <= seconds < _DEADLINE_S


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
    samples, out = _run(
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
    assert samples == [("depth", "gauge", 1.0), ("ns:ok_name", "gauge", 2.0)]


def test_stdout_does_not_reach_the_channel() -> None:
    samples, out = _run(
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
    assert samples == [("event_queue_depth", "gauge", 1.0)]


def test_nothing_sent_when_nothing_emitted() -> None:
    assert _run_raw("from perfmon import probe; probe.flush()") == b""


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
        frame = b"#B event_queue_depth gauge 1\n" + struct.pack("<d", 7.0)
        while frame not in received:
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
        want = b"#B chunks_total counter 8193\n" + struct.pack("<d", 1.0) * 8193
        while want not in received:
            ready, _, _ = select.select([r], [], [], _DEADLINE_S)
            assert ready, "the full buffer was not flushed"
            received += os.read(r, 65536)
        assert _decode(received) == [("chunks_total", "counter", 1.0)] * 8193
        assert proc.poll() is None
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=_DEADLINE_S) == 0


def test_threads_lose_and_duplicate_nothing() -> None:
    samples, _ = _run(
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
    for k in range(4):
        assert samples.count((f"t{k}_total", "counter", 1.0)) == 5000
    shared = [v for name, kind, v in samples if name == "shared_seconds"]
    assert {kind for name, kind, _ in samples if name == "shared_seconds"} == {"histogram"}
    assert sorted(shared) == sorted([float(i) for i in range(5000)] * 4)
    assert len(samples) == 4 * 5000 * 2


def test_fork_child_does_not_resend_the_parent_buffer() -> None:
    data = _run_raw(
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
    assert sorted(_decode(data)) == [
        ("after_fork", "gauge", 3.0),
        ("before_fork", "gauge", 1.0),
        ("in_child", "gauge", 2.0),
    ]
    # Parent and child each announce the version once (the child's copy was not yet sent).
    assert data.count(b"# PERFMON 2\n") == 2


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
    samples, out = _run(
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
    assert samples == []


@pytest.mark.parametrize("interval", ["0", "-1", "soon"])
def test_bad_flush_interval_falls_back_to_default(interval: str) -> None:
    samples, out = _run(
        """
        from perfmon import probe
        print(probe._interval)
        probe.gauge("g", 1)
        """,
        interval=interval,
    )
    assert float(out) == 0.1
    assert samples == [("g", "gauge", 1.0)]


def test_forked_processes_writing_at_once_never_tear_frames() -> None:
    # Both processes flush every 1 ms while emitting: without PIPE_BUF-sized atomic writes
    # their frames would interleave mid-frame and the decoder would lose the framing.
    samples, _ = _run(
        """
        import os, sys
        from perfmon import probe
        probe.gauge("warmup", 0)
        probe.flush()
        pid = os.fork()
        who = "child" if pid == 0 else "parent"
        for i in range(20000):
            probe.observe(f"{who}_seconds", i)
            probe.count("both_total", 1)
        if pid == 0:
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        """,
        interval="0.001",
    )
    for who in ("child", "parent"):
        got = [v for name, _, v in samples if name == f"{who}_seconds"]
        assert got == [float(i) for i in range(20000)]  # in order, none lost or repeated
    assert samples.count(("both_total", "counter", 1.0)) == 40000


def test_text_lines_written_beside_the_probe_are_decoded_too() -> None:
    with _workload(
        """
        import os
        from perfmon import probe
        fd = int(os.environ["PERFMON_FD"])
        probe.gauge("g", 1)
        probe.flush()
        os.write(fd, b"shell_metric 5\\n# TYPE shell_total counter\\nshell_total 2\\n")
        probe.gauge("g", 2)
        probe.flush()
        """
    ) as (proc, r):
        data = _read_until_eof(r)
        assert proc.wait(timeout=_DEADLINE_S) == 0
    assert _decode(data) == [
        ("g", "gauge", 1.0),
        ("shell_metric", "gauge", 5.0),
        ("shell_total", "counter", 2.0),
        ("g", "gauge", 2.0),
    ]
