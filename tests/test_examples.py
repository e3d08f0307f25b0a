"""The examples in other languages run against a live server and get torch's values exactly."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from tests.torch_reference import as_bytes, reference

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
KAIMING = ([256, 784], "kaiming_uniform", {"a": math.sqrt(5)})


def _run(command: list[str], url: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "INITSVC_URL": url}
    env.pop("INITSVC_API_KEY", None)
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, **kwargs)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done


def _expected(request: dict) -> torch.Tensor:
    """The example's tensor computed by torch from the normalized request it printed."""
    params = {k: v for k, v in request["init"].items() if k != "scheme"}
    return reference(request["shape"], request["init"]["scheme"], params, request["dtype"], request["seed"])


def test_curl_script_posts_gets_heads_and_reads_json(server, tmp_path):
    done = _run(["bash", str(EXAMPLES / "curl.sh"), str(tmp_path)], server.url)
    expected = reference(*KAIMING, seed=0)
    for name in ("post", "get"):
        got = safetensors.torch.load_file(tmp_path / f"{name}.safetensors")["weight"]
        assert as_bytes(got) == as_bytes(expected), name
    headers = dict(line.split(": ", 1) for line in done.stdout.splitlines() if line.startswith(("content-length",
                                                                                                  "x-init-")))
    assert int(headers["content-length"]) == (tmp_path / "post.safetensors").stat().st_size
    assert headers["x-init-seed"] == "0" and headers["x-init-device"] == "cpu"
    if shutil.which("jq") is None:
        assert "jq is not installed" in done.stderr
        pytest.skip("jq is not installed: the JSON part was skipped (apt-get install jq)")
    summary = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    assert summary["shape"] == [256, 784]
    assert summary["stats"]["min"] == expected.min().item() and summary["stats"]["max"] == expected.max().item()


def test_python_numpy_example_runs_without_torch(server, tmp_path):
    # The example imports no torch; make sure of it by making torch unimportable.
    runner = (
        "import runpy, sys; sys.modules['torch'] = None; "
        f"sys.argv = ['python_numpy.py', '--json', '--save', {str(tmp_path)!r}]; "
        f"runpy.run_path({str(EXAMPLES / 'python_numpy.py')!r}, run_name='__main__')"
    )
    done = _run([sys.executable, "-c", runner], server.url)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["dtype"] for line in lines] == ["float32", "float16", "bfloat16", "float64"]
    for line in lines:
        expected = _expected(line["request"])
        # numpy has no bfloat16: the example widens it to float32, which holds the same values
        expected = expected.float() if expected.dtype == torch.bfloat16 else expected
        got = np.load(tmp_path / f"{line['name']}.npy")
        assert got.dtype == expected.numpy().dtype and list(got.shape) == line["shape"]
        assert got.tobytes() == expected.numpy().tobytes(), line["name"]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_example_decodes_every_dtype_exactly(server):
    done = _run(["node", str(EXAMPLES / "node_fetch.mjs"), "--json", "--url", server.url], server.url)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["dtype"] for line in lines] == ["float32", "float16", "bfloat16", "float64"]
    for line in lines:
        expected = _expected(line["request"])
        # float16 and bfloat16 decode to Float32Array; float64 stays Float64Array
        widened = expected.double() if expected.dtype == torch.float64 else expected.float()
        assert line["values"] == ("Float64Array" if expected.dtype == torch.float64 else "Float32Array")
        assert line["shape"] == list(expected.shape)
        assert line["sha256"] == hashlib.sha256(widened.numpy().tobytes()).hexdigest(), line["name"]
        assert line["min"] == widened.min().item() and line["max"] == widened.max().item()
        assert line["mean"] == pytest.approx(widened.double().mean().item(), rel=1e-9, abs=1e-12)


def _readme_section(title: str) -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_quickstart_post_get_and_python_are_one_recipe_and_show_the_files_stats(server, http):
    import re

    section = _readme_section("Quickstart")
    body = json.loads(re.search(r"-d '(\{.*?\})'", section).group(1))
    query = re.search(r"'localhost:8000(/v1/tensor\?[^']+)'", section).group(1)
    shown = json.loads(re.search(r"^# (\{\"mean\".*\})$", section, re.M).group(1))
    post = http.post("/v1/tensor", json=body)
    get = http.get(query)
    assert post.status_code == get.status_code == 200 and post.content == get.content
    assert get.headers["cache-control"] == "public, max-age=31536000, immutable"
    header_length = int.from_bytes(post.content[:8], "little")
    stats = json.loads(json.loads(post.content[8 : 8 + header_length])["__metadata__"]["stats"])["weight"]
    assert shown == {key: stats[key] for key in ("mean", "std", "min", "max")}
    summary = http.get(query, headers={"accept": "application/json"}).json()["tensors"]["weight"]["stats"]
    assert summary == stats
    expected = reference([256, 784], "kaiming_uniform", {"a": math.sqrt(5)}, seed=0)
    assert body == {"shape": [256, 784], "init": {"scheme": "kaiming_uniform", "a": math.sqrt(5)}, "seed": 0,
                    "device": "cpu"}
    assert as_bytes(safetensors.torch.load(post.content)["weight"]) == as_bytes(expected)
    assert 'client.tensor([256, 784], "kaiming_uniform", a=5 ** 0.5, seed=0, device="cpu")' in section


def test_a_seeded_get_with_device_auto_is_no_cache_and_revalidates(http):
    query = "/v1/tensor?shape=16,8&scheme=kaiming_uniform&seed=0"
    first = http.get(query)
    assert first.headers["cache-control"] == "no-cache" and first.headers["etag"]
    again = http.get(query, headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304
    assert http.get(query + "&device=cpu").headers["cache-control"] == "public, max-age=31536000, immutable"
    assert http.get("/v1/tensor?shape=16,8&scheme=kaiming_uniform").headers["cache-control"] == "no-store"
    assert "`device=auto`, the default, it is\n`no-cache`" in _readme_section("Quickstart")
