"""The probe: how a workload reports its own metrics to perfmon.

Usage in a workload::

    from perfmon import probe

    probe.gauge("event_queue_depth", len(queue))
    probe.count("chunks_total")
    probe.observe("payload_bytes", len(payload))
    with probe.timer("chunk_seconds"):
        process(chunk)
    probe.value("sdpa_max_abs_diff", diff)

Outside perfmon (``PERFMON_FD`` unset, or naming no open file descriptor at import) every
function is bound, at import time, to a function whose body is ``pass``, so a call costs
about an empty function call and the module imports nothing but ``os``.

Inside perfmon a call validates the metric name the first time it sees it (a bad name raises
``ValueError`` at the call site: it is the workload's bug) and appends the value to an
``array('d')`` kept for that name (a value that is not a number is converted with ``float()``,
so ``"2.5"`` works and ``"abc"`` raises ``ValueError``). Nothing is formatted on that hot path.

The probe runs no thread of its own. The calling thread flushes, inside the call, when the
flush is due: the first emitted sample goes at once, then about every 100 ms
(``PERFMON_FLUSH_INTERVAL`` overrides it, in seconds); it also flushes when one name has more
than ``MAX_BUFFERED`` values, and an ``atexit`` hook flushes at exit. Reading the clock costs
about as much as an emit, so a call compares its buffer's length with a threshold planned from
the emit rate since the last flush and reads the clock only past it: about once per interval at
a steady rate, every call when calls are rarer than the interval, and at most
``CHECK_EVERY_MAX`` samples of one name late when the rate drops suddenly.

A background flusher thread was measured in real py-spy profiles (docs/performance.md): any
Python thread, even one blocked for ever in a C-level lock wait, collects 4-7% of py-spy's
samples of a busy process (15-38% of short quickstart sessions), which a user reads as
perfmon's cost. Without it, every probe frame in a profile
sits under the user's own call and is real cost of that call. The price: a workload that
emits and then computes for a long time without emitting delivers the samples buffered since
the last flush at its next emit or at exit; it may call ``probe.flush()`` before a long quiet
phase. perfmon stamps the samples on receipt, so their times are those of the flush.

A flush writes protocol version 2 (``docs/protocol.md``): the ``# PERFMON 2`` header once,
then one binary frame per metric with values pending, a header line
``#B <name> <kind> <count>`` followed by the values as raw little-endian float64
(``array.tobytes``), all in one ``os.write``, continued after partial writes. Text lines
(``echo "name value" >&$PERFMON_FD`` from a shell) stay valid on the same channel.

After ``os.fork`` the child starts with empty buffers (the parent sends what it had
buffered, the child never sends it twice) and its first sample is flushed at once. Once a
process has forked, parent and child may write to the same pipe, so from then on both write
frames of at most ``PIPE_BUF`` bytes, grouped into writes of at most ``PIPE_BUF`` bytes:
POSIX makes such pipe writes atomic, so frames of the two processes never interleave. A
child that ends with ``os._exit`` skips ``atexit``; when ``multiprocessing`` is loaded the
child also registers a ``multiprocessing.util.Finalize`` hook, which ``multiprocessing``
runs when a worker process ends normally (``Process`` targets, ``Pool`` workers after
``close()``; ``terminate()`` kills workers without it), so those flush their last samples.

If perfmon goes away (``EPIPE``, ``EBADF`` or any other ``OSError`` on write) the probe
disables itself quietly and drops what it buffered: a workload never crashes because its
monitor did. (Python ignores ``SIGPIPE`` by default; a workload that restores the default
handler is killed by the signal instead, as it would be writing to any closed pipe.)

Values that are not finite (NaN, infinities) are sent as they are; the protocol calls them
malformed, so perfmon counts and shows them rather than storing them.

This module uses the standard library only.
"""

from __future__ import annotations

import os
from time import perf_counter

TYPE_CHECKING = False  # typing costs ~10 ms to import; a workload's import must stay cheap
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType
    from typing import Any, TypeVar

    _F = TypeVar("_F", bound=Callable[..., Any])

__all__ = ["count", "enabled", "flush", "gauge", "observe", "timer", "value"]

PROTOCOL_VERSION = 2
"""The probe protocol version this module speaks (docs/protocol.md): binary frames."""

MAX_BUFFERED = 8192
"""Values buffered per metric before the calling thread flushes (64 KiB per metric name)."""

DEFAULT_FLUSH_INTERVAL_S = 0.1
"""Seconds after which the next emitting call flushes; docs/protocol.md: ~100 ms."""

