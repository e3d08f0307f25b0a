"""rng "portable-v1": the same bits from the numpy core, the torch engine and the Node client.

Known answers come from Random123 (Philox) and from docs/portable-v1.md (edge words, stream
digests, the full 2^32-word table). Everything else is checked implementation against
implementation, byte for byte, and against scipy's distributions.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from service.engine import portable as engine
from service.portable import (
    PortableRecipeError,
    PortableUnsupportedError,
    PortableWindowError,
    generate,
    resolve_recipe,
)
from service.portable.philox import philox4x32, words_range
from service.portable.transforms import Workspace, normal_from_words, uniform_from_words

ROOT = Path(__file__).resolve().parents[1]
NODE = shutil.which("node")
JS = ROOT / "examples" / "portable.js"
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")
CPU = torch.device("cpu")
TORCH_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
DTYPES = list(TORCH_DTYPES)

# ---- known answers ------------------------------------------------------------------------

KATS = [  # Random123 kat_vectors, philox4x32 10: counter, key -> words
    pytest.param((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8), id="zeros"),
    pytest.param(
        (0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD), id="ones"
    ),
    pytest.param(
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        id="pi",
    ),
]
EDGE_WORDS = {  # word -> float32 bits of normal(word)
    0x00000000: 0xC0CAD08D,
    0x00000001: 0xC0C55364,
    0x7FFFFFFF: 0xAFA06C99,
    0x80000000: 0x2FA06C99,
    0xFFFFFFFF: 0x40CAD08D,
    0x13333332: 0xBFB84291,  # the last tail word
    0x12345678: 0xBFBBD932,
    0xDEADBEEF: 0x3F90149A,
}
STREAMS = [  # (seed, tid, start, kind) -> sha256 of 2^20 float32 little-endian outputs
    pytest.param(0, 0, 0, "normal", "1be5a2e72da64649c8ee6698919c5def1ef287b1f929090de37cdd55829b833f", id="seed0-normal"),
    pytest.param(0, 0, 0, "uniform", "6d77c27980a54490813900f4add3fc1a9f4b68074fdf15787855e9a3b9a2cb13", id="seed0-uniform"),
    pytest.param(
        0x0123456789ABCDEF, 7, 12345, "normal",
        "6e4f9e9dbdf430244e8e70f252a45f330de0ba28444f3b90b18d8e2ac29a9f96", id="seed0123-tid7-normal",
    ),
    pytest.param(
        0x0123456789ABCDEF, 7, 12345, "uniform",
        "15761727a5a1e54af600dfa37f4fdbc6662e43a66b29690552babed29ce14668", id="seed0123-tid7-uniform",
    ),
]
FULL_TABLE_SHA256 = "c6c2151d3d2372b481756a6c5d857d2660932b69730cced02197ea5d7366f706"
STREAM_COUNT = 1 << 20


def _node(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [NODE, str(JS), *args], input=stdin, capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout


def _node_eval(code: str) -> object:
    done = subprocess.run(
        [NODE, "-e", f"const p = require({json.dumps(str(JS))}); console.log(JSON.stringify({code}))"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    return json.loads(done.stdout)


@pytest.mark.parametrize(("counter", "key", "expected"), KATS)
def test_philox_known_answers_numpy(counter, key, expected):
    assert tuple(philox4x32(*counter, *key)[0].tolist()) == expected


@pytest.mark.parametrize(("counter", "key", "expected"), KATS)
def test_philox_known_answers_torch(counter, key, expected):
    c0, c1 = (torch.tensor([c], dtype=torch.int64) for c in counter[:2])
    words = engine.philox4x32(c0, c1, counter[2], counter[3], *key)
    assert tuple(words[0].tolist()) == expected


@needs_node
def test_philox_known_answers_node():
    kats = [param.values for param in KATS]
    calls = [f"p.philox({', '.join(map(str, counter + key))})" for counter, key, _ in kats]
    got = _node_eval("[" + ", ".join(calls) + "]")
    assert [tuple(words) for words in got] == [expected for _, _, expected in kats]


def _edge_bits_numpy() -> list[int]:
    w = np.array(list(EDGE_WORDS), dtype=np.uint32)
    return normal_from_words(w).astype(np.float32).view(np.uint32).tolist()


def test_edge_words_numpy():
    assert _edge_bits_numpy() == list(EDGE_WORDS.values())


@pytest.mark.parametrize("gather_tail", [True, False], ids=["cpu-gather", "cuda-where"])
def test_edge_words_torch(gather_tail):
    w = torch.tensor(list(EDGE_WORDS), dtype=torch.int64)
    x = engine.normal_from_words(w, torch.empty(len(w), dtype=torch.float64), gather_tail=gather_tail)
    assert x.to(torch.float32).view(torch.int32).numpy().view(np.uint32).tolist() == list(EDGE_WORDS.values())


@needs_node
def test_edge_words_node():
    code = "[" + ",".join(f"p.normal({w})" for w in EDGE_WORDS) + "]"
    got = np.array(_node_eval(code), dtype=np.float64).astype(np.float32).view(np.uint32).tolist()
    assert got == list(EDGE_WORDS.values())


def test_torch_transform_matches_numpy_on_random_words_both_tail_paths():
    w = np.random.default_rng(1).integers(0, 2**32, 1 << 16, dtype=np.uint64).astype(np.uint32)
    expected = normal_from_words(w).view(np.int64)
    wt = torch.from_numpy(w.astype(np.int64))
    for gather_tail in (True, False):
        x = engine.normal_from_words(wt, torch.empty(len(w), dtype=torch.float64), gather_tail=gather_tail)
        assert np.array_equal(x.numpy().view(np.int64), expected)


def test_normal_is_exactly_antisymmetric():
    w = np.random.default_rng(0).integers(0, 2**32, 1 << 16, dtype=np.uint64).astype(np.uint32)
    assert np.array_equal(normal_from_words(w), -normal_from_words(np.uint32(0xFFFFFFFF) - w))


def test_seed0_first_words_and_normals():
    assert words_range(0, 0, 0, 0, 4).tolist() == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    x = generate({"scheme": "normal"}, [4], seed=0)
    assert x.view(np.uint32).tolist() == [0xBE82FA50, 0x3F96BB4F, 0x3F2153B7, 0x3E88FDEB]


def _stream_recipe(kind: str) -> dict:
    return {"scheme": kind}  # normal(0, 1) and uniform(0, 1) are x and u exactly


@pytest.mark.parametrize(("seed", "tid", "start", "kind", "digest"), STREAMS)
def test_stream_digest_numpy(seed, tid, start, kind, digest):
    x = generate(_stream_recipe(kind), [start + STREAM_COUNT], seed, tid, slice=[(start, start + STREAM_COUNT)])
    assert hashlib.sha256(x.astype("<f4").tobytes()).hexdigest() == digest


@pytest.mark.parametrize(("seed", "tid", "start", "kind", "digest"), STREAMS)
def test_stream_digest_torch_cpu(seed, tid, start, kind, digest):
    shape, sl = [start + STREAM_COUNT], [(start, start + STREAM_COUNT)]
    x = engine.portable_fill(shape, _stream_recipe(kind), seed, tid, torch.float32, CPU, slice=sl)
    assert hashlib.sha256(x.numpy().astype("<f4").tobytes()).hexdigest() == digest


@needs_node
@pytest.mark.parametrize(("seed", "tid", "start", "kind", "digest"), STREAMS)
def test_stream_digest_node(seed, tid, start, kind, digest):
    out = _node("digest", "--kind", kind, "--seed", str(seed), "--tid", str(tid), "--start", str(start))
    assert out.strip() == digest


# ---- every implementation, every scheme, every dtype ------------------------------------------

RECIPES = {  # id -> (recipe, shape rule)
    "uniform": ({"scheme": "uniform", "a": -0.3, "b": 0.7}, "any"),
    "normal": ({"scheme": "normal", "mean": 0.5, "std": 2.0}, "any"),
    "trunc_normal": ({"scheme": "trunc_normal", "mean": 0.1, "std": 0.5, "a": -0.4, "b": 0.9}, "any"),
    "trunc_normal_tf": ({"scheme": "trunc_normal_tf", "mean": 0.2, "std": 0.02, "a": -1.5, "b": 2.0}, "any"),
    "xavier_uniform-tanh": ({"scheme": "xavier_uniform", "gain": {"nonlinearity": "tanh"}}, "2d+"),
    "xavier_normal-0.5": ({"scheme": "xavier_normal", "gain": 0.5}, "2d+"),
    "kaiming_uniform": ({"scheme": "kaiming_uniform"}, "2d+"),
    "kaiming_uniform-sqrt5": ({"scheme": "kaiming_uniform", "a": math.sqrt(5)}, "2d+"),
    "kaiming_normal-fan_out-relu": ({"scheme": "kaiming_normal", "mode": "fan_out", "nonlinearity": "relu"}, "2d+"),
    "kaiming_normal-leaky0.2": ({"scheme": "kaiming_normal", "a": 0.2}, "2d+"),
    "variance_scaling-trunc-fan_avg": ({"scheme": "variance_scaling", "scale": 2.0, "mode": "fan_avg"}, "2d+"),
    "variance_scaling-normal-fan_out": (
        {"scheme": "variance_scaling", "mode": "fan_out", "distribution": "normal"}, "2d+"),
    "variance_scaling-uniform": ({"scheme": "variance_scaling", "scale": 0.5, "distribution": "uniform"}, "2d+"),
    "lecun_uniform": ({"scheme": "lecun_uniform"}, "2d+"),
    "lecun_normal": ({"scheme": "lecun_normal"}, "2d+"),
    "sparse": ({"scheme": "sparse", "sparsity": 0.3, "std": 0.05}, "2d"),
    "constant": ({"scheme": "constant", "val": 0.1}, "any"),
    "ones": ({"scheme": "ones"}, "any"),
    "zeros": ({"scheme": "zeros"}, "any"),
    "eye": ({"scheme": "eye"}, "2d"),
    "dirac-groups2": ({"scheme": "dirac", "groups": 2}, "conv"),
}
SHAPES = {  # rule -> shapes, each with a slice
    "any": [([37], [(5, 30)]), ([17, 23], [(3, 4), (5, 20)]), ([8, 3, 3, 3], [(1, 7), None, (0, 2), (1, 3)]),
            ([0, 5], [None, (1, 4)])],
    "2d+": [([17, 23], [(2, 15), None]), ([8, 3, 3, 3], [(1, 7), None, (0, 2), (1, 3)]),
            ([300, 257], [(100, 299), (3, 250)]), ([0, 5], [None, (1, 4)])],
    "2d": [([17, 23], [(2, 15), (4, 9)]), ([300, 257], [(100, 299), (3, 250)]), ([0, 5], [None, (1, 4)])],
    "conv": [([8, 3, 3, 3], [(1, 7), None, (0, 2), (1, 3)]), ([4, 6, 5], [(1, 3), (1, 6), (2, 3)]),
             ([0, 3, 3, 3], [None, (1, 2), None, None])],
}
SEEDS = [0, 2**64 - 1, 0x0123456789ABCDEF, 42]
TIDS = [0, 1, 7, 2**32 - 1]


def _cases() -> list[dict]:
    cases = []
    for rid, (recipe, rule) in RECIPES.items():
        for shape, sl in SHAPES[rule]:
            for dtype in DTYPES:
                for cut in (None, sl):
                    n = len(cases)
                    cases.append({
                        "id": f"{rid}-{'x'.join(map(str, shape))}-{dtype}-{'slice' if cut else 'full'}",
                        "recipe": recipe, "shape": shape, "slice": cut, "dtype": dtype,
                        "seed": SEEDS[n % 4], "tid": TIDS[(n // 4) % 4],
                    })
    return cases


CASES = _cases()


def _numpy_bytes(case: dict) -> bytes:
    x = generate(case["recipe"], case["shape"], case["seed"], case["tid"], case["dtype"], case["slice"])
    return np.ascontiguousarray(x).tobytes()


def _torch_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().view(-1).view(torch.uint8).numpy().tobytes()


def _torch_init(case: dict) -> torch.Tensor:
    """torch.nn.init's own deterministic filler on the full shape, then the slice."""
    t = torch.empty(case["shape"], dtype=TORCH_DTYPES[case["dtype"]])
    recipe = dict(case["recipe"])
    scheme = recipe.pop("scheme")
    getattr(torch.nn.init, scheme + "_")(t, **recipe)
    sl = case["slice"] or [None] * len(case["shape"])
    return t[tuple(slice(*c) if c else slice(None) for c in sl)]


