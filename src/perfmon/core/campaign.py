"""Campaign files: TOML into typed objects, with errors that name file, line and key.

The types come first; the parser (``load_campaign``, ``parse_campaign``) follows them, with the
file format described in a comment above it. ``load_campaign`` is the one function in
``perfmon.core`` that reads a file (the campaign itself); ``parse_campaign`` is pure.
"""

from __future__ import annotations

import math
import os
import re
import stat
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfmon.core.noise import ON_NOISY, NoiseGuard, parse_share
from perfmon.core.stats import (
    BOOTSTRAP_METHODS,
    INFERENCES,
    INTERVALS,
    MIN_SESSIONS_FLOOR,
    TESTS,
    StatsOptions,
)
from perfmon.core.units import format_seconds, parse_duration, parse_size

if TYPE_CHECKING:
    from perfmon.core.gates import Gate


class CampaignError(Exception):
    """A campaign file that cannot be used.

    Attributes:
        file: path of the campaign file as given.
        line: 1-based line of the offending key or value, or None when it cannot be found.
        key: dotted key path such as ``"workload[0].timeout"`` or ``"gate[2].expr"``.
        message: what is wrong, in one sentence.

    ``str(error)`` is ``"FILE:LINE: KEY: MESSAGE"`` (line omitted when unknown), the form
    compilers use so that editors can jump to it.
    """

    def __init__(self, file: str, line: int | None, key: str, message: str) -> None:
        self.file = file
        self.line = line
        self.key = key
        self.message = message
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    """A command that does real work.

    Attributes:
        name: unique workload name.
        command: argv list; ``{python}`` is replaced by the interpreter running perfmon,
            ``{campaign_dir}`` by the campaign file's directory, ``{NAME}`` by matrix values.
        env: environment variables added for every session of this workload.
        cwd: working directory; relative paths are resolved against the campaign's directory.
        timeout_s: wall-clock limit per session in seconds; None when the file gives none (the
            campaign's ``timeout`` then applies, default ``DEFAULT_TIMEOUT_S``); 0 for no limit
            (``timeout = "none"`` or ``0``).
        matrix: parameter name -> values (as strings); sessions are run for every combination.
        shell: True only when the campaign asks for a shell explicitly (``command`` is then a
            single string run by ``/bin/sh -c``).
    """

    name: str
    command: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    timeout_s: float | None = None
    matrix: dict[str, tuple[str, ...]] = field(default_factory=dict)
    shell: bool = False
    idle_timeout_s: float | None = None
    """No output, no probe sample and no CPU for this long ends a session with status
    ``idle_timeout``; None: the campaign's ``idle_timeout`` (default: none); 0: none."""
    metrics: tuple[str, ...] = ()
    """Metric names the workload declares it emits (``metrics = [...]``), so that
    ``perfmon validate`` can warn of gates on metrics nothing produces."""
    # Result tables (issue 15): units of work and the worker-count matrix key.
    units: str | None = None
    """What one unit of work is called (``units = "backtests"``): throughput tables print
    units per second; None: sessions per second, from ``session_seconds``."""
    units_metric: str | None = None
    """The metric holding each session's count of units of work (``units_metric``)."""
    workers_key: str | None = None
    """The matrix key that counts workers (``workers_key``; default ``workers`` when the
    matrix has it): result tables print efficiency = speedup / workers."""


@dataclass(frozen=True, slots=True)
class VariantConfig:
    """One configuration of every workload, e.g. ``baseline`` and ``candidate``.

    Attributes:
        name: variant name.
        env: environment variables added on top of the workload's.
        args: extra arguments appended to the workload's command.
    """

    name: str
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SetConfig:
    """A schedule of sessions.

    Attributes:
        name: set name (``golden``, ``canary``, ...).
        sessions: measured sessions per workload, variant and matrix combination.
        duration_s: alternatively, keep scheduling rounds until this many seconds have passed.
        warmup: warm-up sessions per workload/variant/matrix combination, run first and
            excluded from statistics.
        order: ``"interleaved"`` (A B A B ...), ``"blocked"`` (A A ... B B ...) or
            ``"random"`` (each round in a random order drawn from ``seed``).
        seed: the seed of a random order (default 0), so a run can be repeated.
        noise: this set's noise guard when it sets one of ``max_background_cpu``,
            ``on_noisy``, ``noisy_retries`` (the others inherited from ``[campaign]``), else
            None (the campaign's guard applies).
        stop_when: ``"planned"`` (default: run every planned session) or ``"decided"``: end
            the set as soon as every gate on it is decided (pass or fail, from the anytime-valid
            sequences; ``perfmon.core.schedule.set_decided``); the report says what it saved.
    """

    name: str
    sessions: int | None = None
    duration_s: float | None = None
    warmup: int = 0
    order: str = "interleaved"
    seed: int = 0
    noise: NoiseGuard | None = None
    stop_when: str = "planned"


@dataclass(frozen=True, slots=True)
class GateConfig:
    """A named release check.

    Attributes:
        name: gate name shown on the board.
        expr: the expression as written in the campaign.
        gate: the parsed expression.
        window_s: evaluate over the last ``window_s`` seconds only (None: the whole run).
    """

    name: str
    expr: str
    gate: Gate
    window_s: float | None = None
    by: tuple[str, ...] = ()
    """Label names the gate is judged by, one group per value (``by = ["events"]``)."""


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    """When and how sessions are sampled with py-spy (the ``[profile]`` table).

    Attributes:
        every: profile every k-th session of each (workload, variant) (1 profiles all), or None.
        duty_on_s / duty_period_s: a duty cycle, ``duty = "10s/5min"``: sample whatever session
            is running for ``duty_on_s`` every ``duty_period_s`` seconds; None when not set.
        rate_hz: py-spy's sampling rate, samples per second (default 100, py-spy's default).
        nonblocking: use py-spy's ``--nonblocking`` (do not pause the process while reading
            its stacks: less overhead, possibly inaccurate stacks; py-spy docs).
        duration_s: how long a scheduled ``every`` profile samples; None: the whole session.
        subprocesses: also sample the session's Python subprocesses (``--subprocesses``).
    """

    every: int | None = None
    duty_on_s: float | None = None
    duty_period_s: float | None = None
    rate_hz: int = 100
    nonblocking: bool = False
    duration_s: float | None = None
    subprocesses: bool = True