CHECK_EVERY_MAX = 64
"""At most this many samples of one name are appended between two reads of the clock.

Reading ``time.monotonic()`` costs about as much as the rest of an emit (100-200 ns here), so
emitting calls read it only when a buffer grows past a threshold planned from the rate seen
since the last flush (at a steady rate, about every ``CHECK_EVERY_MAX`` samples or once per
interval, whichever is rarer: ~2 ns per sample). This bound caps how late a flush can be when
the rate drops suddenly: at most this many more samples of one name."""

MAX_NAME_LEN = 4000
"""Longest metric name accepted: the protocol drops lines over 4096 bytes, and a frame header
is ``#B``, the name, the kind and the count; a header and one value must also fit in
``PIPE_BUF`` after a fork."""

_PIPE_BUF = 4096
"""Bytes a pipe write is guaranteed atomic up to on Linux (pipe(7)); POSIX requires >= 512."""

_GAUGE = "gauge"
_COUNTER = "counter"
_HISTOGRAM = "histogram"
_VALUE = "value"


class _NoopTimer:
    """What ``timer()`` returns outside perfmon: a context manager and decorator doing nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoopTimer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __call__(self, func: _F) -> _F:
        return func


_NOOP_TIMER = _NoopTimer()


def _noop_gauge(name: str, value: float) -> None:
    pass


def _noop_count(name: str, n: float = 1) -> None:
    pass


def _noop_observe(name: str, value: float) -> None:
    pass


def _noop_value(name: str, value: float) -> None:
    pass


def _noop_timer(name: str) -> _NoopTimer:
    return _NOOP_TIMER


def _noop_flush() -> None:
    pass


def _channel_fd() -> int | None:
    """Return the channel's file descriptor from ``PERFMON_FD``, or None outside perfmon.

    The descriptor must be open at import: a grandchild process that inherited the
    environment but not the descriptor must not write metric lines into whatever file it
    opens later under the same number.
    """
    text = os.environ.get("PERFMON_FD")
    if not text:
        return None
    try:
        fd = int(text)
        os.fstat(fd)
    except (ValueError, OSError):
        return None
    return fd


def _flush_interval() -> float:
    text = os.environ.get("PERFMON_FLUSH_INTERVAL", "")
    try:
        interval = float(text) if text else DEFAULT_FLUSH_INTERVAL_S
    except ValueError:
        return DEFAULT_FLUSH_INTERVAL_S
    return interval if interval > 0 else DEFAULT_FLUSH_INTERVAL_S


_FD = _channel_fd()

if _FD is None:
    gauge = _noop_gauge
    count = _noop_count
    observe = _noop_observe
    value = _noop_value
    timer: Callable[[str], _NoopTimer | _Timer] = _noop_timer
    flush = _noop_flush

    def enabled() -> bool:
        """Return True when the probe sends to perfmon, False when every call is a no-op."""
        return False

else:
    # _thread (documented low-level threads) rather than threading, which pulls in
    # functools, enum and friends, ~5 ms of import. Only its lock is used: no thread.
    import _thread
    import atexit
    import sys
    from array import array
    from time import monotonic as _monotonic

    # Metric names are [a-zA-Z_:][a-zA-Z0-9_:]* (docs/protocol.md, Prometheus' data model);
    # checked with str methods rather than re, which costs ~10 ms of import.
    _NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:")
    _NAME_REST = _NAME_FIRST | frozenset("0123456789")
    _fd: int = _FD
    _interval = _flush_interval()
    _BIG_ENDIAN = sys.byteorder == "big"
    # One array('d') of pending values per metric name and kind: appending a float to an
    # array costs about a dict lookup and a method call, and a flush sends each array as
    # one binary frame with array.tobytes() (about 1 ns per value) instead of formatting
    # floats with repr (0.3-0.5 us each).
    _gauges: dict[str, array[float]] = {}
    _counters: dict[str, array[float]] = {}
    _histograms: dict[str, array[float]] = {}
    _values: dict[str, array[float]] = {}
    _BUFFERS = (_gauges, _counters, _histograms, _values)
    _kinds: dict[str, str] = {}  # name -> kind, filled at the call site (validation cache)
    _heads: dict[str, bytes] = {}  # name -> b"#B name kind ", the start of its frame header
    _lock = _thread.allocate_lock()  # one flush at a time, so frames keep their order
    _header_sent = False
    _forked = False
    _alive = True
    _due = 0.0  # time.monotonic() from which the next emitting call flushes; 0: at once
    _flushed_at = 0.0  # time.monotonic() of the last flush
    _check_at = 0  # an emit that leaves a buffer longer than this reads the clock (_check)
    _step = 0  # samples between clock reads early after a flush (see _check)

    def _register(name: str, kind: str, buffers: dict[str, array[float]]) -> array[float]:
        """Validate a metric name the first time it is used; return its value buffer.

        Raises:
            ValueError: the name does not match ``[a-zA-Z_:][a-zA-Z0-9_:]*``, is longer than
                ``MAX_NAME_LEN``, or was already used with another kind in this process.
        """
        if (
            not isinstance(name, str)
            or not name
            or name[0] not in _NAME_FIRST
            or not _NAME_REST.issuperset(name)
        ):
            raise ValueError(f"invalid metric name {name!r}: must match [a-zA-Z_:][a-zA-Z0-9_:]*")
        if len(name) > MAX_NAME_LEN:
            raise ValueError(f"metric name longer than {MAX_NAME_LEN} characters: {name[:40]}...")
        known = _kinds.get(name)
        if known is not None and known != kind:
            raise ValueError(f"metric {name!r} is a {known}, cannot use it as a {kind}")
        _kinds[name] = kind
        _heads[name] = f"#B {name} {kind} ".encode("ascii")
        return buffers.setdefault(name, array("d"))

    # The four emitters below repeat one body on purpose: this is the probe's hot path (budget:
    # cheaper than prometheus_client's Gauge.set, bench/probe.py), and a shared helper would
    # add a Python call to every emitted sample. The due check is one C call and a compare.
    def _gauge(name: str, value: float) -> None:
        try:
            buf = _gauges[name]
        except KeyError:
            buf = _register(name, _GAUGE, _gauges)
        try:
            buf.append(value)
        except TypeError:  # a str or other non-number: float() converts it or raises
            buf.append(float(value))
        if len(buf) > _check_at:
            _check(buf)

    def _count(name: str, n: float = 1) -> None:
        try:
            buf = _counters[name]
        except KeyError:
            buf = _register(name, _COUNTER, _counters)
        try:
            buf.append(n)
        except TypeError:
            buf.append(float(n))
        if len(buf) > _check_at:
            _check(buf)

    def _observe(name: str, value: float) -> None:
        try:
            buf = _histograms[name]
        except KeyError:
            buf = _register(name, _HISTOGRAM, _histograms)
        try:
            buf.append(value)
        except TypeError:
            buf.append(float(value))
        if len(buf) > _check_at:
            _check(buf)

    def _value(name: str, value: float) -> None:
        try:
            buf = _values[name]
        except KeyError:
            buf = _register(name, _VALUE, _values)
        try:
            buf.append(value)
        except TypeError:
            buf.append(float(value))
        if len(buf) > _check_at:
            _check(buf)

    def _timer(name: str) -> _Timer:
        if name not in _histograms:
            _register(name, _HISTOGRAM, _histograms)
        return _Timer(name)

    def _write_all(data: bytes) -> None:
        """Write ``data`` to the channel, continuing after partial writes."""
        view = memoryview(data)
        start, end = 0, len(data)
        while start < end:
            start += os.write(_fd, view[start:end])

    def _write_units(units: list[bytes]) -> None:
        """Write units (each at most ``_PIPE_BUF`` bytes) in atomic writes of whole units.

        Used once the process has forked: POSIX makes pipe writes of at most ``PIPE_BUF``
        bytes atomic (pipe(7)), so frames of parent and child never interleave.
        """
        chunk: list[bytes] = []
        size = 0
        for unit in units:
            if chunk and size + len(unit) > _PIPE_BUF:
                _write_all(b"".join(chunk))
                chunk, size = [], 0
            chunk.append(unit)
            size += len(unit)
        if chunk:
            _write_all(b"".join(chunk))

    def _take(buf: array[float]) -> bytes:
        """Remove and return the buffered values as little-endian float64 bytes.

        ``tobytes`` and the slice deletion are each one C call under the GIL, so a value
        appended by another thread between them stays in the buffer for the next flush.
        """
        data = buf.tobytes()
        del buf[: len(data) >> 3]
        if _BIG_ENDIAN:
            swapped = array("d")
            swapped.frombytes(data)
            swapped.byteswap()
            data = swapped.tobytes()
        return data

    def _check(buf: array[float]) -> None:
        """Flush if due or ``buf`` is full; else plan when an emit next reads the clock.

        Called by an emit that left ``buf`` longer than ``_check_at``. Once a quarter of the
        interval has passed since the last flush, the number of samples of this name expected
        by the due time is projected from their rate since that flush, and the next check
        comes then, but at most ``CHECK_EVERY_MAX`` samples later. Before that (a burst right
        after a flush says little of the rate that follows it) the gap between checks grows
        geometrically from 0 samples (0, 1, 3, 7, ...): a burst of ``B`` samples then costs
        about ``log2(B)`` clock reads, and the next check comes before ``2 B`` samples.
        """
        global _check_at, _step
        if not _alive:  # perfmon went away; a caller kept a reference to an emitter
            del buf[:]  # drop, so memory stays bounded
            return
        n = len(buf)
        now = _monotonic()
        if now >= _due or n > MAX_BUFFERED:
            _flush()
            return
        elapsed = now - _flushed_at
        if elapsed * 4 < _interval:
            _check_at = min(n + _step, MAX_BUFFERED)
            _step = min(2 * _step + 1, CHECK_EVERY_MAX)
            return
        expected = int(n * _interval / elapsed)
        _check_at = max(n, min(expected - 1, n + CHECK_EVERY_MAX, MAX_BUFFERED))

    def _flush() -> None:
        global _header_sent, _due, _flushed_at, _check_at, _step
        with _lock:
            if not _alive:
                return
            now = _monotonic()
            # Plan the first clock read after this flush from the rate since the last one: the
            # longest buffer's count scaled to one interval (0: check at the next emit). A
            # flush that came late (the rate fell) scales it down in proportion.
            longest = max((len(b) for bs in _BUFFERS for b in bs.values()), default=0)
            if _flushed_at and longest:
                expected = int(longest * _interval / max(now - _flushed_at, 1e-9))
                _check_at = max(0, min(expected - 1, CHECK_EVERY_MAX))
            else:
                _check_at = 0
            _due = now + _interval
            _flushed_at = now
            _step = 0
            parts: list[bytes] = []
            forked = _forked
            for buffers in _BUFFERS:
                if not buffers:
                    continue
                for name, buf in list(buffers.items()):
                    if not buf:
                        continue
                    data = _take(buf)
                    head = _heads[name]
                    if not forked:
                        parts += (head, b"%d\n" % (len(data) >> 3), data)
                        continue
                    # Frames that fit in PIPE_BUF (MAX_NAME_LEN leaves room for one value).
                    per = (_PIPE_BUF - len(head) - 6) >> 3
                    for start in range(0, len(data), per * 8):
                        piece = data[start : start + per * 8]
                        parts.append(head + b"%d\n" % (len(piece) >> 3) + piece)
            if not parts:
                return
            if not _header_sent:
                parts.insert(0, b"# PERFMON %d\n" % PROTOCOL_VERSION)
            try:
                if forked:
                    _write_units(parts)
                else:
                    _write_all(b"".join(parts))
            except OSError:  # EPIPE, EBADF: perfmon went away; never crash the workload
                _disable()
                return
            _header_sent = True

    def _clear() -> None:
        for buffers in _BUFFERS:
            for buf in buffers.values():
                del buf[:]

    def _disable() -> None:
        """Stop sending: rebind the public functions to no-ops and drop the buffers."""
        global _alive, gauge, count, observe, value, timer, flush, _check_at
        _alive = False
        _clear()
        _check_at = MAX_BUFFERED  # emitters still referenced drop their buffer when it is full
        gauge, count, observe, value = _noop_gauge, _noop_count, _noop_observe, _noop_value
        timer, flush = _noop_timer, _noop_flush

    class _MpAnchor:
        """A weak-referenceable object for ``multiprocessing.util.register_after_fork``."""

    _MP_ANCHOR = _MpAnchor()

    def _hook_multiprocessing_child() -> None:
        """Flush when a ``multiprocessing`` child ends normally (it skips ``atexit``).

        A forked ``multiprocessing`` child runs ``Process._bootstrap``, which clears the
        finalizer registry, runs the after-fork hooks (``util.register_after_fork``), runs the
        target, then calls ``util._exit_function()`` (the finalizers with an ``exitpriority``)
        before ``os._exit``. So the fork hook registers an after-fork hook, and that one the
        ``Finalize``. Only done when ``multiprocessing.util`` is already imported: the probe
        never imports it itself.
        """
        util = sys.modules.get("multiprocessing.util")
        register = getattr(util, "register_after_fork", None)
        if register is None:
            return
        try:
            register(_MP_ANCHOR, _register_mp_finalizer)
        except Exception:  # a private hook changed: losing it costs samples, never the workload
            return

    def _register_mp_finalizer(_anchor: object) -> None:
        util = sys.modules.get("multiprocessing.util")
        try:
            util.Finalize(None, _flush_at_exit, exitpriority=0)  # type: ignore[union-attr]
        except Exception:  # see _hook_multiprocessing_child
            return

    def _flush_at_exit() -> None:
        flush()

    def _before_fork() -> None:
        _lock.acquire()  # no flush half-done in the child's copy of this module's state

    def _after_fork_in_parent() -> None:
        global _forked
        _forked = True
        _lock.release()

    def _after_fork_in_child() -> None:
        global _forked, _lock, _due, _flushed_at, _check_at, _step
        _forked = True
        _clear()  # the parent sends what it had buffered
        _lock = _thread.allocate_lock()
        _due, _flushed_at, _check_at, _step = 0.0, 0.0, 0, 0  # the child's first sample: at once
        if _alive:
            _hook_multiprocessing_child()

    gauge = _gauge
    count = _count
    observe = _observe
    value = _value
    timer = _timer
    flush = _flush

    def enabled() -> bool:
        """Return True when the probe sends to perfmon, False when every call is a no-op."""
        return _alive

    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
    atexit.register(_flush_at_exit)


class _Timer:
    """Times a block or a function with ``time.perf_counter`` and observes the seconds.

    Use as ``with probe.timer("chunk_seconds"):`` or as ``@probe.timer("step_seconds")``.
    Each use of the context manager (nested uses too) and each call of a decorated function
    observes one sample into the histogram named at construction.
    """

    __slots__ = ("_name", "_starts")

    def __init__(self, name: str) -> None:
        self._name = name
        self._starts: list[float] = []

    def __enter__(self) -> _Timer:
        self._starts.append(perf_counter())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = perf_counter() - self._starts.pop()
        observe(self._name, elapsed)

    def __call__(self, func: _F) -> _F:
        import functools

        name = self._name

        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                observe(name, perf_counter() - start)

        return timed  # type: ignore[return-value]


_GAUGE_DOC = """Set a gauge: a level that goes up and down.