@pytest.fixture(scope="module")
def node_digests() -> dict[str, str]:
    if NODE is None:
        pytest.skip("node is not installed")
    lines = [json.dumps({**{k: c[k] for k in ("recipe", "shape", "dtype", "tid", "slice")}, "seed": str(c["seed"])})
             for c in CASES]
    out = _node("batch", stdin="\n".join(lines) + "\n").splitlines()
    return {c["id"]: h for c, h in zip(CASES, out, strict=True)}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_numpy_torch_cpu_and_node_agree_bit_for_bit(case, node_digests):
    got = _numpy_bytes(case)
    t = engine.portable_fill(case["shape"], case["recipe"], case["seed"], case["tid"],
                             TORCH_DTYPES[case["dtype"]], CPU, slice=case["slice"])
    if t is None:  # deterministic schemes are torch's own fillers
        t = _torch_init(case)
    assert _torch_bytes(t) == got
    assert node_digests[case["id"]] == hashlib.sha256(got).hexdigest()
    if case["slice"]:  # slice == full[slice]
        full = generate(case["recipe"], case["shape"], case["seed"], case["tid"], case["dtype"])
        cut = full[tuple(slice(*c) if c else slice(None) for c in case["slice"])]
        assert np.ascontiguousarray(cut).tobytes() == got


