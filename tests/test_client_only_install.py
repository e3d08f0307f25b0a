"""The client-only distribution (``clients/python``): built as a wheel, installed into a fresh
virtual environment with httpx and numpy and nothing else, it fetches torch's tensors as numpy
arrays from a live server and makes portable-v1 weights, without torch, pydantic or FastAPI
importable there.

The venv is made without pip and without network: the wheel is unpacked into its site-packages
(what pip does for a pure-Python wheel), and the wheel's own requirements, resolved in this test
environment, are linked into a directory a ``.pth`` file adds to its path. Only those
distributions are there, so an import of anything else fails as it would on a client machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement

from service.portable import generate as portable_core
from tests.torch_reference import as_bytes, reference

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {
    "service/__init__.py",
    "service/client/__init__.py", "service/client/_answers.py", "service/client/_base.py", "service/client/_methods.py",
    "service/client/_requests.py", "service/client/_safetensors.py", "service/client/aio.py",
    "service/client/errors.py", "service/client/portable.py", "service/client/sync.py",
    "service/portable/__init__.py", "service/portable/generate.py", "service/portable/philox.py",
    "service/portable/recipes.py", "service/portable/transforms.py",
    "service/formulas.py", "service/scheme_table.py", "service/safetensors_header.py",
}


def _closure(requirements: list[str]) -> list[metadata.Distribution]:
    """The installed distributions ``requirements`` need, transitively (markers evaluated here)."""
    found: dict[str, metadata.Distribution] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = req.name.lower().replace("_", "-")
        if name in found:
            continue
        dist = metadata.distribution(req.name)
        found[name] = dist
        todo += [Requirement(r) for r in dist.requires or []]
    return list(found.values())


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory) -> tuple[Path, zipfile.ZipFile]:
    tmp = tmp_path_factory.mktemp("client-only")
    source = tmp / "source"
    shutil.copytree(ROOT / "clients" / "python", source, symlinks=False,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(tmp / "wheels"), str(source)], check=True, capture_output=True, timeout=120)
    (wheel_path,) = (tmp / "wheels").glob("initsvc_client-*.whl")
    wheel = zipfile.ZipFile(wheel_path)

    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    wheel.extractall(purelib)

    requires = metadata.Distribution.at(next(purelib.glob("initsvc_client-*.dist-info"))).requires or []
    deps = tmp / "deps"
    deps.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for dist in _closure(requires):
        for top in {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            if not (deps / top).exists() and (site / top).exists():
                (deps / top).symlink_to(site / top)
    (purelib / "deps.pth").write_text(f"{deps}\n")
    return python, wheel


def _run(python: Path, code: str, **env: str) -> str:
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120, cwd="/",
                          env={"PATH": "/usr/bin:/bin", **env})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_wheel_needs_httpx_and_numpy_and_ships_only_the_client(client_venv):
    _, wheel = client_venv
    meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    requires = [line.split(":", 1)[1].strip() for line in wheel.read(meta).decode().splitlines()
                if line.startswith("Requires-Dist:")]
    assert sorted(Requirement(r).name for r in requires) == ["httpx", "numpy"]
    modules = {n for n in wheel.namelist() if not n.split("/")[0].endswith(".dist-info")}
    assert modules == SHIPPED


def test_torch_pydantic_and_fastapi_are_not_importable_there(client_venv):
    python, _ = client_venv
    code = """
import importlib, json
out = {}
for name in ("torch", "pydantic", "fastapi", "starlette", "uvicorn", "safetensors", "service.schemas",
             "service.api", "httpx", "numpy", "service.client"):
    try:
        importlib.import_module(name)
        out[name] = "ok"
    except ModuleNotFoundError as exc:
        out[name] = exc.name
print(json.dumps(out))
"""
    found = json.loads(_run(python, code))
    assert {k: v for k, v in found.items() if v == "ok"} == {"httpx": "ok", "numpy": "ok", "service.client": "ok"}


def test_the_numpy_client_gets_torchs_tensor_from_a_live_server(client_venv, server):
    python, _ = client_venv
    code = f"""
import json, os, sys
from service.client import InitClient
from service.client.portable import generate
with InitClient({server.url!r}) as client:
    r = client.tensor([64, 32], "kaiming_uniform", a=5 ** 0.5, seed=3, device="cpu", as_numpy=True)
    b = client.tensor([8, 16], "normal", std=0.02, seed=1, dtype="bfloat16", device="cpu", as_numpy=True)
p = generate([40, 30], "normal", seed=5, std=0.5, dtype="float16", slice="2:10,:")
print(json.dumps({{"kaiming": r.tensor.tobytes().hex(), "dtype": str(r.tensor.dtype), "seed": r.seed,
                  "bf16": b.tensor.tobytes().hex(), "portable": p.tobytes().hex(),
                  "loaded": sorted(m for m in ("torch", "pydantic", "fastapi") if m in sys.modules),
                  "mkl": os.environ.get("MKL_CBWR")}}))
"""
    out = json.loads(_run(python, code))
    assert out["loaded"] == [] and out["mkl"] is None
    assert out["dtype"] == "float32" and out["seed"] == 3
    assert bytes.fromhex(out["kaiming"]) == as_bytes(reference([64, 32], "kaiming_uniform", {"a": 5 ** 0.5}, seed=3))
    bf16 = reference([8, 16], "normal", {"std": 0.02}, "bfloat16", seed=1).float()  # numpy has no bfloat16
    assert bytes.fromhex(out["bf16"]) == as_bytes(bf16)
    expected = portable_core({"scheme": "normal", "std": 0.5}, [40, 30], 5, 0, "float16", [(2, 10), None])
    assert bytes.fromhex(out["portable"]) == np.ascontiguousarray(expected).tobytes()
