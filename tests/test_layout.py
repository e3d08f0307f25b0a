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


def test_readme_lists_every_setting():
    from pathlib import Path

    from service.settings import Settings

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`INITSVC_{name.upper()}`" in readme, name


def test_readme_starts_with_the_two_commands():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    first, second = [line.split("#")[0].strip() for line in readme.split("```")[1].splitlines()[1:3]]
    # line 1 sets up the server alone and starts it in the background, so line 2 can run in the
    # same terminal: the test tools (the test extra, not the server's dependencies), then the tests
    assert first.startswith("python3 -m venv .venv && .venv/bin/pip install -e . && ")
    assert first.endswith("{ .venv/bin/initsvc serve & }") and "[test]" not in first
    assert second == ".venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest"
    assert subprocess.run(["bash", "-n", "-c", f"{first}\n{second}"], capture_output=True).returncode == 0


def test_the_servers_dependencies_hold_no_test_tools():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    names = {dep.split("==")[0].split(">")[0].split("[")[0].strip().lower() for dep in project["dependencies"]}
    assert not names & {"pytest", "pytest-timeout", "scipy", "playwright", "schemathesis"}
    assert "pytest" in " ".join(project["optional-dependencies"]["test"])