def test_slices_cross_chunk_boundaries():
    recipe = {"scheme": "trunc_normal_tf", "a": -1.0, "b": 1.5}
    full = generate(recipe, [3, 70001], 9, 3, "float64")
    for sl in ([None, (32760, 32780)], [(1, 3), (5, 69999)], [(0, 3), (70000, 70001)]):
        part = generate(recipe, [3, 70001], 9, 3, "float64", slice=sl)
        assert np.array_equal(part, full[tuple(slice(*c) if c else slice(None) for c in sl)])


@needs_node
def test_node_cli_writes_raw_little_endian_slice(tmp_path):
    recipe = {"scheme": "kaiming_normal", "nonlinearity": "relu"}
    path = tmp_path / "w.bin"
    _node("tensor", "--recipe", json.dumps(recipe), "--shape", "64,3,7,7", "--seed", str(2**64 - 1),
          "--tid", "3", "--dtype", "bfloat16", "--slice", "8:24,:,1:6,:", "-o", str(path))
    expected = generate(recipe, [64, 3, 7, 7], 2**64 - 1, 3, "bfloat16", [(8, 24), None, (1, 6), None])
    assert path.read_bytes() == expected.astype("<u2").tobytes()


# ---- the rules of the families -------------------------------------------------------------


def test_truncation_takes_the_first_attempt_inside_the_window():
    recipe = {"scheme": "trunc_normal", "mean": 0.2, "std": 1.0, "a": -0.3, "b": 0.6}  # P ~ 0.23
    alpha, beta = (-0.3 - 0.2) / 1.0, (0.6 - 0.2) / 1.0
    x = generate(recipe, [5, 41], seed=2**64 - 1, tid=9, dtype="float64").ravel()
    expected = []
    for i in range(x.size):  # one attempt at a time, as the definition reads
        k = 0
        while not alpha <= (xk := normal_from_words(words_range(2**64 - 1, 9, k, i, 1))[0]) <= beta:
            k += 1
        expected.append(0.2 + 1.0 * xk)
    assert np.array_equal(x, np.array(expected))