@dataclass(frozen=True, slots=True)
class Campaign:
    """A parsed campaign file.

    Attributes:
        name: campaign name (used in the run directory's name).
        path: the campaign file (absolute).
        workloads / variants / sets / gates: in file order.
        sample_interval_s: psutil sampling interval, seconds (default 0.25).
        grace_s: seconds between SIGTERM and SIGKILL when a session is ended (default 5).
        log_cap_bytes: cap on each session's stdout and stderr log files (default 10 MB).
        runs_dir: where run directories are created (default ``runs`` beside the campaign).
        stats: how statistical gates and comparisons are computed (``confidence``, ``test``,
            ``bootstrap_resamples``, ``bootstrap_seed``, ``bootstrap_method``,
            ``min_sessions``, ``interval`` in ``[campaign]``).
        noise: the noise guard (``max_background_cpu``, ``on_noisy``, ``noisy_retries`` in
            ``[campaign]``; see ``perfmon.core.noise``).
        timeout_s: wall-clock limit of a session whose workload sets no ``timeout``, seconds
            (``[campaign] timeout``, default ``DEFAULT_TIMEOUT_S`` = 1 h; 0: no limit).
        idle_timeout_s: idle limit of a session whose workload sets no ``idle_timeout``,
            seconds (``[campaign] idle_timeout``, default 0: none).
        max_metrics: most distinct metric names one run keeps (``max_metrics``, default 1000);
            samples of further names are counted, not kept (``perfmon.core.live.NameCap``).
        max_metric_name_bytes: longest metric name kept, in bytes (``max_metric_name_bytes``,
            default 200); samples of longer names are counted, not kept.
        share: ``"private"`` (run directories 0700, files 0600; the default) or ``"group"``
            (0750 / 0640: readable by the owner's group) -- the ``share`` key.
    """

    name: str
    path: Path
    workloads: tuple[WorkloadConfig, ...]
    variants: tuple[VariantConfig, ...]
    sets: tuple[SetConfig, ...]
    gates: tuple[GateConfig, ...]
    sample_interval_s: float = 0.25
    grace_s: float = 5.0
    log_cap_bytes: int = 10_000_000
    runs_dir: Path | None = None
    stats: StatsOptions = field(default_factory=StatsOptions)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    noise: NoiseGuard = field(default_factory=NoiseGuard)
    timeout_s: float = 3600.0
    idle_timeout_s: float = 0.0
    # Caps on what a workload may emit, and who may read the run directory (issue 13).
    max_metrics: int = 1000
    max_metric_name_bytes: int = 200
    share: str = "private"
    # Directions and validation warnings (issue 11).
    directions: dict[str, str] = field(default_factory=dict)
    """Metric name -> ``"lower"`` or ``"higher"``: the ``[metric.NAME] better`` tables."""
    # Result tables (issue 15).
    reference: str = "first"
    """The reference variant of comparisons (``[campaign] reference``): ``"first"`` (the
    default: every variant against the first), ``"previous"`` (cumulative layers: each variant
    against the one before it, in campaign order) or a variant's name."""
    warnings: tuple[str, ...] = ()
    """Problems that do not stop a run but may leave it undecided, each ``FILE:LINE: KEY:
    MESSAGE`` (``perfmon validate`` prints them)."""
    # Where sessions run: the local supervisor or a Ray cluster (issue 16).
    executor: ExecutorSettings = field(default_factory=lambda: ExecutorSettings())

    @property
    def directory(self) -> Path:
        """The directory holding the campaign file."""
        return self.path.parent

    def noise_guard(self, set_name: str) -> NoiseGuard:
        """The noise guard of a set: its own if it sets one, else the campaign's."""
        for s in self.sets:
            if s.name == set_name and s.noise is not None:
                return s.noise
        return self.noise


# --- the parser -------------------------------------------------------------------------------
#
# The format (TOML, parsed with the standard library's tomllib):
#
#   [campaign]   name (required, [A-Za-z0-9._-]+), sample_interval, grace, log_cap, runs_dir,
#                confidence, test, bootstrap_resamples, bootstrap_seed, bootstrap_method,
#                min_sessions, interval,
#                max_background_cpu ("10%"), on_noisy ("mark" | "repeat"), noisy_retries,
#                timeout, idle_timeout (defaults for every workload; "none" or 0: no limit)
#   [[workload]] name, command (required); env, cwd, timeout, idle_timeout, matrix, shell,
#                metrics (the metric names it emits, for validate's warnings)
#   [variant.NAME]  env, args            (none: one variant named "default")
#   [set.NAME]      sessions | duration (exactly one), warmup, order, seed,
#                   max_background_cpu, on_noisy, noisy_retries (override [campaign]'s)
#                   (none: one set "default" with sessions = 1)
#   [[gate]]     name, expr (required); window, by (label names: judged per group)
#   [metric.NAME]   better = "lower" | "higher" (the metric's direction, when its name's
#                   unit suffix does not say)
#   [profile]    every, duty ("10s/5min"), rate, nonblocking, duration, subprocesses
#
# Key paths in errors: "campaign.name", "workload[0].timeout", "variant.baseline.env",
# "set.golden.sessions", "gate[1].expr" (array indices count from 0).

NAME_RE = re.compile(r"[A-Za-z0-9._-]+\Z")
"""Valid campaign, workload, variant and set names."""
MAX_NAME_CHARS = 200
"""Longest campaign, workload, variant or set name (it names run directories and rows)."""

PLACEHOLDERS = ("python", "campaign_dir")
"""Placeholders every command may use besides its matrix keys."""

_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MATRIX_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TOML_POS_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*\Z")
_TOML_END_RE = re.compile(r"\s*\(at end of document\)\s*\Z")
_ORDERS = ("interleaved", "blocked", "random")

_CAMPAIGN_KEYS = (
    "name",
    "sample_interval",
    "grace",
    "log_cap",
    "runs_dir",
    "confidence",
    "test",
    "bootstrap_resamples",
    "bootstrap_seed",
    "bootstrap_method",
    "max_background_cpu",
    "on_noisy",
    "noisy_retries",
    "timeout",
    "idle_timeout",
    "min_sessions",
    "interval",
    "inference",
    "reference",
)
_WORKLOAD_KEYS = (
    "name",
    "command",
    "env",
    "cwd",
    "timeout",
    "matrix",
    "shell",
    "idle_timeout",
    "metrics",
    "units",
    "units_metric",
    "workers_key",
)
DEFAULT_TIMEOUT_S = 3600.0
"""Wall-clock limit of a session when neither its workload nor the campaign sets one (1 h: far
above a benchmark session, short enough that a hung one does not stall a soak for days; a
72-hour soak is many sessions, each under this limit). ``timeout = "none"`` lifts it."""
_NO_LIMIT = ("none", "off", "never")
# Caps and sharing (issue 13), in their own block so other keys merge cleanly above.
_CAP_KEYS = ("max_metrics", "max_metric_name_bytes", "share")
SHARE_MODES = ("private", "group")
"""Values of ``[campaign] share``: who may read a run directory besides its owner."""
MAX_CAMPAIGN_BYTES = 1 << 20
"""Largest campaign file read (1 MiB): a campaign is a page of TOML, never data."""
MAX_MATRIX_COMBINATIONS = 100_000
"""Most matrix combinations one workload may have (the product of its matrix lists)."""

_VARIANT_KEYS = ("env", "args")
_NOISE_KEYS = ("max_background_cpu", "on_noisy", "noisy_retries")
_SET_KEYS = ("sessions", "duration", "warmup", "order", "seed", *_NOISE_KEYS, "stop_when")
STOP_WHEN = ("planned", "decided")
"""Values of a set's ``stop_when`` (``SetConfig.stop_when``)."""
_GATE_KEYS = ("name", "expr", "window", "by")
_PROFILE_KEYS = ("every", "duty", "rate", "nonblocking", "duration", "subprocesses")
_TOP_KEYS = ("campaign", "workload", "variant", "set", "gate", "profile", "metric", "executor")

Section = tuple[str | int, ...]


