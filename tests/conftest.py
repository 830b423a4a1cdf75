"""Test-wide setup: a private runtime directory, so that tests never touch the user's runs.

The directory is short (AF_UNIX socket paths are limited to 107 bytes) and is inherited by
every perfmon subprocess a test starts, through the environment.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

_RUNTIME = tempfile.mkdtemp(prefix="pmrt-")
os.chmod(_RUNTIME, 0o700)
os.environ["PERFMON_RUNTIME_DIR"] = _RUNTIME


@pytest.fixture(scope="session", autouse=True)
def _private_runtime_dir() -> Iterator[str]:
    yield _RUNTIME
    shutil.rmtree(_RUNTIME, ignore_errors=True)