def test_sparse_zeros_each_column_exactly_ceil_sparsity_rows():
    x = generate({"scheme": "sparse", "sparsity": 0.25, "std": 1.0}, [101, 40], seed=5)
    assert ((x == 0).sum(axis=0) == math.ceil(0.25 * 101)).all()


def test_sparse_zeros_go_to_smallest_attempt1_words():
    rows, cols = 9, 4
    x = generate({"scheme": "sparse", "sparsity": 0.4}, [rows, cols], seed=11, tid=2)
    w = words_range(11, 2, 1, 0, rows * cols).reshape(rows, cols)
    for c in range(cols):
        zero_rows = sorted(np.lexsort((np.arange(rows), w[:, c]))[: math.ceil(0.4 * rows)])
        assert np.flatnonzero(x[:, c] == 0).tolist() == zero_rows


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "recipe",
    [
        pytest.param({"scheme": "trunc_normal", "mean": 0.3, "std": 0.7, "a": -0.5, "b": 1.0}, id="trunc_normal"),
        pytest.param({"scheme": "trunc_normal_tf", "mean": 1.0, "std": 0.25, "a": 0.5, "b": 2.0}, id="tf-one-sided"),
        pytest.param({"scheme": "trunc_normal", "std": 2.0, "a": -0.25, "b": 0.25}, id="narrow-central"),
    ],
)
def test_truncated_values_always_inside_a_b(recipe, dtype):
    x = generate(recipe, [64, 1024], seed=3, tid=1, dtype=dtype)
    if dtype == "bfloat16":
        x = (x.astype(np.uint32) << 16).view(np.float32)
    if recipe["scheme"] == "trunc_normal":
        lo, hi = recipe["a"], recipe["b"]
    else:
        lo = recipe["mean"] + recipe["std"] * recipe["a"]
        hi = recipe["mean"] + recipe["std"] * recipe["b"]
    assert x.min() >= lo and x.max() <= hi


