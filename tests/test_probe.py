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
    chunks: list[bytes] = []
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
    samples = list(dec.feed_batch(data, 0.0)) + list(dec.close_batch(0.0))
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
    # The first sample is flushed at once (interval 60 s: no flush is due after it), the rest
    # in one flush at exit: one frame per name: gauges, counters, histograms, values, each in
    # first-use order.
    assert _frames(data) == [
        ("event_queue_depth", "gauge", 1),
        ("event_queue_depth", "gauge", 1),
        ("chunks_total", "counter", 2),
        ("payload_bytes", "histogram", 1),
        ("chunk_seconds", "histogram", 1),
        ("step_seconds", "histogram", 1),
        ("sdpa_max_abs_diff", "value", 1),
    ]
    first = (
        b"# PERFMON 2\n#B event_queue_depth gauge 1\n"
        + struct.pack("<d", 12.0)
        + b"#B event_queue_depth gauge 1\n"
        + struct.pack("<d", -3.5)
    )
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


def test_first_sample_is_sent_at_once() -> None:
    # The workload blocks on stdin after one gauge: the probe has no thread, so the sample
    # must have left inside the call.
    code = """
        import sys
        from perfmon import probe
        probe.gauge("event_queue_depth", 7)
        sys.stdin.read()
        """
    with _workload(code, interval="3600", stdin=subprocess.PIPE) as (proc, r):
        frame = b"#B event_queue_depth gauge 1\n" + struct.pack("<d", 7.0)
        _read_while_running(proc, r, frame)
        assert proc.stdin is not None
        proc.stdin.close()
        assert _read_until_eof(r) == b""
        assert proc.wait(timeout=_DEADLINE_S) == 0


def _read_while_running(proc: subprocess.Popen[bytes], r: int, want: bytes) -> bytes:
    """Read the channel until ``want`` arrived; fail if the workload exited first."""
    received = b""
    while want not in received:
        ready, _, _ = select.select([r], [], [], _DEADLINE_S)
        assert ready, f"{want!r} did not arrive"
        received += os.read(r, 65536)
    assert proc.poll() is None, "the samples must arrive while the workload still runs"
    return received


def test_an_emit_flushes_when_the_interval_has_passed() -> None:
    code = """
        import sys, time
        from perfmon import probe
        probe.gauge("event_queue_depth", 1)  # sent at once
        probe.gauge("event_queue_depth", 2)  # buffered: the interval has not passed
        time.sleep(0.3)
        probe.gauge("event_queue_depth", 3)  # due: this call sends 2 and 3
        probe.gauge("event_queue_depth", 4)  # buffered again
        sys.stdin.read()
        """
    with _workload(code, interval="0.05", stdin=subprocess.PIPE) as (proc, r):
        frame = b"#B event_queue_depth gauge 2\n" + struct.pack("<2d", 2.0, 3.0)
        received = _read_while_running(proc, r, frame)
        assert proc.stdin is not None
        proc.stdin.close()
        received += _read_until_eof(r)
        assert proc.wait(timeout=_DEADLINE_S) == 0
    assert _frames(received) == [
        ("event_queue_depth", "gauge", 1),
        ("event_queue_depth", "gauge", 2),
        ("event_queue_depth", "gauge", 1),  # at exit
    ]


def test_a_loop_of_bursts_and_long_gaps_is_delivered_at_the_next_burst() -> None:
    # Three samples per iteration, then 0.3 s of "work" without emitting (interval 50 ms):
    # the first emit of each iteration is due and sends the previous iteration's samples;
    # a burst must not teach the probe to skip its clock reads through the next gap.
    code = """
        import sys, time
        from perfmon import probe
        for k in range(4):
            probe.gauge("a", k)
            probe.gauge("b", k)
            probe.gauge("c", k)
            time.sleep(0.3)
        sys.stdin.read()
        """
    with _workload(code, interval="0.05", stdin=subprocess.PIPE) as (proc, r):
        # c = 2 was emitted in iteration 2; the emits of iteration 3 must send it.
        dec, received, seen = Decoder(0), b"", []
        while ("c", 2.0) not in seen:
            ready, _, _ = select.select([r], [], [], _DEADLINE_S)
            assert ready, "iteration 2's samples did not arrive"
            chunk = os.read(r, 65536)
            received += chunk
            seen += [(x.metric, x.value) for x in list(dec.feed_batch(chunk, 0.0))]
        assert proc.poll() is None, "the samples must arrive while the workload still runs"
        assert proc.stdin is not None
        proc.stdin.close()
        received += _read_until_eof(r)
        assert proc.wait(timeout=_DEADLINE_S) == 0
    samples = _decode(received)
    assert sorted(samples) == sorted((n, "gauge", float(k)) for k in range(4) for n in "abc")


