"""The import-direction contracts of pyproject.toml (``[tool.importlinter]``) are there and hold.

``tests/test_layout.py`` checks what an import loads at run time; these contracts check every
import statement, indirect chains included, the way CI's ``.ci/lint`` runs them.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def _forbidden(source: str) -> set[str]:
    found = [c for c in _contracts() if c["type"] == "forbidden" and source in c["source_modules"]]
    assert found, f"no forbidden contract for {source}"
    return set().union(*(c["forbidden_modules"] for c in found))


def test_the_layers_run_from_api_down_to_formulas():
    (layers,) = [c for c in _contracts() if c["type"] == "layers"]
    assert layers["layers"] == [
        "service.api", "service.planning", "service.workers", "service.presets", "service.engine", "service.formulas",
    ]
    assert "ignore_imports" not in layers


def test_planning_schemas_client_and_engine_each_have_their_forbidden_imports():
    assert _forbidden("service.planning") == {"fastapi", "starlette"}
    assert _forbidden("service.schemas") >= {"service.engine", "service.presets", "service.workers", "fastapi"}
    assert _forbidden("service.client") >= {
        "service.engine", "service.api", "service.schemas", "service.workers", "service.presets",
        "service.codec", "service.settings", "torch", "pydantic", "fastapi",
    }
    assert _forbidden("service.engine") >= {
        "fastapi", "pydantic", "starlette", "service.api", "service.workers", "service.schemas",
    }


def test_lint_imports_keeps_every_contract():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint_imports), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Contracts: {len(_contracts())} kept, 0 broken." in done.stdout