def test_window_below_1e4_is_refused_naming_a_b_and_probability():
    with pytest.raises(PortableWindowError) as err:
        generate({"scheme": "trunc_normal", "mean": 10.0, "a": -2.0, "b": 2.0}, [4], seed=0)
    e = err.value
    assert isinstance(e, ValueError)
    assert (e.a, e.b) == (-2.0, 2.0) and e.probability < 1e-4
    assert "a=-2.0" in str(e) and "b=2.0" in str(e) and "probability" in str(e)


def test_window_just_above_1e4_is_made():
    recipe = {"scheme": "trunc_normal_tf", "a": 3.5, "b": 4.0}  # P ~ 2.0e-4
    assert resolve_recipe(recipe, [8]).probability > 1e-4
    x = generate(recipe, [8], seed=1, dtype="float64")
    assert ((x >= 3.5) & (x <= 4.0)).all()
    with pytest.raises(PortableWindowError):
        resolve_recipe({"scheme": "trunc_normal_tf", "a": 3.8, "b": 4.0}, [8])  # P ~ 4e-5


def test_orthogonal_has_no_portable_form():
    with pytest.raises(PortableUnsupportedError, match="orthogonal"):
        generate({"scheme": "orthogonal"}, [4, 4], seed=0)


def test_bad_recipes_are_value_errors_naming_the_problem():
    with pytest.raises(PortableRecipeError, match="sdt"):
        generate({"scheme": "normal", "sdt": 1.0}, [3], seed=0)
    with pytest.raises(PortableRecipeError, match="fan_in=0"):
        generate({"scheme": "xavier_uniform"}, [0, 0], seed=0)
    with pytest.raises(PortableRecipeError, match="seed"):
        generate({"scheme": "normal"}, [3], seed=2**64)


