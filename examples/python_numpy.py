#!/usr/bin/env python3
"""The init service from Python with numpy only: no torch, no client library, no safetensors.

    INITSVC_URL=http://127.0.0.1:8000 python examples/python_numpy.py [--json] [--save DIR]

Fetches four tensors (float32, float16, bfloat16, float64; by POST and by GET), parses the
safetensors answer by hand (8-byte little-endian header length, JSON header, raw data) and makes
numpy arrays. numpy has no bfloat16: a bfloat16 is the top half of a float32, so widening its bits
(uint16 -> uint32, << 16) and viewing them as float32 gives exactly the same numbers.
--save writes each array as DIR/NAME.npy; --json prints one JSON object per tensor.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

# torch.manual_seed(seed); torch.nn.init.<scheme>_(torch.empty(shape, dtype=dtype), **params)
RECIPES = [
    {"name": "fc1.weight", "shape": [256, 784], "init": {"scheme": "kaiming_uniform", "a": 2.23606797749979},
     "dtype": "float32", "device": "cpu", "seed": 0},
    {"name": "embed", "shape": [64, 32], "init": {"scheme": "normal", "std": 0.02},
     "dtype": "float16", "device": "cpu", "seed": 1},
    {"name": "attn.qkv", "shape": [96, 32], "init": {"scheme": "trunc_normal", "std": 0.02},
     "dtype": "bfloat16", "device": "cpu", "seed": 2},
    {"name": "head", "shape": [10, 64], "init": {"scheme": "xavier_normal", "gain": 1.0},
     "dtype": "float64", "device": "cpu", "seed": 3},
]
NUMPY_TYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2"}


def fetch(url: str, recipe: dict, use_get: bool) -> bytes:
    """POST the recipe as JSON, or GET it as a query string (the same bytes either way)."""
    headers = {"accept": "application/octet-stream"}
    if os.environ.get("INITSVC_API_KEY"):
        headers["authorization"] = "Bearer " + os.environ["INITSVC_API_KEY"]
    if use_get:
        query = {"shape": ",".join(map(str, recipe["shape"])), **recipe["init"],
                 **{k: recipe[k] for k in ("dtype", "device", "seed", "name")}}
        request = urllib.request.Request(f"{url}/v1/tensor?{urllib.parse.urlencode(query)}", headers=headers)
    else:
        body = json.dumps(recipe).encode()
        request = urllib.request.Request(f"{url}/v1/tensor", data=body, method="POST",
                                         headers={**headers, "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return answer.read()


def parse_safetensors(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """``(metadata, arrays)``: u64 little-endian N, N bytes of JSON, then the tensors' bytes."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    metadata = {key: json.loads(value) if key != "format" else value
                for key, value in header.pop("__metadata__", {}).items()}
    arrays = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        raw = np.frombuffer(data, dtype=NUMPY_TYPES[entry["dtype"]], offset=8 + n + begin,
                            count=(end - begin) // np.dtype(NUMPY_TYPES[entry["dtype"]]).itemsize)
        if entry["dtype"] == "BF16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)  # exact: bf16 is float32's top 16 bits
        arrays[name] = raw.astype(raw.dtype.newbyteorder("=")).reshape(entry["shape"])
    return metadata, arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("INITSVC_URL", "http://127.0.0.1:8000"),
                        help="service base URL (default: $INITSVC_URL or http://127.0.0.1:8000)")
    parser.add_argument("--save", type=Path, help="write each array as DIR/NAME.npy")
    parser.add_argument("--json", action="store_true", help="one JSON object per tensor")
    args = parser.parse_args()
    url = args.url.rstrip("/")
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)

    for i, recipe in enumerate(RECIPES):
        metadata, arrays = parse_safetensors(fetch(url, recipe, use_get=i % 2 == 1))
        array = arrays[recipe["name"]]
        stats = metadata["stats"][recipe["name"]]
        if args.save:
            np.save(args.save / f"{recipe['name']}.npy", array)
        line = {
            "name": recipe["name"], "dtype": recipe["dtype"], "shape": list(array.shape),
            "request": metadata["request"], "mean": float(array.mean(dtype=np.float64)),
            "std": float(array.std(dtype=np.float64, ddof=1)), "min": float(array.min()), "max": float(array.max()),
            "server_std": stats["std"], "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
        }
        if args.json:
            print(json.dumps(line))
        else:
            print(f"{line['name']:<12} {line['dtype']:<9} {str(tuple(line['shape'])):<11} "
                  f"mean {line['mean']:+.6f}  std {line['std']:.6f} (server {line['server_std']:.6f})  "
                  f"min {line['min']:+.6f}  max {line['max']:+.6f}  seed {metadata['request']['seed']}")


if __name__ == "__main__":
    main()