def _toml_type(value: object) -> str:
    """The TOML name of a parsed value's type."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__  # datetime, date, time


def _key_path(section: Section, key: str | None) -> str:
    text = ""
    for part in section:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    if key:
        text = f"{text}.{key}" if text else key
    return text


_HEADER_RE = re.compile(r"\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*(\]\]?)\s*(?:#.*)?\Z")
_ASSIGN_RE = re.compile(r"\s*([A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')\s*(?:\.[^=]*)?=")


def _split_dotted(text: str) -> tuple[str, ...]:
    return tuple(p.strip().strip("\"'") for p in text.split("."))


class _Locator:
    """Finds the line of a key in TOML source text (tomllib gives no positions); best effort.

    Tables are tracked by their headers: ``[[workload]]`` headers are counted, so the third
    one is section ``("workload", 2)``; ``[variant.baseline]`` is ``("variant", "baseline")``.
    Within a section the first line assigning a key (``key =``) is recorded.
    """

    def __init__(self, text: str) -> None:
        self.headers: dict[Section, int] = {}
        self.assigns: dict[tuple[Section, str], int] = {}
        counts: dict[tuple[str, ...], int] = {}
        current: Section = ()
        for lineno, line in enumerate(text.splitlines(), start=1):
            m = _HEADER_RE.match(line)
            if m and len(m.group(1)) == len(m.group(3)):
                parts = _split_dotted(m.group(2))
                if m.group(1) == "[[":
                    index = counts.get(parts, 0)
                    counts[parts] = index + 1
                    current = (*parts, index)
                else:
                    current = parts
                self.headers.setdefault(current, lineno)
                continue
            a = _ASSIGN_RE.match(line)
            if a:
                self.assigns.setdefault((current, a.group(1).strip("\"'")), lineno)

    def line(self, section: Section, key: str | None) -> int | None:
        """The line of ``key`` in ``section`` (or of the section's header), or None."""
        while True:
            if key is not None:
                if (section, key) in self.assigns:
                    return self.assigns[(section, key)]
                if (*section, key) in self.headers:
                    return self.headers[(*section, key)]
            if section in self.headers:
                return self.headers[section]
            if not section:
                return None
            # A table written inline, e.g. ``baseline = { env = ... }`` under ``[variant]``.
            last = section[-1]
            section, key = section[:-1], (last if isinstance(last, str) else None)


class _Context:
    """Error reporting for one campaign file."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.locator = _Locator(text)

    def error(self, section: Section, key: str | None, message: str) -> CampaignError:
        first = key.split(".")[0].split("[")[0] if key else None
        return CampaignError(
            self.file, self.locator.line(section, first), _key_path(section, key), message
        )

    def table(self, section: Section, key: str | None, value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(section, key, f"expected a table, got {_toml_type(value)}")
        return value

    def keys(
        self,
        section: Section,
        table: dict[str, Any],
        allowed: tuple[str, ...],
        required: tuple[str, ...] = (),
    ) -> None:
        for key in table:
            if key not in allowed:
                raise self.error(
                    section, key, f"unknown key {key!r} (allowed: {', '.join(allowed)})"
                )
        for key in required:
            if key not in table:
                raise self.error(section, None, f"missing required key {key!r}")

    def string(self, section: Section, key: str, value: object) -> str:
        if not isinstance(value, str):
            raise self.error(section, key, f"expected a string, got {_toml_type(value)}")
        return value

    def name(self, section: Section, key: str, value: object) -> str:
        text = self.string(section, key, value)
        if len(text) > MAX_NAME_CHARS:
            raise self.error(
                section, key, f"name of {len(text):,} characters; the limit is {MAX_NAME_CHARS}"
            )
        if not NAME_RE.match(text):
            raise self.error(
                section, key, f"invalid name {text!r} (use letters, digits, '.', '_' and '-')"
            )
        return text

    def integer(self, section: Section, key: str, value: object, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(section, key, f"expected an integer, got {_toml_type(value)}")
        if value < minimum:
            raise self.error(section, key, f"must be >= {minimum}, got {value}")
        return value

    def boolean(self, section: Section, key: str, value: object) -> bool:
        if not isinstance(value, bool):
            raise self.error(section, key, f"expected a boolean, got {_toml_type(value)}")
        return value

    def duration(self, section: Section, key: str, value: object, *, positive: bool) -> float:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(
                section,
                key,
                f'expected a duration such as "120s" or a number of seconds, '
                f"got {_toml_type(value)}",
            )
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.error(section, key, f"bad duration: {exc}") from None
        except OverflowError:  # an integer beyond a float's range
            raise self.error(section, key, f"duration is too large: {value!r}") from None
        if math.isinf(seconds) or (positive and seconds <= 0):
            raise self.error(section, key, f"duration must be > 0, got {value!r}")
        return seconds

    def size(self, section: Section, key: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.error(
                section,
                key,
                f'expected a size such as "10MB" or a number of bytes, got {_toml_type(value)}',
            )
        try:
            size = parse_size(value)
        except ValueError as exc:
            raise self.error(section, key, f"bad size: {exc}") from None
        except OverflowError:  # "1e400GB" is infinite
            raise self.error(section, key, f"size is too large: {value!r}") from None
        if size <= 0:
            raise self.error(section, key, f"size must be > 0, got {value!r}")
        return size

    def scalar_text(self, section: Section, key: str, value: object) -> str:
        """A string, or a number/boolean written as TOML spells it."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        raise self.error(section, key, f"expected a string or a number, got {_toml_type(value)}")

    def env(self, section: Section, key: str, value: object) -> dict[str, str]:
        table = self.table(section, key, value)
        env: dict[str, str] = {}
        for name, val in table.items():
            if not _ENV_NAME_RE.match(name):
                raise self.error(section, f"{key}.{name}", "invalid environment variable name")
            if isinstance(val, bool) or not isinstance(val, str | int | float):
                raise self.error(
                    section,
                    f"{key}.{name}",
                    f"expected a string or a number, got {_toml_type(val)}",
                )
            env[name] = str(val)
        return env

    def strings(self, section: Section, key: str, value: object) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.error(section, key, f"expected an array of strings, got {_toml_type(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(
                    section, f"{key}[{i}]", f"expected a string, got {_toml_type(item)}"
                )
        return tuple(value)


def load_campaign(path: str | Path) -> Campaign:
    """Read and parse a campaign file.

    Only a regular file of at most ``MAX_CAMPAIGN_BYTES`` is read, so ``/dev/zero``, a FIFO
    or a multi-gigabyte file is refused with one line instead of exhausting memory.

    Args:
        path: the campaign file (TOML, UTF-8).

    Returns:
        The campaign, with ``path`` made absolute.

    Raises:
        CampaignError: if the file cannot be read, is not a regular file, is larger than
            ``MAX_CAMPAIGN_BYTES``, is not UTF-8, or is not a valid campaign.
    """
    file = str(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise CampaignError(file, None, "", f"cannot read campaign file: {exc.strerror}") from None
    except ValueError as exc:  # an embedded NUL in the path
        raise CampaignError(file, None, "", f"cannot read campaign file: {exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise CampaignError(file, None, "", f"cannot read campaign file: {kind}")
        if st.st_size > MAX_CAMPAIGN_BYTES:
            raise CampaignError(
                file,
                None,
                "",
                f"campaign file is {st.st_size:,} bytes; the limit is {MAX_CAMPAIGN_BYTES:,}",
            )
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_CAMPAIGN_BYTES + 1)
    except OSError as exc:
        raise CampaignError(file, None, "", f"cannot read campaign file: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CAMPAIGN_BYTES:  # grew while being read
        raise CampaignError(
            file, None, "", f"campaign file is larger than {MAX_CAMPAIGN_BYTES:,} bytes"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CampaignError(file, line, "", f"not UTF-8 text: {exc.reason}") from None
    return parse_campaign(text, Path(path))


def parse_campaign(text: str, path: Path) -> Campaign:
    """Parse a campaign from its TOML text.

    Args:
        text: the file's content.
        path: where it came from; relative paths in the campaign (``cwd``, ``runs_dir``) are
            resolved against its directory, and errors name it as given.

    Returns:
        The campaign. Without ``[variant.*]`` tables it has one variant ``"default"``; without
        ``[set.*]`` tables one set ``"default"`` of one session. ``runs_dir`` defaults to
        ``runs`` beside the campaign file.

    Raises:
        CampaignError: naming file, line (best effort) and key of the first problem found.
    """
    try:
        return _parse_campaign(text, path)
    except RecursionError:
        # tomllib and the gate parser are recursive: thousands of nested arrays, inline
        # tables or parentheses exhaust the interpreter's stack.
        raise CampaignError(
            str(path), None, "", "nested too deeply (arrays, tables or parentheses)"
        ) from None


def _parse_campaign(text: str, path: Path) -> Campaign:
    ctx = _Context(str(path), text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line: int | None = None
        m = _TOML_POS_RE.search(message)
        if m:
            line = int(m.group(1))
            message = f"{message[: m.start()]} (column {m.group(2)})"
        elif _TOML_END_RE.search(message):
            line = max(1, len(text.splitlines()))
            message = f"{_TOML_END_RE.sub('', message)} (at end of file)"
        raise CampaignError(str(path), line, "", f"TOML syntax error: {message}") from None

    abs_path = path if path.is_absolute() else Path.cwd() / path
    directory = abs_path.parent
    ctx.keys((), data, _TOP_KEYS, required=("campaign",))

    # [campaign]
    sec: Section = ("campaign",)
    camp = ctx.table((), "campaign", data["campaign"])
    ctx.keys(sec, camp, (*_CAMPAIGN_KEYS, *_CAP_KEYS), required=("name",))
    name = ctx.name(sec, "name", camp["name"])
    extra: dict[str, Any] = {}
    if "sample_interval" in camp:
        extra["sample_interval_s"] = ctx.duration(
            sec, "sample_interval", camp["sample_interval"], positive=True
        )
    if "grace" in camp:
        extra["grace_s"] = ctx.duration(sec, "grace", camp["grace"], positive=False)
    if "log_cap" in camp:
        extra["log_cap_bytes"] = ctx.size(sec, "log_cap", camp["log_cap"])
    if "timeout" in camp:
        extra["timeout_s"] = _limit(ctx, sec, "timeout", camp["timeout"])
    if "idle_timeout" in camp:
        extra["idle_timeout_s"] = _limit(ctx, sec, "idle_timeout", camp["idle_timeout"])
    extra.update(_parse_caps(ctx, sec, camp))
    runs_dir = directory / "runs"
    if "runs_dir" in camp:
        runs_dir = directory / ctx.string(sec, "runs_dir", camp["runs_dir"])

    stats = _parse_stats(ctx, sec, camp)
    if stats != StatsOptions():
        extra["stats"] = stats
    noise = _parse_noise(ctx, sec, camp, NoiseGuard())
    if noise != NoiseGuard():
        extra["noise"] = noise
    workloads = _parse_workloads(ctx, data, directory)
    variants = _parse_variants(ctx, data)
    sets = _parse_sets(ctx, data, noise)
    directions = _parse_metrics(ctx, data)
    if directions:
        extra["directions"] = directions
    gates = _parse_gates(ctx, data, stats, directions)
    if "reference" in camp:
        extra["reference"] = _parse_reference(ctx, sec, camp["reference"], variants)
    if "profile" in data:
        extra["profile"] = _parse_profile(ctx, data)
    if "executor" in data:
        extra["executor"] = _parse_executor(ctx, data, workloads, variants)
    campaign = Campaign(
        name=name,
        path=abs_path,
        workloads=workloads,
        variants=variants,
        sets=sets,
        gates=gates,
        runs_dir=runs_dir,
        **extra,
    )
    from dataclasses import replace

    warnings = check_campaign(ctx, campaign)
    return replace(campaign, warnings=tuple(warnings)) if warnings else campaign


def _parse_caps(ctx: _Context, sec: Section, camp: dict[str, Any]) -> dict[str, Any]:
    """The ``[campaign]`` keys bounding what a workload may emit, and ``share``."""
    out: dict[str, Any] = {}
    if "max_metrics" in camp:
        n = ctx.integer(sec, "max_metrics", camp["max_metrics"], 1)
        if n > 1_000_000:
            raise ctx.error(sec, "max_metrics", f"must be <= 1000000, got {n}")
        out["max_metrics"] = n
    if "max_metric_name_bytes" in camp:
        n = ctx.integer(sec, "max_metric_name_bytes", camp["max_metric_name_bytes"], 1)
        if n > 4096:
            raise ctx.error(
                sec, "max_metric_name_bytes", f"must be <= 4096 (a protocol line), got {n}"
            )
        out["max_metric_name_bytes"] = n
    if "share" in camp:
        share = ctx.string(sec, "share", camp["share"])
        if share not in SHARE_MODES:
            raise ctx.error(
                sec, "share", f"unknown share {share!r} (use {' or '.join(SHARE_MODES)})"
            )
        out["share"] = share
    return out


def _array_of_tables(ctx: _Context, data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ctx.error(
            (), key, f"expected an array of tables ([[{key}]]), got {_toml_type(value)}"
        )
    for i, item in enumerate(value):
        ctx.table((key, i), None, item)
    return value


def _parse_workloads(
    ctx: _Context, data: dict[str, Any], directory: Path
) -> tuple[WorkloadConfig, ...]:
    tables = _array_of_tables(ctx, data, "workload")
    if not tables:
        raise ctx.error((), "workload", "a campaign needs at least one [[workload]]")
    seen: dict[str, int] = {}
    result: list[WorkloadConfig] = []
    for i, w in enumerate(tables):
        sec: Section = ("workload", i)
        ctx.keys(sec, w, _WORKLOAD_KEYS, required=("name", "command"))
        name = ctx.name(sec, "name", w["name"])
        if name in seen:
            raise ctx.error(
                sec, "name", f"duplicate workload name {name!r} (also workload[{seen[name]}])"
            )
        seen[name] = i
        shell = ctx.boolean(sec, "shell", w["shell"]) if "shell" in w else False
        raw = w["command"]
        command: tuple[str, ...]
        if shell:
            if not isinstance(raw, str):
                raise ctx.error(
                    sec,
                    "command",
                    f"with shell = true, command must be a single string, got {_toml_type(raw)}",
                )
            if not raw.strip():
                raise ctx.error(sec, "command", "command is empty")
            command = (raw,)
        else:
            if isinstance(raw, str):
                raise ctx.error(
                    sec,
                    "command",
                    "expected an array of strings (argv); set shell = true to run a string "
                    "with /bin/sh",
                )
            command = ctx.strings(sec, "command", raw)
            if not command or not command[0]:
                raise ctx.error(sec, "command", "command is empty")
        matrix: dict[str, tuple[str, ...]] = {}
        if "matrix" in w:
            for key, values in ctx.table(sec, "matrix", w["matrix"]).items():
                if not _MATRIX_KEY_RE.match(key) or key in PLACEHOLDERS:
                    raise ctx.error(
                        sec,
                        f"matrix.{key}",
                        f"invalid matrix key {key!r} (an identifier other than "
                        f"{' and '.join(PLACEHOLDERS)})",
                    )
                if not isinstance(values, list) or not values:
                    raise ctx.error(
                        sec,
                        f"matrix.{key}",
                        "expected a non-empty array of values, got "
                        + ("an empty array" if isinstance(values, list) else _toml_type(values)),
                    )
                matrix[key] = tuple(
                    ctx.scalar_text(sec, f"matrix.{key}[{j}]", v) for j, v in enumerate(values)
                )
        combos = math.prod(len(v) for v in matrix.values())
        if combos > MAX_MATRIX_COMBINATIONS:
            raise ctx.error(
                sec,
                "matrix",
                f"{combos:,} matrix combinations; the limit is {MAX_MATRIX_COMBINATIONS:,}",
            )
        known = (*PLACEHOLDERS, *matrix)
        for j, arg in enumerate(command):
            for m in _PLACEHOLDER_RE.finditer(arg):
                if m.group(1) not in known:
                    raise ctx.error(
                        sec,
                        f"command[{j}]" if not shell else "command",
                        f"unknown placeholder {{{m.group(1)}}} (known: "
                        + ", ".join(f"{{{k}}}" for k in known)
                        + ")",
                    )
        env = ctx.env(sec, "env", w["env"]) if "env" in w else {}
        cwd = directory / ctx.string(sec, "cwd", w["cwd"]) if "cwd" in w else None
        timeout = _limit(ctx, sec, "timeout", w["timeout"]) if "timeout" in w else None
        idle = _limit(ctx, sec, "idle_timeout", w["idle_timeout"]) if "idle_timeout" in w else None
        declared = ctx.strings(sec, "metrics", w["metrics"]) if "metrics" in w else ()
        declared_tables = _parse_workload_tables(ctx, sec, w, matrix)
        result.append(
            WorkloadConfig(
                name, command, env, cwd, timeout, matrix, shell, idle, declared, **declared_tables
            )
        )
    return tuple(result)


def _parse_workload_tables(
    ctx: _Context, sec: Section, w: dict[str, Any], matrix: dict[str, tuple[str, ...]]
) -> dict[str, Any]:
    """A workload's ``units``, ``units_metric`` and ``workers_key`` (issue 15)."""
    out: dict[str, Any] = {}
    if "units" in w:
        out["units"] = ctx.string(sec, "units", w["units"])
    if "units_metric" in w:
        out["units_metric"] = ctx.string(sec, "units_metric", w["units_metric"])
        if "units" not in w:
            raise ctx.error(sec, "units_metric", 'units_metric needs units (e.g. "backtests")')
    if "workers_key" in w:
        key = ctx.string(sec, "workers_key", w["workers_key"])
        if key not in matrix:
            raise ctx.error(
                sec, "workers_key", f"{key!r} is not a matrix key (known: {', '.join(matrix)})"
            )
        out["workers_key"] = key
    return out


def _parse_reference(
    ctx: _Context, sec: Section, value: object, variants: tuple[VariantConfig, ...]
) -> str:
    """``[campaign] reference``: ``"first"``, ``"previous"`` or a variant's name (issue 15)."""
    ref = ctx.string(sec, "reference", value)
    names = [v.name for v in variants]
    if ref not in ("first", "previous") and ref not in names:
        raise ctx.error(
            sec,
            "reference",
            f'unknown reference {ref!r}: expected "first", "previous" or a variant '
            f"({', '.join(names) or 'none declared'})",
        )
    return ref


def _limit(ctx: _Context, sec: Section, key: str, value: object) -> float:
    """A session time limit: a positive duration, or ``"none"``/``"off"``/``0`` (returns 0)."""
    if isinstance(value, str) and value.strip().lower() in _NO_LIMIT:
        return 0.0
    if not isinstance(value, bool) and isinstance(value, int | float) and value == 0:
        return 0.0
    if isinstance(value, str) and value.strip() in ("0", "0s"):
        return 0.0
    return ctx.duration(sec, key, value, positive=True)


def _named_tables(ctx: _Context, data: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    tables = ctx.table((), key, data.get(key, {}))
    for name, value in tables.items():
        ctx.table((key,), name, value)
        if len(name) > MAX_NAME_CHARS:
            raise ctx.error(
                (key,),
                name[:40],
                f"name of {len(name):,} characters; the limit is {MAX_NAME_CHARS}",
            )
        if not NAME_RE.match(name):
            raise ctx.error(
                (key,), name, f"invalid name {name!r} (use letters, digits, '.', '_' and '-')"
            )
    return tables


def _parse_variants(ctx: _Context, data: dict[str, Any]) -> tuple[VariantConfig, ...]:
    tables = _named_tables(ctx, data, "variant")
    if not tables:
        return (VariantConfig("default"),)
    result = []
    for name, v in tables.items():
        sec: Section = ("variant", name)
        ctx.keys(sec, v, _VARIANT_KEYS)
        env = ctx.env(sec, "env", v["env"]) if "env" in v else {}
        args = ctx.strings(sec, "args", v["args"]) if "args" in v else ()
        result.append(VariantConfig(name, env, args))
    return tuple(result)


def _parse_sets(
    ctx: _Context, data: dict[str, Any], noise: NoiseGuard | None = None
) -> tuple[SetConfig, ...]:
    tables = _named_tables(ctx, data, "set")
    if not tables:
        return (SetConfig("default", sessions=1),)
    result = []
    for name, s in tables.items():
        sec: Section = ("set", name)
        ctx.keys(sec, s, _SET_KEYS)
        if ("sessions" in s) == ("duration" in s):
            raise ctx.error(sec, None, "give exactly one of 'sessions' and 'duration'")
        sessions = ctx.integer(sec, "sessions", s["sessions"], 1) if "sessions" in s else None
        duration = (
            ctx.duration(sec, "duration", s["duration"], positive=True) if "duration" in s else None
        )
        warmup = ctx.integer(sec, "warmup", s["warmup"], 0) if "warmup" in s else 0
        order = "interleaved"
        if "order" in s:
            order = ctx.string(sec, "order", s["order"])
            if order not in _ORDERS:
                raise ctx.error(
                    sec, "order", f"unknown order {order!r} (use {' or '.join(_ORDERS)})"
                )
        seed = ctx.integer(sec, "seed", s["seed"], 0) if "seed" in s else 0
        set_noise = None
        if any(k in s for k in _NOISE_KEYS):
            set_noise = _parse_noise(ctx, sec, s, noise or NoiseGuard())
        stop_when = "planned"
        if "stop_when" in s:
            stop_when = ctx.string(sec, "stop_when", s["stop_when"])
            if stop_when not in STOP_WHEN:
                raise ctx.error(
                    sec,
                    "stop_when",
                    f"unknown stop_when {stop_when!r} (use {' or '.join(STOP_WHEN)})",
                )
        result.append(
            SetConfig(name, sessions, duration, warmup, order, seed, set_noise, stop_when)
        )
    return tuple(result)


def _parse_noise(
    ctx: _Context, sec: Section, table: dict[str, Any], base: NoiseGuard
) -> NoiseGuard:
    """The noise guard keys of ``[campaign]`` or a ``[set.NAME]`` (see ``NoiseGuard``);
    keys the table does not set are taken from ``base``."""
    share = base.max_background_share
    if "max_background_cpu" in table:
        try:
            share = parse_share(table["max_background_cpu"])
        except ValueError as exc:
            raise ctx.error(sec, "max_background_cpu", str(exc)) from None
    on_noisy = base.on_noisy
    if "on_noisy" in table:
        on_noisy = ctx.string(sec, "on_noisy", table["on_noisy"])
        if on_noisy not in ON_NOISY:
            raise ctx.error(
                sec, "on_noisy", f"unknown action {on_noisy!r} (use {' or '.join(ON_NOISY)})"
            )
    retries = base.retries
    if "noisy_retries" in table:
        retries = ctx.integer(sec, "noisy_retries", table["noisy_retries"], 0)
        if retries > 100:
            raise ctx.error(sec, "noisy_retries", f"must be <= 100, got {retries}")
    return NoiseGuard(share, on_noisy, retries)


def _parse_stats(ctx: _Context, sec: Section, camp: dict[str, Any]) -> StatsOptions:
    """The ``[campaign]`` keys of statistical gates (see ``perfmon.core.stats.StatsOptions``)."""
    opts: dict[str, Any] = {}
    if "confidence" in camp:
        value = camp["confidence"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ctx.error(sec, "confidence", f"expected a number, got {_toml_type(value)}")
        if not 0.5 <= value < 1.0:
            raise ctx.error(sec, "confidence", f"must be in [0.5, 1), e.g. 0.95, got {value}")
        opts["confidence"] = float(value)
    if "test" in camp:
        test = ctx.string(sec, "test", camp["test"])
        if test not in TESTS:
            raise ctx.error(sec, "test", f"unknown test {test!r} (use {' or '.join(TESTS)})")
        opts["test"] = test
    if "bootstrap_resamples" in camp:
        opts["resamples"] = ctx.integer(
            sec, "bootstrap_resamples", camp["bootstrap_resamples"], 100
        )
    if "bootstrap_seed" in camp:
        opts["seed"] = ctx.integer(sec, "bootstrap_seed", camp["bootstrap_seed"], 0)
    if "bootstrap_method" in camp:
        method = ctx.string(sec, "bootstrap_method", camp["bootstrap_method"])
        if method not in BOOTSTRAP_METHODS:
            raise ctx.error(
                sec,
                "bootstrap_method",
                f"unknown method {method!r} (use {', '.join(BOOTSTRAP_METHODS)})",
            )
        opts["method"] = method
    if "min_sessions" in camp:
        opts["min_sessions"] = ctx.integer(
            sec, "min_sessions", camp["min_sessions"], MIN_SESSIONS_FLOOR
        )
    if "interval" in camp:
        interval = ctx.string(sec, "interval", camp["interval"])
        if interval not in INTERVALS:
            raise ctx.error(
                sec, "interval", f"unknown interval {interval!r} (use {' or '.join(INTERVALS)})"
            )
        opts["interval"] = interval
    if "inference" in camp:
        inference = ctx.string(sec, "inference", camp["inference"])
        if inference not in INFERENCES:
            raise ctx.error(
                sec,
                "inference",
                f"unknown inference {inference!r} (use {' or '.join(INFERENCES)})",
            )
        opts["inference"] = inference
    return StatsOptions(**opts)


def _parse_gates(
    ctx: _Context,
    data: dict[str, Any],
    stats: StatsOptions | None = None,
    directions: dict[str, str] | None = None,
) -> tuple[GateConfig, ...]:
    from perfmon.core.gates import GateSyntaxError, parse_gate

    seen: dict[str, int] = {}
    result = []
    for i, g in enumerate(_array_of_tables(ctx, data, "gate")):
        sec: Section = ("gate", i)
        ctx.keys(sec, g, _GATE_KEYS, required=("name", "expr"))
        name = ctx.string(sec, "name", g["name"]).strip()
        if not name:
            raise ctx.error(sec, "name", "gate name is empty")
        if name in seen:
            raise ctx.error(sec, "name", f"duplicate gate name {name!r} (also gate[{seen[name]}])")
        seen[name] = i
        expr = ctx.string(sec, "expr", g["expr"])
        try:
            gate = parse_gate(expr, stats=stats, directions=directions)
        except GateSyntaxError as exc:
            raise ctx.error(
                sec, "expr", f"{exc.message} (column {exc.column} of {expr!r})"
            ) from None
        window = ctx.duration(sec, "window", g["window"], positive=True) if "window" in g else None
        by: tuple[str, ...] = ()
        if "by" in g:
            by = ctx.strings(sec, "by", g["by"])
            for j, label in enumerate(by):
                if not _MATRIX_KEY_RE.match(label):
                    raise ctx.error(sec, f"by[{j}]", f"invalid label name {label!r}")
            if len(set(by)) != len(by):
                raise ctx.error(sec, "by", "a label is named twice")
        result.append(GateConfig(name, expr, gate, window, by))
    return tuple(result)


def _parse_metrics(ctx: _Context, data: dict[str, Any]) -> dict[str, str]:
    """The ``[metric.NAME]`` tables: ``better = "lower" | "higher"`` (a metric's direction)."""
    from perfmon.core.model import METRIC_NAME_RE
    from perfmon.core.units import DIRECTIONS

    tables = ctx.table((), "metric", data.get("metric", {}))
    out: dict[str, str] = {}
    for name, table in tables.items():
        sec: Section = ("metric", name)
        ctx.table(("metric",), name, table)
        if not METRIC_NAME_RE.match(name):
            raise ctx.error(("metric",), name, f"invalid metric name {name!r}")
        ctx.keys(sec, table, ("better",), required=("better",))
        better = ctx.string(sec, "better", table["better"])
        if better not in DIRECTIONS:
            raise ctx.error(
                sec, "better", f'unknown direction {better!r} (use "lower" or "higher")'
            )
        out[name] = better
    return out


# --- checks of what can only end undecided (issue 11) -----------------------------------------

MIN_SAMPLE_INTERVAL_S = 0.001
"""Shortest psutil sampling interval (1 ms): below it the sampler would measure itself."""
MAX_SET_SESSIONS = 1_000_000
"""Most sessions (or warm-ups) a set may ask for per workload, variant and matrix value."""
MAX_PLANNED_SESSIONS = 10_000_000
"""Most sessions a campaign may plan in all (at 1 ms a session, nearly 3 hours of spawning)."""
MAX_SET_DURATION_S = 366 * 86400.0
"""Longest set duration (a year): longer is a typo, not a soak."""
MAX_GATE_NAME_CHARS = 200
"""Longest gate name."""
_MACHINE_WIDE = ("system_memory_percent", "system_memory_used_bytes", "system_cpu_percent")


def check_campaign(ctx: _Context, campaign: Campaign) -> list[str]:
    """Find what would leave a run undecided: raise for errors, return warnings.

    Errors (a ``CampaignError`` naming file, line and key): a sampling interval under
    ``MIN_SAMPLE_INTERVAL_S``; session counts over ``MAX_SET_SESSIONS`` or a plan over
    ``MAX_PLANNED_SESSIONS``; a set duration over ``MAX_SET_DURATION_S``; a gate name over
    ``MAX_GATE_NAME_CHARS`` or a gate metric name over ``max_metric_name_bytes`` (its samples
    would be dropped); a gate naming a variant, workload, set, label or matrix value the
    campaign does not have; ``by`` on an unknown label, or ``by = ["variant"]`` on a
    comparison of variants; a statistical gate (``speedup``, ``regression``, ``var``, ``std``,
    ``cv``) when a set plans fewer sessions per variant than ``min_sessions``.

    Warnings (``FILE:LINE: KEY: MESSAGE`` strings): a gate on a metric neither perfmon
    records nor a workload declares (``metrics = [...]`` in ``[[workload]]``), naming the
    closest known metric; label matchers on machine-wide metrics, which carry no labels.

    Args:
        ctx: the file's error context (for lines).
        campaign: the parsed campaign.

    Raises:
        CampaignError: for the first error found.
    """
    import difflib

    from perfmon.core.gates import VariantComparison
    from perfmon.core.live import PERFMON_METRICS

    sec: Section = ("campaign",)
    if campaign.sample_interval_s < MIN_SAMPLE_INTERVAL_S:
        raise ctx.error(
            sec,
            "sample_interval",
            f"{format_seconds(campaign.sample_interval_s)} is under the 1 ms minimum "
            "(the sampler would measure itself)",
        )
    combos = 0
    for w in campaign.workloads:
        combos += math.prod(len(v) for v in w.matrix.values())
    per_set = combos * len(campaign.variants)
    planned = 0
    for st in campaign.sets:
        ssec: Section = ("set", st.name)
        for key, n in (("sessions", st.sessions), ("warmup", st.warmup)):
            if n is not None and n > MAX_SET_SESSIONS:
                raise ctx.error(ssec, key, f"{n:,} is over the limit of {MAX_SET_SESSIONS:,}")
        if st.duration_s is not None and st.duration_s > MAX_SET_DURATION_S:
            raise ctx.error(ssec, "duration", "longer than a year; the limit is 366 days")
        planned += ((st.sessions or 0) + st.warmup) * per_set
    if planned > MAX_PLANNED_SESSIONS:
        raise ctx.error(
            ("set",),
            None,
            f"{planned:,} sessions planned (sets x workloads x variants x matrix values); "
            f"the limit is {MAX_PLANNED_SESSIONS:,}",
        )

    variants = {v.name for v in campaign.variants}
    workloads = {w.name for w in campaign.workloads}
    sets = {s.name for s in campaign.sets}
    matrix: dict[str, set[str]] = {}
    for w in campaign.workloads:
        for key, values in w.matrix.items():
            matrix.setdefault(key, set()).update(values)
    known_values = {"variant": variants, "workload": workloads, "set": sets, **matrix}
    declared = {m for w in campaign.workloads for m in w.metrics}
    known_metrics = set(PERFMON_METRICS) | declared
    warnings: list[str] = []

    def names(values: set[str]) -> str:
        return ", ".join(sorted(values)) or "none"

    for i, g in enumerate(campaign.gates):
        gsec: Section = ("gate", i)
        if len(g.name) > MAX_GATE_NAME_CHARS:
            raise ctx.error(
                gsec, "name", f"{len(g.name)} characters; the limit is {MAX_GATE_NAME_CHARS}"
            )
        if g.window_s is not None and g.window_s < MIN_SAMPLE_INTERVAL_S:
            raise ctx.error(gsec, "window", "a window under 1 ms holds no samples to judge")
        nodes = _gate_nodes(g.gate.lhs)
        for node in nodes:
            metric = node.metric
            if len(metric.encode()) > campaign.max_metric_name_bytes:
                raise ctx.error(
                    gsec,
                    "expr",
                    f"metric name of {len(metric.encode())} bytes is over max_metric_name_bytes "
                    f"= {campaign.max_metric_name_bytes}: its samples would be dropped",
                )
            for m in node.matchers:
                if m.label not in known_values:
                    raise ctx.error(
                        gsec,
                        "expr",
                        f"no label named {m.label!r} (labels: {names(set(known_values))})",
                    )
                if m.op == "=" and m.value not in known_values[m.label]:
                    raise ctx.error(
                        gsec,
                        "expr",
                        f"no {m.label} {m.value!r} in this campaign "
                        f"({m.label}: {names(known_values[m.label])})",
                    )
            wanted = [getattr(node, "a", None), getattr(node, "b", None)]
            wanted.append(getattr(node, "variant", None))
            for v in wanted:
                if v is not None and v not in variants:
                    raise ctx.error(
                        gsec,
                        "expr",
                        f"no variant named {v!r} (variants: {names(variants)}); the gate could "
                        "only stay pending",
                    )
            if metric not in known_metrics:
                close = difflib.get_close_matches(metric, sorted(known_metrics), n=1, cutoff=0.8)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                how = (
                    "no workload declares it (metrics = [...])"
                    if declared
                    else "workloads declare no metrics (metrics = [...] in [[workload]]), so "
                    "it cannot be checked"
                )
                warnings.append(
                    str(
                        ctx.error(
                            gsec, "expr", f"perfmon does not record {metric!r} and {how}{hint}"
                        )
                    )
                )
            if metric in _MACHINE_WIDE and any(not m.matches("") for m in node.matchers):
                warnings.append(
                    str(
                        ctx.error(
                            gsec,
                            "expr",
                            f"{metric} is machine-wide and carries no labels: "
                            f"{format_matchers(node.matchers)} matches none of its samples",
                        )
                    )
                )
        for j, label in enumerate(g.by):
            if label not in known_values:
                raise ctx.error(
                    gsec,
                    f"by[{j}]",
                    f"no label named {label!r} (labels: {names(set(known_values))})",
                )
            if label == "variant" and any(isinstance(n, VariantComparison) for n in nodes):
                raise ctx.error(
                    gsec, f"by[{j}]", "a comparison of two variants cannot be split by variant"
                )
    small = too_small_sets(campaign)
    if small is not None:
        set_name, message = small
        raise ctx.error(("set", set_name), "sessions", message)
    return warnings


def too_small_sets(campaign: Campaign) -> tuple[str, str] | None:
    """The first set planning fewer sessions than a statistical gate's ``min_sessions``.

    Returns:
        ``(set name, message)``, or None when every set is large enough (or no gate is
        statistical: ``speedup``, ``regression``, ``var``, ``std``, ``cv``).
    """
    from perfmon.core.gates import Spread, VariantComparison

    need = campaign.stats.min_sessions
    for g in campaign.gates:
        if not any(isinstance(n, VariantComparison | Spread) for n in _gate_nodes(g.gate.lhs)):
            continue
        for st in campaign.sets:
            if st.sessions is not None and st.sessions < need:
                return st.name, (
                    f"{st.sessions} sessions per variant, but gate {g.name!r} needs "
                    f"min_sessions = {need} per variant: it could only end pending "
                    f"(raise sessions, or lower [campaign] min_sessions)"
                )
    return None


def format_matchers(matchers: Sequence[Any]) -> str:
    """``{label="value", ...}`` of a gate's matchers."""
    from perfmon.core.labels import format_selector

    return format_selector(matchers)


def _gate_nodes(expr: Any) -> list[Any]:
    """The metric-reading nodes of a gate expression (each has ``metric`` and ``matchers``)."""
    from perfmon.core.gates import Ratio

    if isinstance(expr, Ratio):
        return _gate_nodes(expr.num) + _gate_nodes(expr.den)
    return [expr]


def _parse_profile(ctx: _Context, data: dict[str, Any]) -> ProfileConfig:
    """The ``[profile]`` table (see ``ProfileConfig``)."""
    sec: Section = ("profile",)
    table = ctx.table((), "profile", data["profile"])
    ctx.keys(sec, table, _PROFILE_KEYS)
    every = ctx.integer(sec, "every", table["every"], 1) if "every" in table else None
    duty_on = duty_period = None
    if "duty" in table:
        text = ctx.string(sec, "duty", table["duty"])
        on_text, slash, period_text = text.partition("/")
        if not slash:
            raise ctx.error(sec, "duty", f'expected "ON/PERIOD" such as "10s/5min", got {text!r}')
        duty_on = ctx.duration(sec, "duty", on_text.strip(), positive=True)
        duty_period = ctx.duration(sec, "duty", period_text.strip(), positive=True)
        if duty_on >= duty_period:
            raise ctx.error(
                sec, "duty", f"the sampled time must be shorter than the period: {text!r}"
            )
    rate = ctx.integer(sec, "rate", table["rate"], 1) if "rate" in table else 100
    if rate > 10_000:
        raise ctx.error(sec, "rate", f"must be <= 10000 samples per second, got {rate}")
    nonblocking = (
        ctx.boolean(sec, "nonblocking", table["nonblocking"]) if "nonblocking" in table else False
    )
    duration = (
        ctx.duration(sec, "duration", table["duration"], positive=True)
        if "duration" in table
        else None
    )
    subprocesses = (
        ctx.boolean(sec, "subprocesses", table["subprocesses"]) if "subprocesses" in table else True
    )
    return ProfileConfig(every, duty_on, duty_period, rate, nonblocking, duration, subprocesses)


def override_sets(campaign: Campaign, overrides: Sequence[str]) -> Campaign:
    """Resize sets from the command line: ``"canary=120"`` (sessions) or ``"canary=72h"``.

    ``perfmon run --set NAME=SIZE`` uses this so that one campaign file serves a 10-minute
    check and a 72-hour soak. A size that is a whole number is a session count; one with a
    time unit is a duration (and replaces the session count, and vice versa).

    Args:
        campaign: the parsed campaign.
        overrides: ``NAME=SIZE`` strings.

    Returns:
        The campaign with those sets resized (the others unchanged).

    Raises:
        CampaignError: naming the set (key ``set.NAME``) when the set does not exist or the
            size is neither a positive integer nor a duration.
    """
    from dataclasses import replace

    sets = {s.name: s for s in campaign.sets}
    for text in overrides:
        name, sep, size = text.partition("=")
        name, size = name.strip(), size.strip()
        key = f"set.{name}"
        if not sep or not name or not size:
            raise CampaignError(
                str(campaign.path), None, "--set", f"expected NAME=SIZE, got {text!r}"
            )
        if name not in sets:
            known = ", ".join(sets) or "none"
            raise CampaignError(
                str(campaign.path), None, key, f"no set named {name!r} (sets: {known})"
            )
        if size.isascii() and size.isdigit():
            if int(size) < 1:
                raise CampaignError(str(campaign.path), None, key, "sessions must be >= 1")
            sets[name] = replace(sets[name], sessions=int(size), duration_s=None)
            continue
        try:
            seconds = parse_duration(size)
        except ValueError as exc:
            raise CampaignError(
                str(campaign.path),
                None,
                key,
                f"{size!r} is neither a session count nor a duration: {exc}",
            ) from None
        if seconds <= 0:
            raise CampaignError(str(campaign.path), None, key, "a duration must be > 0")
        sets[name] = replace(sets[name], sessions=None, duration_s=seconds)
    resized = replace(campaign, sets=tuple(sets[s.name] for s in campaign.sets))
    small = too_small_sets(resized) if overrides else None
    if small is not None:
        raise CampaignError(str(campaign.path), None, f"set.{small[0]}", f"--set: {small[1]}")
    return resized


# --- [executor]: where sessions run (issue 16) ----------------------------------------------
#
#   [executor]   kind ("local" | "ray"), address (Ray: "auto", "ray://host:10001", "host:6379"),
#                placement_timeout (how long a session may wait for a node; default 30s),
#                pair_same_host (default true), allow_mixed_hosts (default false),
#                sessions_per_host (default 1: a host is a measurement instrument)
#   [executor.placement.NAME]   NAME: a workload or a variant; resources = { canary_box = 1 },
#                labels = { perfmon_host = "gpu-a" }, num_gpus = 1, num_cpus = 1

EXECUTOR_KINDS = ("local", "ray")
_EXECUTOR_KEYS = (
    "kind",
    "address",
    "placement",
    "placement_timeout",
    "pair_same_host",
    "allow_mixed_hosts",
    "sessions_per_host",
)
_PLACEMENT_KEYS = ("resources", "labels", "num_gpus", "num_cpus")


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a session may run on a Ray cluster (``[executor.placement.NAME]``).

    Attributes:
        resources: custom Ray resources the session needs, ``(name, amount)`` pairs.
        labels: node labels the node must carry (exact match), ``(key, value)`` pairs.
        num_gpus: GPUs the session needs (0: none).
        num_cpus: CPUs the session holds while it runs (default 1: with one CPU per node
            declared, that is one session per host at a time).
    """

    resources: tuple[tuple[str, float], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    num_gpus: float = 0.0
    num_cpus: float = 1.0

    def merged(self, other: Placement) -> Placement:
        """This placement with ``other``'s entries added (``other`` wins on a clash)."""
        return Placement(
            resources=tuple({**dict(self.resources), **dict(other.resources)}.items()),
            labels=tuple({**dict(self.labels), **dict(other.labels)}.items()),
            num_gpus=max(self.num_gpus, other.num_gpus),
            num_cpus=other.num_cpus if other != Placement() else self.num_cpus,
        )


@dataclass(frozen=True, slots=True)
class ExecutorSettings:
    """The ``[executor]`` table.

    Attributes:
        kind: ``"local"`` (default: the local supervisor) or ``"ray"``.
        address: the Ray cluster's address (``ray.init(address=...)``; ``"auto"``: the
            cluster this machine belongs to).
        placement: per workload or variant name, its ``Placement``; a session's placement
            is its workload's merged with its variant's.
        placement_timeout_s: how long a session may wait for a node before the run stops with
            a clear message, seconds.
        pair_same_host: run every session of a workload (and matrix point) on the host where
            its first session ran, so baseline and candidate share one instrument.
        allow_mixed_hosts: pool the sessions of different hosts (of any fingerprint) in
            gates, result tables and comparisons, and let the Ray executor place a workload's
            sessions on hosts of different fingerprints. False (the default): a run on several
            hosts is judged per host (``perfmon.engine.recorded``), and comparing runs of
            different fingerprints is refused.
        sessions_per_host: how many sessions may run at once on one host (default 1: two
            sessions on one machine measure each other's interference as much as themselves);
            sessions on different hosts run concurrently. Only the Ray executor runs more
            than one session at a time.
    """

    kind: str = "local"
    address: str = "auto"
    placement: tuple[tuple[str, Placement], ...] = ()
    placement_timeout_s: float = 30.0
    pair_same_host: bool = True
    allow_mixed_hosts: bool = False
    sessions_per_host: int = 1

    def placement_for(self, workload: str, variant: str) -> Placement:
        """The placement of a session of ``workload`` / ``variant``."""
        by_name = dict(self.placement)
        return by_name.get(workload, Placement()).merged(by_name.get(variant, Placement()))


def _parse_executor(
    ctx: _Context,
    data: dict[str, Any],
    workloads: Sequence[WorkloadConfig],
    variants: Sequence[VariantConfig],
) -> ExecutorSettings:
    sec: Section = ("executor",)
    table = ctx.table((), "executor", data["executor"])
    ctx.keys(sec, table, _EXECUTOR_KEYS)
    out: dict[str, Any] = {}
    if "kind" in table:
        kind = ctx.string(sec, "kind", table["kind"])
        if kind not in EXECUTOR_KINDS:
            raise ctx.error(sec, "kind", f"unknown executor {kind!r} (one of: local, ray)")
        out["kind"] = kind
    if "address" in table:
        out["address"] = ctx.string(sec, "address", table["address"])
    if "placement_timeout" in table:
        out["placement_timeout_s"] = ctx.duration(
            sec, "placement_timeout", table["placement_timeout"], positive=True
        )
    for key in ("pair_same_host", "allow_mixed_hosts"):
        if key in table:
            out[key] = ctx.boolean(sec, key, table[key])
    if "sessions_per_host" in table:
        out["sessions_per_host"] = ctx.integer(
            sec, "sessions_per_host", table["sessions_per_host"], 1
        )
    if "placement" in table:
        names = {w.name for w in workloads} | {v.name for v in variants}
        pl = ctx.table(sec, "placement", table["placement"])
        placements = []
        for name, value in pl.items():
            psec: Section = ("executor", "placement", name)
            if name not in names:
                raise ctx.error(
                    psec, None, f"{name!r} is neither a workload nor a variant of this campaign"
                )
            t = ctx.table(("executor", "placement"), name, value)
            ctx.keys(psec, t, _PLACEMENT_KEYS)
            resources = []
            for rname, amount in ctx.table(psec, "resources", t.get("resources", {})).items():
                if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount <= 0:
                    raise ctx.error(psec, "resources", f"{rname}: expected a positive number")
                resources.append((str(rname), float(amount)))
            labels = []
            for lkey, lval in ctx.table(psec, "labels", t.get("labels", {})).items():
                labels.append((str(lkey), ctx.string(psec, "labels", lval)))
            amounts = {}
            for key in ("num_gpus", "num_cpus"):
                if key in t:
                    v = t[key]
                    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                        raise ctx.error(psec, key, "expected a number >= 0")
                    amounts[key] = float(v)
            placements.append((name, Placement(tuple(resources), tuple(labels), **amounts)))
        out["placement"] = tuple(placements)
    if out.get("kind", "local") == "local" and "placement" in out:
        raise ctx.error(sec, "placement", 'placement needs kind = "ray"')
    if out.get("kind", "local") == "local" and out.get("sessions_per_host", 1) != 1:
        raise ctx.error(
            sec,
            "sessions_per_host",
            'more than one session at a time needs kind = "ray" (the local executor runs '
            "one session at a time on this machine)",
        )
    return ExecutorSettings(**out)