def test_parameters_follow_torch_formulas():
    import torch.nn.init as init

    plan = resolve_recipe({"scheme": "kaiming_uniform", "a": math.sqrt(5)}, [64, 3, 7, 7])
    gain = init.calculate_gain("leaky_relu", math.sqrt(5))
    assert plan.high == math.sqrt(3.0) * (gain / math.sqrt(3 * 49)) and plan.low == -plan.high
    plan = resolve_recipe({"scheme": "xavier_normal", "gain": {"nonlinearity": "tanh"}}, [30, 20])
    assert plan.std == init.calculate_gain("tanh") * math.sqrt(2.0 / float(50))
    plan = resolve_recipe({"scheme": "lecun_normal"}, [30, 20])
    assert plan.std == math.sqrt(1.0 / 20) / 0.87962566103423978 and (plan.alpha, plan.beta) == (-2.0, 2.0)


def test_client_reexport_does_not_import_torch():
    code = "import sys, service.client.portable as p; p.generate([2], 'normal', 0); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# ---- statistics ----------------------------------------------------------------------------

N_STAT = 200_000


@pytest.mark.parametrize("seed", [0, 2**64 - 1])
def test_uniform_passes_ks(seed):
    x = generate({"scheme": "uniform", "a": -1.0, "b": 3.0}, [N_STAT], seed, dtype="float64")
    assert stats.kstest(x, "uniform", args=(-1.0, 4.0)).pvalue > 1e-3


@pytest.mark.parametrize("seed", [0, 2**64 - 1])
def test_normal_passes_ks(seed):
    x = generate({"scheme": "normal", "mean": 1.0, "std": 2.0}, [N_STAT], seed, tid=3, dtype="float64")
    assert stats.kstest(x, "norm", args=(1.0, 2.0)).pvalue > 1e-3


@pytest.mark.parametrize(
    ("recipe", "alpha", "beta", "loc", "scale"),
    [
        pytest.param({"scheme": "trunc_normal", "mean": 0.5, "std": 1.5, "a": -1.0, "b": 2.0}, -1.0, 1.0, 0.5, 1.5,
                     id="trunc_normal"),
        pytest.param({"scheme": "trunc_normal_tf", "a": 0.5, "b": 3.0}, 0.5, 3.0, 0.0, 1.0, id="tf-one-sided"),
        pytest.param({"scheme": "lecun_normal"}, -2.0, 2.0, 0.0, math.sqrt(1 / 400) / 0.87962566103423978,
                     id="lecun_normal"),
    ],
)
def test_truncated_passes_ks(recipe, alpha, beta, loc, scale):
    x = generate(recipe, [500, 400], seed=7, tid=2, dtype="float64").ravel()
    assert stats.kstest(x, stats.truncnorm(alpha, beta, loc=loc, scale=scale).cdf).pvalue > 1e-3


# ---- the full table (slow: a separate CI step) ----------------------------------------------


def _table_chunk(start: int, count: int) -> bytes:
    sub = 1 << 15
    ws, x = Workspace(sub), np.empty(sub, dtype=np.float64)
    out = np.empty(count, dtype="<f4")
    for lo in range(0, count, sub):
        w = np.arange(start + lo, start + lo + sub, dtype=np.uint64).astype(np.uint32)
        normal_from_words(w, out=x, ws=ws)
        out[lo : lo + sub] = x
    return out.tobytes()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_full_table_of_2_pow_32_normals_matches_the_note():
    chunk, window = 1 << 22, 4
    digest = hashlib.sha256()
    starts = list(range(0, 1 << 32, chunk))
    with ThreadPoolExecutor(max_workers=2) as pool:
        for i in range(0, len(starts), window):  # bounded look-ahead keeps memory small
            for part in pool.map(_table_chunk, starts[i : i + window], [chunk] * window):
                digest.update(part)
    assert digest.hexdigest() == FULL_TABLE_SHA256


def test_uniform_words_are_24_bit_grid():
    w = np.array([0, 255, 256, 0xFFFFFFFF], dtype=np.uint32)
    assert uniform_from_words(w).tolist() == [0.0, 0.0, 2.0**-24, 1.0 - 2.0**-24]