def test_an_emitting_loop_is_flushed_about_every_interval() -> None:
    # 1 s of emitting every 10 ms with a 50 ms interval: ~20 flushes by the workload's own
    # clock. The bound is loose (a starved machine runs fewer loop turns), but a probe that
    # only flushed at exit or on a full buffer would send one frame.
    samples_frames = _frames(
        _run_raw(
            """
            import time
            from perfmon import probe
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                probe.gauge("event_queue_depth", 1)
                time.sleep(0.01)
            """,
            interval="0.05",
        )
    )
    assert len(samples_frames) >= 5
    assert {name for name, _, _ in samples_frames} == {"event_queue_depth"}


def test_the_probe_starts_no_thread() -> None:
    _, out = _run(
        """
        import _thread, sys
        from perfmon import probe
        for i in range(20000):
            probe.gauge("event_queue_depth", i)
        print(_thread._count(), "threading" in sys.modules)
        """,
        interval="0.001",
    )
    assert out.split() == ["0", "False"]


def test_multiprocessing_children_flush_their_last_samples() -> None:
    # Pool workers and Process children end with os._exit (no atexit): the probe's
    # multiprocessing hook must flush what they buffered (interval 60 s: nothing is due).
    samples, out = _run(
        """
        import multiprocessing
        from perfmon import probe

        def work(i):
            probe.gauge("worker_value", i)  # a child's first sample: sent at once
            probe.gauge("worker_value", i + 100)  # buffered until the child ends
            return i

        if __name__ == "__main__":
            ctx = multiprocessing.get_context("fork")
            probe.gauge("parent_value", 1)
            with ctx.Pool(2) as pool:
                print(sum(pool.map(work, range(4))))
                pool.close()
                pool.join()
            child = ctx.Process(target=work, args=(7,))
            child.start()
            child.join()
        """
    )
    assert out.split() == ["6"]
    values = sorted(v for name, _, v in samples if name == "worker_value")
    assert values == [0.0, 1.0, 2.0, 3.0, 7.0, 100.0, 101.0, 102.0, 103.0, 107.0]


def test_full_buffer_is_flushed_by_the_calling_thread() -> None:
    code = """
        import sys
        from perfmon import probe
        for i in range(probe.MAX_BUFFERED + 2):
            probe.count("chunks_total")
        sys.stdin.read()
        """
    # Interval 1 hour: the first sample goes at once, then only the buffer bound can trigger
    # the flush of the next MAX_BUFFERED + 1.
    with _workload(code, interval="3600", stdin=subprocess.PIPE) as (proc, r):
        received = b""
        want = b"#B chunks_total counter 8193\n" + struct.pack("<d", 1.0) * 8193
        while want not in received:
            ready, _, _ = select.select([r], [], [], _DEADLINE_S)
            assert ready, "the full buffer was not flushed"
            received += os.read(r, 65536)
        assert _decode(received) == [("chunks_total", "counter", 1.0)] * 8194
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
        probe.gauge("before_fork", 0)  # the first sample: sent at once
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
        ("before_fork", "gauge", 0.0),
        ("before_fork", "gauge", 1.0),
        ("in_child", "gauge", 2.0),
    ]
    # The parent announced the version before the fork; the child's copy knows it was sent.
    assert data.count(b"# PERFMON 2\n") == 1


def test_broken_pipe_disables_the_probe_quietly() -> None:
    r, w = os.pipe()
    code = textwrap.dedent(
        """
        from perfmon import probe
        assert probe.enabled()
        held = probe.gauge  # a workload may keep a reference to the live emitter
        probe.gauge("event_queue_depth", 1)
        probe.flush()  # EPIPE: the reader is gone
        assert not probe.enabled()
        for i in range(20000):
            probe.gauge("event_queue_depth", i)  # no-ops now, buffer stays bounded
            held("event_queue_depth", i)  # still appends, but drops a full buffer
        assert len(probe._gauges["event_queue_depth"]) <= probe.MAX_BUFFERED + 1
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
