"""Provenance of a run: what code ran, where, on what, with which package versions.

Written into the run's ``manifest.json`` and shown in the report, so that every number can be
traced to a commit, a machine and a software stack.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import psutil

from perfmon import __version__

GIT_TIMEOUT_S = 2.0
"""Seconds allowed for each ``git`` call; a slow or hung git gives None, not a stalled run."""

PACKAGES = ("numpy", "scipy", "pyarrow", "psutil", "textual", "torch")
"""Packages whose installed versions are recorded (looked up in package metadata; none of
them is imported, torch least of all)."""


def _git(args: list[str], cwd: Path) -> str | None:
    """Run ``git ARGS`` in ``cwd``; its stripped stdout, or None on any failure or timeout."""
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip()


def git_info(directory: Path) -> dict[str, Any]:
    """The git commit of ``directory`` and whether its work tree is dirty.

    Args:
        directory: any directory inside a work tree.

    Returns:
        ``{"commit": sha or None, "dirty": bool or None}``: None when the directory is not in a
        git repository, git is missing, or git did not answer within ``GIT_TIMEOUT_S``. Dirty
        means tracked files differ from HEAD (``git status --porcelain --untracked-files=no``
        prints anything); untracked files do not count.
    """
    commit = _git(["rev-parse", "HEAD"], directory)
    if not commit:
        return {"commit": None, "dirty": None}
    status = _git(["status", "--porcelain", "--untracked-files=no"], directory)
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def cpu_model() -> str:
    """The CPU's model name: ``/proc/cpuinfo``'s first ``model name`` (Linux), else
    ``platform.processor()``; "" when neither says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor()


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``names`` from package metadata (``importlib.metadata``), None
    for packages that are not installed. Nothing is imported."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def collect_provenance(campaign_path: Path | None) -> dict[str, Any]:
    """Describe the code, machine and software a run is measured on.

    Args:
        campaign_path: the campaign file (its directory's git commit is recorded), or None.

    Returns:
        A JSON-ready dict with ``perfmon_version``, ``git`` (``{"commit", "dirty"}``, see
        ``git_info``), ``hostname``, ``os`` (``platform.platform()``), ``system``, ``release``,
        ``machine``, ``cpu_model``, ``cpu_count_logical`` / ``cpu_count_physical``
        (``psutil.cpu_count``; physical may be None), ``ram_total_bytes``
        (``psutil.virtual_memory().total``), ``python_version``, ``python_implementation``,
        ``packages`` (see ``package_versions``) and ``started_utc`` (ISO 8601, UTC).
    """
    if campaign_path is None:
        git: dict[str, Any] = {"commit": None, "dirty": None}
    else:
        directory = campaign_path if campaign_path.is_dir() else campaign_path.parent
        git = git_info(directory.resolve())
    return {
        "perfmon_version": __version__,
        "git": git,
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count_logical": psutil.cpu_count(logical=True),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "ram_total_bytes": int(psutil.virtual_memory().total),
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": package_versions(),
        "started_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
