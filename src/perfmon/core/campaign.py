"""Campaign files: TOML into typed objects, with errors that name file, line and key.

(The parser below the types is written in this module; see ``load_campaign``.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

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
        order: ``"interleaved"`` (A B A B ...) or ``"blocked"`` (A A ... B B ...).
    """

    name: str
    sessions: int | None = None
    duration_s: float | None = None
    warmup: int = 0
    order: str = "interleaved"


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

    @property
    def directory(self) -> Path:
        """The directory holding the campaign file."""
        return self.path.parent
