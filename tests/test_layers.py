"""The three layers stay apart (design.md section 3), and the cheap paths stay cheap.

Each module is imported in a fresh interpreter and ``sys.modules`` is inspected there, as
harlequin's test_import_hygiene does, so that one test's imports cannot hide another's.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

import perfmon
import perfmon.core
import perfmon.engine

HEAVY = ("textual", "pyarrow", "scipy", "torch")


def _modules_after_import(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(json.loads(out))


def _submodules(package: object) -> list[str]:
    path = package.__path__  # type: ignore[attr-defined]
    prefix = package.__name__ + "."  # type: ignore[attr-defined]
    return [m.name for m in pkgutil.iter_modules(path, prefix)]


CORE_MODULES = _submodules(perfmon.core)
ENGINE_MODULES = _submodules(perfmon.engine)


def test_layers_are_discovered() -> None:
    assert "perfmon.core.gates" in CORE_MODULES
    assert "perfmon.engine.runner" in ENGINE_MODULES


@pytest.mark.parametrize("module", ["perfmon", "perfmon.probe", "perfmon.cli"])
def test_light_entry_points_import_nothing_heavy(module: str) -> None:
    loaded = _modules_after_import(module)
    for heavy in (*HEAVY, "numpy", "perfmon.engine", "perfmon.tui"):
        assert heavy not in loaded, f"{module} imports {heavy}"


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_imports_no_engine_tui_or_heavy_library(module: str) -> None:
    loaded = _modules_after_import(module)
    bad = {m for m in loaded if m.startswith(("perfmon.engine", "perfmon.tui"))}
    bad |= {h for h in HEAVY if h in loaded}
    assert not bad, f"{module} imports {sorted(bad)}"


# A fresh interpreter per engine module (pyarrow, scipy: ~1 s each): in the full suite; the
# import-linter contracts (pyproject.toml, `lint-imports` in CI) check the same statically.
@pytest.mark.slow
@pytest.mark.parametrize("module", ENGINE_MODULES)
def test_engine_imports_no_tui(module: str) -> None:
    loaded = _modules_after_import(module)
    bad = {m for m in loaded if m.startswith("perfmon.tui") or m == "textual"}
    assert not bad, f"{module} imports {sorted(bad)}"


def test_version_is_quick_to_answer() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "perfmon", "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    assert out.stdout.strip() == f"perfmon {perfmon.__version__}"


TUI_DOORS = ("perfmon.engine.api", "perfmon.engine.client")
"""The engine modules the TUI may import (pyproject.toml's import-linter contract says the
same; this test keeps the two agreeing)."""


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("perfmon", cache_dir=None)  # TYPE_CHECKING imports count too


def test_the_tui_reaches_the_engine_only_through_its_client_api(graph: grimp.ImportGraph) -> None:
    bad = sorted(
        (importer, imported)
        for importer in graph.find_descendants("perfmon.tui") | {"perfmon.tui"}
        for imported in graph.find_modules_directly_imported_by(importer)
        if imported.startswith("perfmon.engine") and imported not in TUI_DOORS
    )
    assert not bad, f"the tui imports engine internals: {bad}"


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    cycles = sorted(
        (module, imported)
        for module in graph.modules
        if module.startswith("perfmon.")
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.startswith("perfmon.")
        and graph.chain_exists(importer=imported, imported=module)
    )
    assert not cycles, f"import cycles: {cycles}"


def test_import_linter_contracts_agree_with_these_tests() -> None:
    config = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    contracts = {c["type"]: c for c in config["tool"]["importlinter"]["contracts"]}
    assert contracts["layers"]["layers"] == ["perfmon.tui", "perfmon.engine", "perfmon.core"]
    doors = {e.split(" -> ")[1] for e in contracts["forbidden"]["ignore_imports"]}
    assert doors == set(TUI_DOORS)
    assert "perfmon.engine" in contracts["acyclic_siblings"]["ancestors"]
