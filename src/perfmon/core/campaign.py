"""Campaign files: TOML into typed objects, with errors that name file, line and key.

The types come first; the parser (``load_campaign``, ``parse_campaign``) follows them, with the
file format described in a comment above it. ``load_campaign`` is the one function in
``perfmon.core`` that reads a file (the campaign itself); ``parse_campaign`` is pure.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfmon.core.stats import (
    BOOTSTRAP_METHODS,
    INTERVALS,
    MIN_SESSIONS_FLOOR,
    TESTS,
    StatsOptions,
)
from perfmon.core.units import parse_duration, parse_size

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
        timeout_s: wall-clock limit per session in seconds, or None.
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
    """

    name: str
    sessions: int | None = None
    duration_s: float | None = None
    warmup: int = 0
    order: str = "interleaved"
    seed: int = 0


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


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    """When and how sessions are sampled with py-spy (the ``[profile]`` table).

    Attributes:
        every: profile every k-th session (by session id: 1 profiles all), or None.
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

    @property
    def directory(self) -> Path:
        """The directory holding the campaign file."""
        return self.path.parent


# --- the parser -------------------------------------------------------------------------------
#
# The format (TOML, parsed with the standard library's tomllib):
#
#   [campaign]   name (required, [A-Za-z0-9._-]+), sample_interval, grace, log_cap, runs_dir,
#                confidence, test, bootstrap_resamples, bootstrap_seed, bootstrap_method,
#                min_sessions, interval
#   [[workload]] name, command (required); env, cwd, timeout, matrix, shell
#   [variant.NAME]  env, args            (none: one variant named "default")
#   [set.NAME]      sessions | duration (exactly one), warmup, order, seed
#                   (none: one set "default" with sessions = 1)
#   [[gate]]     name, expr (required); window
#   [profile]    every, duty ("10s/5min"), rate, nonblocking, duration, subprocesses
#
# Key paths in errors: "campaign.name", "workload[0].timeout", "variant.baseline.env",
# "set.golden.sessions", "gate[1].expr" (array indices count from 0).

NAME_RE = re.compile(r"[A-Za-z0-9._-]+\Z")
"""Valid campaign, workload, variant and set names."""

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
    "min_sessions",
    "interval",
)
_WORKLOAD_KEYS = ("name", "command", "env", "cwd", "timeout", "matrix", "shell")
_VARIANT_KEYS = ("env", "args")
_SET_KEYS = ("sessions", "duration", "warmup", "order", "seed")
_GATE_KEYS = ("name", "expr", "window")
_PROFILE_KEYS = ("every", "duty", "rate", "nonblocking", "duration", "subprocesses")
_TOP_KEYS = ("campaign", "workload", "variant", "set", "gate", "profile")

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

    Args:
        path: the campaign file (TOML, UTF-8).

    Returns:
        The campaign, with ``path`` made absolute.

    Raises:
        CampaignError: if the file cannot be read or is not a valid campaign.
    """
    file = str(path)
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8")
    except OSError as exc:
        raise CampaignError(file, None, "", f"cannot read campaign file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise CampaignError(file, None, "", f"not UTF-8 text: {exc.reason}") from None
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
    ctx.keys(sec, camp, _CAMPAIGN_KEYS, required=("name",))
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
    runs_dir = directory / "runs"
    if "runs_dir" in camp:
        runs_dir = directory / ctx.string(sec, "runs_dir", camp["runs_dir"])

    stats = _parse_stats(ctx, sec, camp)
    if stats != StatsOptions():
        extra["stats"] = stats
    workloads = _parse_workloads(ctx, data, directory)
    variants = _parse_variants(ctx, data)
    sets = _parse_sets(ctx, data)
    gates = _parse_gates(ctx, data, stats)
    if "profile" in data:
        extra["profile"] = _parse_profile(ctx, data)
    return Campaign(
        name=name,
        path=abs_path,
        workloads=workloads,
        variants=variants,
        sets=sets,
        gates=gates,
        runs_dir=runs_dir,
        **extra,
    )


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
        timeout = (
            ctx.duration(sec, "timeout", w["timeout"], positive=True) if "timeout" in w else None
        )
        result.append(WorkloadConfig(name, command, env, cwd, timeout, matrix, shell))
    return tuple(result)


def _named_tables(ctx: _Context, data: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    tables = ctx.table((), key, data.get(key, {}))
    for name, value in tables.items():
        ctx.table((key,), name, value)
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


def _parse_sets(ctx: _Context, data: dict[str, Any]) -> tuple[SetConfig, ...]:
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
        result.append(SetConfig(name, sessions, duration, warmup, order, seed))
    return tuple(result)


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
    return StatsOptions(**opts)


def _parse_gates(
    ctx: _Context, data: dict[str, Any], stats: StatsOptions | None = None
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
            gate = parse_gate(expr, stats=stats)
        except GateSyntaxError as exc:
            raise ctx.error(
                sec, "expr", f"{exc.message} (column {exc.column} of {expr!r})"
            ) from None
        window = ctx.duration(sec, "window", g["window"], positive=True) if "window" in g else None
        result.append(GateConfig(name, expr, gate, window))
    return tuple(result)


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
        if size.isdigit():
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
    return replace(campaign, sets=tuple(sets[s.name] for s in campaign.sets))