Args:
    name: metric name, ``[a-zA-Z_:][a-zA-Z0-9_:]*`` with the unit as suffix
        (``event_queue_depth``, ``rss_bytes``).
    value: the level, in the unit the name's suffix gives; converted with ``float()``.

Raises:
    ValueError: the name is invalid or already used with another kind (inside perfmon only).
"""
_COUNT_DOC = """Add ``n`` to a counter (each sample is an increment, docs/protocol.md).

Args:
    name: metric name, conventionally ending in ``_total`` (``chunks_total``).
    n: the increment, converted with ``float()``.

Raises:
    ValueError: the name is invalid or already used with another kind (inside perfmon only).
"""
_OBSERVE_DOC = """Observe a value into a histogram (timings, sizes).

Args:
    name: metric name with the unit as suffix (``payload_bytes``, ``chunk_seconds``).
    value: the observation, converted with ``float()``.

Raises:
    ValueError: the name is invalid or already used with another kind (inside perfmon only).
"""
_VALUE_DOC = """Report a one-off result of the session (kind ``value``), e.g. a parity diff.

Args:
    name: metric name (``sdpa_max_abs_diff``).
    value: the result, converted with ``float()``.

Raises:
    ValueError: the name is invalid or already used with another kind (inside perfmon only).
"""
_TIMER_DOC = """Time a block (``with``) or every call of a function (decorator).

Elapsed seconds are measured with ``time.perf_counter`` and observed into the histogram
``name``, which should end in ``_seconds``.

Args:
    name: histogram name, e.g. ``"chunk_seconds"``.

Returns:
    A context manager that is also a decorator.

Raises:
    ValueError: the name is invalid or already used with another kind (inside perfmon only).
"""
_FLUSH_DOC = """Send everything buffered now.

Emitting calls flush by themselves when 100 ms have passed since the last flush, and an
``atexit`` hook flushes at exit; call this before a long phase that emits nothing, so that the
samples buffered before it reach perfmon now rather than at the next emit.
"""


def _set_docs() -> None:
    pairs: tuple[tuple[str, str], ...] = (
        ("gauge", _GAUGE_DOC),
        ("count", _COUNT_DOC),
        ("observe", _OBSERVE_DOC),
        ("value", _VALUE_DOC),
        ("timer", _TIMER_DOC),
        ("flush", _FLUSH_DOC),
    )
    for public, doc in pairs:
        for prefix in ("_noop_", "_"):
            func = globals().get(prefix + public)
            if func is not None:
                func.__doc__ = doc


_set_docs()
