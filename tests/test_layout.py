"""The layering holds: the engine loads no web stack; importing the package starts nothing."""

from __future__ import annotations

import subprocess
import sys


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_engine_does_not_load_fastapi_or_pydantic():
    loaded = _loaded_after("import service.engine.maker, service.engine.stats, service.engine.checks")
    assert "fastapi" not in loaded and "pydantic" not in loaded and "starlette" not in loaded


def test_schemas_do_not_load_torch():
    loaded = _loaded_after("import service.schemas.requests")
    assert "torch" not in loaded


def test_fans_and_gains_are_plain_python():
    loaded = _loaded_after("import service.engine.fans, service.engine.gains")
    assert "torch" not in loaded and "numpy" not in loaded


def _mkl_cbwr_after(statement: str) -> str:
    code = f"import os, sys; {statement}; print(os.environ.get('MKL_CBWR'), 'torch' in sys.modules)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin"}).stdout.strip()


def test_the_server_entry_points_set_mkl_cbwr_before_torch():
    # uvicorn's import path, and the CLI that runs `initsvc serve` (before it has loaded torch)
    assert _mkl_cbwr_after("import service.app") == "COMPATIBLE True"
    assert _mkl_cbwr_after("import service.cli") == "COMPATIBLE False"


def test_importing_the_package_or_the_client_changes_nothing_in_the_process():
    assert _mkl_cbwr_after("import service") == "None False"
    assert _mkl_cbwr_after("import service.client, service.client.portable") == "None False"
    loaded = _loaded_after("import service.client, service.client.portable")
    assert not loaded & {"torch", "pydantic", "fastapi", "starlette", "service.schemas", "service.api"}


def test_readme_lists_every_setting_and_starts_with_the_two_commands():
    from pathlib import Path

    from service.settings import Settings

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`INITSVC_{name.upper()}`" in readme, name
    head = readme.split("```")[1]
    assert "pip install -e '.[test]'" in head and "initsvc serve" in head and "python -m pytest" in head
