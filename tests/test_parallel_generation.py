"""Parallel and sliced CPU generation gives torch's serial bits, byte for byte.

The expected side is plain torch: ``torch.Generator().manual_seed(seed)``, ``base_draws`` draws
taken by ``random_`` on int32 (one draw each), then ``t.uniform_(p1, p2)`` or ``t.normal_(p1, p2)``.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from service.engine import chunked, mt19937, pieces, slices

OPS = ["uniform", "normal"]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
SEEDS = [0, 1234, 2**32 + 1, 2**64 - 1]
P1, P2 = -3.0, 7.5
# n < 16, n % 16 != 0 tails, 2^k ± 1, chunk bounds at 624 and 1248, and past 624·3.
SIZES = [0, 1, 5, 15, 16, 17, 33, 255, 257, 623, 625, 1023, 1025, 1249, 1263, 2047, 2049, 3 * 624 + 7, 4100]


def _id(value) -> str:
    return str(value).removeprefix("torch.")


def _bytes(t: torch.Tensor) -> np.ndarray:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy()


def _stepped(seed: int, base_draws: int) -> torch.Generator:
    g = torch.Generator().manual_seed(seed)
    if base_draws:
        torch.empty(base_draws, dtype=torch.int32).random_(generator=g)
    return g


def _serial(op: str, dtype: torch.dtype, shape, seed: int, base_draws: int = 0) -> torch.Tensor:
    t = torch.empty(shape, dtype=dtype)
    g = _stepped(seed, base_draws)
    return t.uniform_(P1, P2, generator=g) if op == "uniform" else t.normal_(P1, P2, generator=g)


def _assert_same_bytes(got: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert got.shape == expected.shape, what
    np.testing.assert_array_equal(_bytes(got), _bytes(expected), err_msg=what)


@pytest.fixture
def always_parallel(monkeypatch):
    """Split even tiny tensors, so every size below exercises the chunked path."""
    monkeypatch.setattr(chunked, "PARALLEL_MIN_ELEMENTS", 0)
    assert all(chunked.self_test().values()), "a failed self-test would hide the chunked path"


@pytest.fixture
def fresh_self_test():
    chunked.clear_self_test()
    yield
    chunked.clear_self_test()


# --- state codec and jump-ahead ------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS, ids=_id)
@pytest.mark.parametrize("k", [0, 1, 623, 624, 625, 10**5], ids=lambda k: f"draws{k}")
def test_state_codec_round_trips_get_state_after_serial_draws(seed, k):
    g = _stepped(seed, k)
    state = g.get_state()
    decoded = mt19937.decode_state(state)
    assert decoded.initial_seed == seed and decoded.seeded == 1
    _assert_same_bytes(mt19937.encode_state(decoded), state, f"round trip after {k} draws")
    _assert_same_bytes(mt19937.generator_at(seed, k).get_state(), state, f"generator_at({k})")


def test_state_codec_round_trips_a_cached_double_normal():
    g = _stepped(3, 100)
    torch.empty(9).normal_(generator=g)  # n < 16 and odd: normal_distribution caches one value
    state = g.get_state()
    decoded = mt19937.decode_state(state)
    assert decoded.normal_is_valid == 1 and decoded.normal_y != 0.0
    _assert_same_bytes(mt19937.encode_state(decoded), state, "cached normal")


def test_int32_random_and_float32_uniform_take_one_draw_per_element():
    """The reference burns draws with int32 ``random_``; float32 ``uniform_`` agrees on the count."""
    for k in (1, 624, 1000):
        g = torch.Generator().manual_seed(5)
        torch.empty(k).uniform_(generator=g)
        _assert_same_bytes(g.get_state(), _stepped(5, k).get_state(), f"{k} draws")


@pytest.mark.parametrize("seed", [0, 2**32 + 1, 2**64 - 1], ids=_id)
@pytest.mark.parametrize(
    "k",
    # 624·2^10 from the seeded array: JT[10] has a constant term, so word 0 needs its low-bit fix.
    [1247, 1248, 1249, 624 * 128, 624 * 129 + 5, 624 * 2**10, 10**6 + 3, 3 * 10**6],
    ids=lambda k: f"draws{k}",
)
def test_generator_at_equals_stepped_generator_byte_for_byte(seed, k):
    _assert_same_bytes(mt19937.generator_at(seed, k).get_state(), _stepped(seed, k).get_state(), str(k))


def test_jump_from_a_state_with_cached_normal_equals_stepping_whole_blocks():
    g = _stepped(11, 777)
    torch.empty(3).normal_(generator=g)
    start = mt19937.decode_state(g.get_state())
    blocks = 200  # past the direct-twist bits, so one table pass runs
    torch.empty(624 * blocks, dtype=torch.int32).random_(generator=g)
    _assert_same_bytes(mt19937.encode_state(mt19937.jump(start, blocks)), g.get_state(), "jump")


def test_characteristic_polynomial_has_degree_19937_and_135_terms():
    c = mt19937.characteristic_polynomial()
    assert c.bit_length() - 1 == mt19937.DEGREE and c.bit_count() == 135


def test_stream_cursor_going_backwards_restarts_from_the_seed():
    cursor = mt19937.StreamCursor(7)
    cursor.state(10**6)
    state = cursor.state(700)
    _assert_same_bytes(mt19937.encode_state(state), _stepped(7, 700).get_state(), "backwards")


# --- draw accounting -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("op", OPS)
def test_draws_consumed_is_where_torch_leaves_the_generator(op, dtype):
    for n in [0, 1, 2, 9, 10, 15, 16, 17, 31, 32, 33, 1000, 1001]:
        g = torch.Generator().manual_seed(9)
        chunked.fill_serial_(torch.empty(n, dtype=dtype), op, P1, P2, g)
        after = mt19937.decode_state(g.get_state())
        expected = mt19937.state_at(9, chunked.draws_consumed(op, dtype, n))
        assert (after.left, after.next) == (expected.left, expected.next), f"n={n}"
        assert np.array_equal(after.words, expected.words), f"n={n}"


def test_draws_consumed_matches_the_design_note_table():
    table = {
        ("uniform", torch.float32): (1000, 1001, 10),
        ("uniform", torch.float64): (2000, 2002, 20),
        ("normal", torch.float32): (1016, 1017, 20),
        ("normal", torch.float64): (2032, 2034, 20),
        ("normal", torch.float16): (1008, 1008, 20),
        ("normal", torch.bfloat16): (1008, 1008, 20),
    }
    for (op, dtype), counts in table.items():
        assert tuple(chunked.draws_consumed(op, dtype, n) for n in (1000, 1001, 10)) == counts


# --- pieces.fill_in_pieces_ (the service's whole-tensor fast path) --------------------------------


def _pieces(t: torch.Tensor, op: str, seed: int, threads: int, base_draws: int = 0) -> torch.Tensor:
    pieces.fill_in_pieces_(t.view(-1), op, P1, P2, seed, base_draws, threads)
    return t


@pytest.mark.parametrize("threads", [1, 2, 3], ids=lambda t: f"threads{t}")
@pytest.mark.parametrize("seed", SEEDS, ids=_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("op", OPS)
def test_pieces_equal_serial_torch_around_chunk_boundaries(always_parallel, op, dtype, seed, threads):
    for n in SIZES:
        t = _pieces(torch.empty(n, dtype=dtype), op, seed, threads)
        _assert_same_bytes(t, _serial(op, dtype, n, seed), f"n={n}")


@pytest.mark.parametrize("threads", [2, 3], ids=lambda t: f"threads{t}")
@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("op", OPS)
def test_pieces_of_a_large_tensor_jump_with_table_passes(always_parallel, op, dtype, threads):
    shape = (257, 1021)  # 262,397 elements: pieces start > 128 blocks in
    assert len(pieces.piece_bounds(op, 257 * 1021, threads)) == threads + 1
    t = _pieces(torch.empty(shape, dtype=dtype), op, 2**64 - 1, threads)
    _assert_same_bytes(t, _serial(op, dtype, shape, 2**64 - 1), str(shape))


@pytest.mark.parametrize("base_draws", [1, 623, 624, 625, 10**6 + 3], ids=lambda b: f"base{b}")
@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("op", OPS)
def test_pieces_after_base_draws_equal_serial_torch(always_parallel, op, dtype, base_draws):
    for n in [7, 1263, 4100]:
        t = _pieces(torch.empty(n, dtype=dtype), op, 1234, 3, base_draws)
        _assert_same_bytes(t, _serial(op, dtype, n, 1234, base_draws), f"n={n}")


def test_below_the_break_even_a_tensor_is_one_piece_and_exact():
    n = chunked.PARALLEL_MIN_ELEMENTS - 1
    assert pieces.piece_bounds("uniform", n, 2) == [0, n]
    t = _pieces(torch.empty(n), "uniform", 5, 2)
    _assert_same_bytes(t, _serial("uniform", torch.float32, n, 5), "small")


# --- fill_slice ----------------------------------------------------------------------------------


def _random_bounds(rng: random.Random, shape) -> list[tuple[int, int]]:
    bounds = []
    for size in shape:
        kind = rng.random()
        if kind < 0.3:
            bounds.append((0, size))
        elif kind < 0.4:
            bounds.append((size, size) if rng.random() < 0.5 else (rng.randint(0, size),) * 2)
        else:
            a = rng.randint(0, size - 1)
            bounds.append((a, rng.randint(a + 1, size)))
    return bounds


def _check_slices(op, dtype, shape, bound_sets, seed, base_draws=0):
    full = _serial(op, dtype, shape, seed, base_draws)
    for bounds in bound_sets:
        expected = full[tuple(slice(s, e) for s, e in bounds)]
        out = torch.empty(expected.shape, dtype=dtype)
        chunked.fill_slice(out, op, P1, P2, seed, shape, bounds, base_draws)
        _assert_same_bytes(out, expected, f"{list(shape)}{bounds}")


SHAPES = [(3, 5), (40, 37), (700, 9), (2, 3, 4, 5), (5, 7, 11, 13), (3, 2, 17, 29)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("op", OPS)
def test_fill_slice_equals_the_slice_of_the_full_tensor(op, dtype, shape):
    rng = random.Random(f"{op}{dtype}{shape}")
    bound_sets = [_random_bounds(rng, shape) for _ in range(25)]
    bound_sets += [
        [(1, shape[0] - 1)] + [(0, s) for s in shape[1:]],  # first-dim slice: one run
        [(0, s) for s in shape[:-1]] + [(shape[-1] - 3, shape[-1])],  # inner-dim slice: many runs
        [(0, s) for s in shape],  # everything
    ]
    _check_slices(op, dtype, shape, bound_sets, seed=rng.choice(SEEDS))


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("op", OPS)
def test_fill_slice_with_tiny_skip_and_piece_sizes_jumps_scatters_and_stays_exact(monkeypatch, op, dtype):
    """Shrunk thresholds force every path: jumps between runs, many pieces, indexed scatter."""
    monkeypatch.setattr(slices, "SKIP_MIN_DRAWS", 40)
    monkeypatch.setattr(slices, "PIECE_ELEMENTS", 48)
    monkeypatch.setattr(slices, "LONG_RUN", 6)
    rng = random.Random(f"tiny{op}{dtype}")
    for shape in [(61, 53), (4, 5, 6, 37), (2000,)]:
        bound_sets = [_random_bounds(rng, shape) for _ in range(12)]
        _check_slices(op, dtype, shape, bound_sets, seed=2**64 - 1, base_draws=625)


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("op", OPS)
def test_fill_slice_far_into_a_large_tensor_after_base_draws(op, dtype):
    shape = (1031, 1013)  # a 1/8-row slice ending in normal_'s tail (n % 16 == 3)
    _check_slices(op, dtype, shape, [[(900, 1031), (0, 1013)], [(3, 17), (500, 509)]], 1234, 10**5 + 1)


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
def test_fill_slice_inside_normal_tail_reproduces_torch_tail_rule(dtype):
    """Elements [n-16, n) are redrawn when n % 16 != 0; slices starting near them must match."""
    for n in (17, 31, 48, 1001, 1263):
        bound_sets = [[(a, min(n, a + w))] for a in range(max(0, n - 36), n) for w in (1, 2, 19)]
        _check_slices("normal", dtype, (n,), bound_sets, seed=5, base_draws=3)


def test_fill_slice_of_an_empty_slice_returns_out_untouched():
    out = torch.empty(0, 4)
    assert chunked.fill_slice(out, "normal", P1, P2, 0, (10, 4), [(3, 3), (0, 4)]) is out


def test_fill_slice_into_a_non_contiguous_out_equals_the_slice():
    shape, bounds = (50, 40), [(5, 45), (3, 33)]
    out = torch.empty(30, 40).t()
    chunked.fill_slice(out, "normal", P1, P2, 3, shape, bounds)
    _assert_same_bytes(out, _serial("normal", torch.float32, shape, 3)[5:45, 3:33], "transposed out")


def test_fill_slice_with_a_wrong_out_shape_names_the_slice_shape():
    with pytest.raises(ValueError, match=r"\[2, 4\]"):
        chunked.fill_slice(torch.empty(3, 4), "uniform", 0.0, 1.0, 0, (10, 4), [(3, 5), (0, 4)])


def test_fill_slice_with_bounds_out_of_range_names_the_dimension():
    with pytest.raises(ValueError, match=r"slice_bounds\[1\]"):
        chunked.fill_slice(torch.empty(2, 5), "uniform", 0.0, 1.0, 0, (10, 4), [(3, 5), (0, 5)])


# --- self-test and fallback ----------------------------------------------------------------------


def test_self_test_passes_for_every_served_op_and_dtype(fresh_self_test):
    assert chunked.self_test() == {chunked._key(o, d): True for o in OPS for d in DTYPES}
    capability = chunked.capability()
    assert len(capability["parallel"]) == 8 and capability["serial_only"] == []
    assert capability["threads_default"] >= 1


def test_self_test_mismatch_serves_that_op_serially_and_still_exactly(monkeypatch, fresh_self_test, always_parallel):
    fill_chunks = chunked._fill_chunks

    def flipped(flat, op, p1, p2, base, bounds):  # chunked normal/float16 one bit off serial torch
        fill_chunks(flat, op, p1, p2, base, bounds)
        if (op, flat.dtype) == ("normal", torch.float16):
            flat.view(torch.uint8)[0] ^= 1

    monkeypatch.setattr(chunked, "_fill_chunks", flipped)
    chunked.clear_self_test()
    result = chunked.self_test()
    assert result["normal/float16"] is False and result["normal/float32"] is True
    assert chunked.capability()["serial_only"] == ["normal/float16"]
    shape = (40, 37)
    assert not pieces.supported("normal", torch.float16, 40 * 37) and pieces.supported("normal", torch.float32, 40 * 37)
    monkeypatch.setattr(chunked, "_fill_chunks", _must_not_run)
    monkeypatch.setattr(chunked, "fill_runs", _must_not_run)
    expected = _serial("normal", torch.float16, shape, 8, 99)
    out = torch.empty(9, 4, dtype=torch.float16)
    chunked.fill_slice(out, "normal", P1, P2, 8, shape, [(30, 39), (33, 37)], 99)
    _assert_same_bytes(out, expected[30:39, 33:37], "fill_slice fallback")


def _must_not_run(*args, **kwargs):
    raise AssertionError("the chunked path ran for an op that failed its self-test")
