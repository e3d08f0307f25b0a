"""The Dockerfile, compose file and Kubernetes manifests pass ``.ci/static-checks``, and the
checks catch what they are there to catch. The tools are CI's to install (its static-checks step
pip-installs them); here a missing tool skips, so the tests never need a package index."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "static-checks"
TOOL_MISSING = 3  # the script's exit status when a tool cannot be installed


def _static_checks(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "STATIC_CHECKS_VENV": str(ROOT / ".venv"), "STATIC_CHECKS_NO_INSTALL": "1"}
    done = subprocess.run(["bash", str(root / ".ci" / "static-checks")], capture_output=True, text=True, env=env, check=False,
                          timeout=300)
    if done.returncode == TOOL_MISSING:
        pytest.skip(f"a static-check tool is not installed (bash .ci/static-checks installs them): {done.stderr.strip()}")
    return done


def _copy(tmp_path: Path) -> Path:
    """The files the checks read, in a scratch tree to break on purpose."""
    for name in ("Dockerfile", "docker-compose.yml", ".ci/static-checks", "service/__init__.py",
                 "service/settings.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    return tmp_path


def test_static_checks_pass():
    done = _static_checks(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "static-checks: all passed" in done.stdout


# Six breakages, one per check, made in one scratch copy: the script runs every check and reports
# each failure (one run keeps this test fast).
BREAKAGES = [
    ("deploy/kubernetes/deployment-cpu.yaml", "terminationGracePeriodSeconds: 45",
     "terminationGracePeriodSeconds: 20", "terminationGracePeriodSeconds 20 must exceed preStop"),
    ("deploy/kubernetes/gpu/deployment-gpu.yaml", "readOnlyRootFilesystem: true",
     "readOnlyRootFilesystem: true\n            readOnlyRootFileSystem: true",
     "'readOnlyRootFileSystem' was unexpected"),
    ("deploy/kubernetes/configmap.yaml", "INITSVC_QUEUE_DEPTH:", "INITSVC_QUEUE_DEPT:",
     "INITSVC_QUEUE_DEPT is not a Settings field"),
    ("Dockerfile", "FROM ${BASE_IMAGE} AS runtime", "FROM python:latest AS runtime", "DL3007"),
    ("docker-compose.yml", "stop_grace_period: 40s", "stop_grace_period: 40s\n    stop_grace_periods: 40s",
     "'stop_grace_periods' was unexpected"),
    ("deploy/nginx/initsvc-cache.conf", "proxy_cache_lock on;", "proxy_cache_lock off;",
     "initsvc-cache.conf.template must equal deploy/nginx/initsvc-cache.conf"),
]


def test_static_checks_catch_broken_files(tmp_path):
    root = _copy(tmp_path)
    for path, old, new, _ in BREAKAGES:
        text = (root / path).read_text()
        assert old in text, (path, old)
        (root / path).write_text(text.replace(old, new, 1))
    done = _static_checks(root)
    assert done.returncode == 1, done.stdout
    for path, _, _, complaint in BREAKAGES:
        assert complaint in done.stdout + done.stderr, (path, complaint)
    assert "static-checks: FAILED" in done.stderr
