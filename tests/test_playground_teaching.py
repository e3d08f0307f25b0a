"""What the playground teaches, in a real browser (headless Chromium driven by Playwright).

The 68-95-99.7 table: its observed counts are the tensor's own (fetched here as safetensors from
the API and counted with torch) and its expected shares are the distribution's (math.erf for a
normal, scipy's truncated normal, k*sigma/b for a uniform). The sigma bands of a truncated normal
are its own std, every band label is drawn, the y axis switches between count and density, a
shared link restores the same view, and the Model tab lists the state_dict POST /v1/model answers.
Skipped, with the reason, where Chromium or Playwright is missing (``.ci/browser-setup``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import torch
from safetensors.torch import load as load_safetensors
from scipy import stats as scipy_stats

from tests import browser
from tests.torch_reference import as_bytes, reference

if reason := browser.missing():
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import Page, sync_playwright  # after the skip above

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

MINUS = "\u2212"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=browser.chromium_path(), args=browser.FLAGS)
        yield launched
        launched.close()


def new_page(chromium: Any) -> tuple[Any, Page]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    return context, page


@pytest.fixture
def page(chromium: Any) -> Iterator[Page]:
    context, fresh = new_page(chromium)
    yield fresh
    context.close()


def open_tensor_view(page: Page, url: str, query: str) -> browser.ConsoleLog:
    console = browser.ConsoleLog(page)
    page.goto(f"{url}/{query}")
    assert browser.wait_for_state(page, "tensor", ("ready", "error")) == "ready", page.locator("#tensor-form").inner_text()
    return console


def share_text(share: float) -> str:
    """The page's rendering of a share: two decimals, 0 and 100 without them."""
    if share == 1:
        return "100 %"
    if share == 0:
        return "0 %"
    return f"{share * 100:.2f} %"


def shown(page: Page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def number(text: str) -> float:
    return float(text.replace(MINUS, "-").replace(",", ""))


def tensor_of(http: httpx.Client, query: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """The recipe's tensor from GET /v1/tensor (safetensors) and its stats from POST (JSON)."""
    answer = http.get(f"/v1/tensor?{urlencode(query)}")
    assert answer.status_code == 200, answer.text
    tensor = load_safetensors(answer.content)["weight"]
    init = {k: v if k == "scheme" else float(v) for k, v in query.items() if k not in ("shape", "seed")}
    body = {"shape": [int(d) for d in query["shape"].split(",")], "init": init, "seed": int(query["seed"])}
    summary = http.post("/v1/tensor", json=body, headers={"Accept": "application/json"}).json()
    return tensor, summary["tensors"]["weight"]["stats"]


def expected_shares(scheme: str, query: dict[str, Any], rows: int) -> tuple[float, float, list[float]]:
    """(center, sigma, [share within k sigma for k = 1, 2, 3]) of the distribution drawn, from the
    formulas: erf for a normal, scipy's truncnorm mass, min(1, k sigma / b) for a uniform."""
    if scheme == "normal":
        mean, std = float(query.get("mean", 0.0)), float(query.get("std", 1.0))
        return mean, std, [math.erf(k / math.sqrt(2)) for k in (1, 2, 3)]
    if scheme == "trunc_normal":
        mean, std = float(query.get("mean", 0.0)), float(query.get("std", 1.0))
        a, b = float(query.get("a", -2.0)), float(query.get("b", 2.0))
        dist = scipy_stats.truncnorm((a - mean) / std, (b - mean) / std, loc=mean, scale=std)
        center, sigma = float(dist.mean()), float(dist.std())
        return center, sigma, [float(dist.cdf(center + k * sigma) - dist.cdf(center - k * sigma)) for k in (1, 2, 3)]
    if scheme == "uniform":
        low, high = float(query.get("a", 0.0)), float(query.get("b", 1.0))
        half = (high - low) / 2
        sigma = half / math.sqrt(3)
        return (low + high) / 2, sigma, [min(1.0, k * sigma / half) for k in (1, 2, 3)]
    if scheme == "sparse":
        std = float(query.get("std", 0.01))
        zeros = math.ceil(float(query["sparsity"]) * rows) / rows  # torch's sparse_: per column
        sigma = std * math.sqrt(1 - zeros)
        return 0.0, sigma, [zeros + (1 - zeros) * math.erf(k * sigma / (std * math.sqrt(2))) for k in (1, 2, 3)]
    if scheme == "constant":
        return float(query["val"]), 0.0, [1.0, 1.0, 1.0]
    raise AssertionError(scheme)


RULE_CASES = [
    pytest.param("normal", {"std": "0.02"}, id="normal-std-0.02"),
    pytest.param("trunc_normal", {}, id="trunc_normal-default"),
    pytest.param("trunc_normal", {"mean": "1", "a": "0", "b": "3"}, id="trunc_normal-asymmetric"),
    pytest.param("uniform", {"a": "-0.5", "b": "1.5"}, id="uniform"),
    pytest.param("sparse", {"sparsity": "0.3"}, id="sparse"),
    pytest.param("constant", {"val": "0.5"}, id="constant"),
]


@pytest.mark.parametrize(("scheme", "params"), RULE_CASES)
def test_rule_table_is_the_tensors_own_counts_against_the_formula(page: Page, server: Any, http: httpx.Client,
                                                                   scheme: str, params: dict[str, str]):
    query = {"shape": "96,160", "scheme": scheme, **params, "seed": "11"}
    console = open_tensor_view(page, server.url, f"?{urlencode(query)}")

    tensor, stats = tensor_of(http, query)
    reference_params = {k: float(v) for k, v in params.items()}
    assert as_bytes(tensor) == as_bytes(reference([96, 160], scheme, reference_params, seed=11))
    center, sigma, shares = expected_shares(scheme, query, rows=96)
    assert stats["expected"]["mean"] == pytest.approx(center, abs=1e-12)
    assert stats["expected"]["std"] == pytest.approx(sigma, rel=1e-9)

    values = tensor.double()
    numel = values.numel()
    for k, share in zip((1, 2, 3), shares, strict=True):
        # The page counts |x - mean| <= k sigma with the mean and std the service states.
        inside = int(((values - stats["expected"]["mean"]).abs() <= k * stats["expected"]["std"]).sum())
        assert number(shown(page, f"#rule-{k}-count")) == inside, k
        assert shown(page, f"#rule-{k}-observed") == share_text(inside / numel), k
        assert shown(page, f"#rule-{k}-expected") == share_text(share), k
    browser.screenshot(page.locator(".rule-panel"), f"rule-{scheme}-{'-'.join(params) or 'default'}")
    assert console.errors() == []


def test_normal_rule_shows_68_95_99_7(page: Page, server: Any):
    console = open_tensor_view(page, server.url, "?scheme=normal&shape=256,784&seed=0")
    assert [shown(page, f"#rule-{k}-expected") for k in (1, 2, 3)] == ["68.27 %", "95.45 %", "99.73 %"]
    assert "68.27 %, 95.45 % and 99.73 %" in shown(page, "#rule-note")
    assert console.errors() == []


def test_orthogonal_and_eye_say_what_is_expected(page: Page, server: Any):
    console = open_tensor_view(page, server.url, "?scheme=orthogonal&shape=128,128&seed=0")
    assert shown(page, "#rule-1-expected") == "\u2248 68.27 %"
    assert "orthogonal matrix" in shown(page, "#rule-note")

    page.select_option("#scheme", "eye")
    assert browser.wait_for_state(page, "tensor", ("ready", "error")) == "ready"
    assert [shown(page, f"#rule-{k}-expected") for k in (1, 2, 3)] == ["\u2014"] * 3
    assert shown(page, "#rule-1-observed").endswith("%")
    assert "draws nothing" in shown(page, "#rule-note")
    assert console.errors() == []


def band_edges(page: Page) -> dict[int, tuple[float, float]]:
    bands = page.locator("#plot rect.band").evaluate_all(
        "nodes => nodes.map(n => [n.classList[1], Number(n.dataset.low), Number(n.dataset.high)])"
    )
    return {int(name.split("-")[1]): (low, high) for name, low, high in bands}


@pytest.mark.parametrize(
    ("query", "a", "b", "mean", "std"),
    [
        pytest.param("?scheme=trunc_normal&shape=256,784&seed=0", -2.0, 2.0, 0.0, 1.0, id="default"),
        pytest.param("?scheme=trunc_normal&mean=1&a=0&b=3&shape=256,784&seed=0", 0.0, 3.0, 1.0, 1.0, id="asymmetric"),
        pytest.param("?scheme=trunc_normal&std=0.02&shape=256,784&seed=0", -2.0, 2.0, 0.0, 0.02, id="std-0.02-wide-cutoffs"),
    ],
)
def test_trunc_normal_bands_use_the_truncated_std_and_every_label_is_drawn(page: Page, server: Any, query: str,
                                                                           a: float, b: float, mean: float, std: float):
    console = open_tensor_view(page, server.url, query)
    dist = scipy_stats.truncnorm((a - mean) / std, (b - mean) / std, loc=mean, scale=std)
    center, sigma = float(dist.mean()), float(dist.std())

    edges = band_edges(page)
    assert sorted(edges) == [1, 2, 3]
    for k, (low, high) in edges.items():
        assert low == pytest.approx(center - k * sigma, rel=1e-9, abs=1e-12)
        assert high == pytest.approx(center + k * sigma, rel=1e-9, abs=1e-12)
    assert f"\u03c3 = {float(f'{sigma:.4g}'):g}".replace("-", MINUS) in shown(page, "#legend")

    labels = page.locator("#plot text.band-label").evaluate_all(
        """nodes => nodes.map(n => { const r = n.getBoundingClientRect();
               return [n.textContent, r.left, r.right, r.top, r.bottom]; })"""
    )
    texts = sorted(label[0] for label in labels)
    assert texts == sorted(f"{sign}{k}\u03c3" for k in (1, 2, 3) for sign in (MINUS, "+"))
    plot = page.locator("#plot svg").bounding_box()
    for text, left, right, _top, _bottom in labels:  # inside the picture ...
        assert plot["x"] <= left and right <= plot["x"] + plot["width"], text
    for i, one in enumerate(labels):  # ... and clear of each other
        for other in labels[i + 1:]:
            apart = one[2] <= other[1] or other[2] <= one[1] or one[4] <= other[3] or other[4] <= one[3]
            assert apart, (one[0], other[0])
    browser.screenshot(page.locator(".plot-panel"), f"trunc-normal-bands-{re.sub(r'[^a-z0-9]+', '-', query)[1:40]}")
    assert console.errors() == []


def y_ticks(page: Page) -> list[float]:
    """The y axis's tick values as numbers (50K is 50,000)."""
    values = []
    for text in page.locator("#plot .axis-y text:not(.axis-title)").all_text_contents():
        scale = {"K": 1e3, "M": 1e6}.get(text[-1], 1.0)
        values.append(number(text.rstrip("KM")) * scale)
    return values


def test_the_y_axis_switches_between_count_and_density(page: Page, server: Any):
    console = open_tensor_view(page, server.url, "?scheme=normal&shape=256,784&seed=0")
    assert page.locator("#plot .y-title").text_content() == "count per bin"
    counts_top = max(y_ticks(page))
    bars_before = page.locator("#plot rect.bar").evaluate_all("nodes => nodes.map(n => n.getAttribute('height'))")

    page.select_option("#y-axis", "density")
    page.wait_for_function("document.querySelector('#plot svg').dataset.yAxis === 'density'")
    assert page.locator("#plot .y-title").text_content() == "density"
    density_top = max(y_ticks(page))
    # N(0, 1) peaks at 1/sqrt(2 pi) = 0.399: the top tick sits just above, while counts run to thousands.
    assert 0.4 <= density_top <= 0.5
    assert counts_top > 1000
    title = page.locator("#plot rect.bar title").first.text_content()
    lo, hi = (number(v) for v in re.match(r"\[(.+?), (.+?)\)", title).groups())
    bin_width = hi - lo
    # The same bars, relabelled: a count tick c sits where the density tick c / (n * width) does.
    assert page.locator("#plot rect.bar").evaluate_all("nodes => nodes.map(n => n.getAttribute('height'))") == bars_before
    assert density_top * 256 * 784 * bin_width == pytest.approx(counts_top, rel=0.5)
    assert "y=density" in page.url

    page.locator("#log-y").check()
    page.wait_for_function("document.querySelector('#plot .y-title').textContent === 'density (log)'")
    assert "log=1" in page.url
    page.select_option("#y-axis", "count")
    page.wait_for_function("document.querySelector('#plot .y-title').textContent === 'count per bin (log)'")
    assert "y=density" not in page.url
    assert console.errors() == []


def view_of(page: Page) -> dict[str, Any]:
    """What a person sees of the tensor view: the form, the histogram settings and the picture."""
    return page.evaluate(
        """() => ({
            scheme: document.getElementById('scheme').value,
            params: [...document.querySelectorAll('#params input, #params select')].map(n => n.type === 'radio' ? [n.value, n.checked] : [n.name, n.value]),
            shape: document.getElementById('shape').value,
            seed: document.getElementById('seed').value,
            dtype: document.getElementById('dtype').value,
            bins: document.getElementById('bins').value,
            log: document.getElementById('log-y').checked,
            y: document.getElementById('y-axis').value,
            title: document.getElementById('plot-title').textContent,
            plot: document.querySelector('#plot svg').outerHTML.replace(/clip-[a-z0-9]+/g, 'clip'),
            rule: document.getElementById('rule-body').textContent,
            tab: document.querySelector('[role=tab][aria-selected=true]').id,
        })"""
    )


def test_a_shared_link_restores_the_same_view(chromium: Any, page: Page, server: Any):
    console = open_tensor_view(page, server.url, "")
    page.select_option("#scheme", "xavier_normal")
    browser.wait_for_state(page, "tensor", ("ready", "error"))
    page.locator('[data-field="gain"] .segmented label').nth(1).click()
    page.locator('[data-field="gain"] select').select_option("leaky_relu")
    page.get_by_label("negative slope").fill("0.2")
    page.locator("#shape").fill("128, 96")
    page.locator("#seed").fill("42")
    page.select_option("#dtype", "float64")
    page.select_option("#bins", "120")
    page.locator("#log-y").check()
    page.select_option("#y-axis", "density")
    assert browser.wait_for_state(page, "tensor", ("ready", "error")) == "ready"
    before = view_of(page)
    assert before["params"] != [] and before["log"] and before["y"] == "density"

    page.locator("#share-link").click()
    page.wait_for_function("document.getElementById('share-status').textContent !== ''")
    link = page.locator("#share-link").get_attribute("href")
    assert link == page.url
    assert "scheme=xavier_normal" in link and "gain_nonlinearity=leaky_relu" in link and "bins=120" in link

    context, fresh = new_page(chromium)
    try:
        fresh_console = browser.ConsoleLog(fresh)
        fresh.goto(link)
        assert browser.wait_for_state(fresh, "tensor", ("ready", "error")) == "ready"
        assert view_of(fresh) == before
        assert fresh.url == link
        assert fresh_console.errors() == []
    finally:
        context.close()
    assert console.errors() == []


def test_the_tab_is_in_the_link(chromium: Any, page: Page, server: Any):
    console = open_tensor_view(page, server.url, "?scheme=normal&std=3")
    page.locator("#tab-module").click()
    browser.wait_for_state(page, "module", ("ready", "error", "unavailable"))
    assert page.url.endswith("#module") or "#module?" in page.url
    assert "scheme=normal&std=3" in page.locator("#share-link").get_attribute("href")
    page.locator("#tab-tensor").click()
    assert "#" not in page.url
    assert console.errors(allow_statuses=(404,)) == []


def test_module_layers_are_in_the_link(chromium: Any, page: Page, server: Any, http: httpx.Client):
    if http.post("/v1/module", json={"layers": [{"type": "ReLU"}]}).status_code == 404:
        pytest.skip("POST /v1/module answers 404 on this server")
    console = browser.ConsoleLog(page)
    page.goto(f"{server.url}/#module")
    assert browser.wait_for_state(page, "module", ("ready", "error")) == "ready"
    page.locator("#layers-json").fill('[{"type": "Linear", "in_features": 3, "out_features": 2}, {"type": "ReLU"}]')
    page.locator("#module-seed").fill("9")
    page.wait_for_function("document.querySelector('#module-body tr[data-key=\"0.bias\"]') !== null")
    assert browser.wait_for_state(page, "module", ("ready", "error")) == "ready"
    link = page.locator("#share-link").get_attribute("href")
    rows = page.locator("#module-body").inner_text()

    context, fresh = new_page(chromium)
    try:
        fresh.goto(link)
        assert browser.wait_for_state(fresh, "module", ("ready", "error")) == "ready"
        assert fresh.locator("#module-seed").input_value() == "9"
        assert json.loads(fresh.locator("#layers-json").input_value()) == json.loads(page.locator("#layers-json").input_value())
        assert fresh.locator("#module-body").inner_text() == rows
    finally:
        context.close()
    assert console.errors() == []


# Model tab -----------------------------------------------------------------------------------

SMALL_GPT = {"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 1000, "block_size": 128}


def models_or_skip(http: httpx.Client) -> dict[str, Any]:
    answer = http.get("/v1/models")
    if answer.status_code == 404:
        pytest.skip("GET /v1/models answers 404 on this server: the model presets are not built yet")
    assert answer.status_code == 200
    return answer.json()["models"]


def model_rows(page: Page) -> list[tuple[str, list[int], str]]:
    rows = page.locator("#model-body tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.key, r.querySelector('.shape').textContent, r.querySelector('.init').textContent])"
    )
    return [(key, [int(d) for d in re.findall(r"\d+", shape)], init) for key, shape, init in rows]


def test_model_tab_lists_the_state_dict_the_api_answers(chromium: Any, page: Page, server: Any, http: httpx.Client):
    models = models_or_skip(http)
    assert "nanogpt/GPT" in models
    console = browser.ConsoleLog(page)
    page.goto(f"{server.url}/#model")
    assert browser.wait_for_state(page, "model", ("ready", "error"), timeout_ms=120_000) == "ready"
    assert page.locator("#model-name option").evaluate_all("nodes => nodes.map(n => n.value)") == list(models)

    page.select_option("#model-name", "nanogpt/GPT")
    assert browser.wait_for_state(page, "model", ("ready", "error"), timeout_ms=120_000) == "ready"
    fields = {f["name"]: f for f in models["nanogpt/GPT"]["fields"]}
    shown_fields = page.locator("#model-form [data-field] input, #model-form [data-field] select").evaluate_all(
        "nodes => nodes.map(n => n.name).filter(Boolean)"
    )
    assert set(fields) <= set(shown_fields)
    for name, value in SMALL_GPT.items():  # a small config is suggested; the default is GPT-2 small
        assert page.locator(f"#model-field-{name}").input_value() == str(value)
    assert f"{models['nanogpt/GPT']['default_config']['parameters']:,}" in page.locator("#model-size-note").inner_text()
    page.locator("#model-field-n_layer").fill("1")
    page.locator("#model-seed").fill("3")
    page.wait_for_function("document.querySelector('#model-body tr[data-key^=\"transformer.h.1.\"]') === null")
    assert browser.wait_for_state(page, "model", ("ready", "error"), timeout_ms=120_000) == "ready"

    config = {**SMALL_GPT, "n_layer": 1}
    answer = http.post("/v1/model", json={"model": "nanogpt/GPT", "config": config, "seed": 3, "histogram_bins": 24},
                       headers={"Accept": "application/json"}).json()
    order = answer["request"].get("tensor_order") or list(answer["tensors"])
    assert [(key, shape) for key, shape, _ in model_rows(page)] == [(k, answer["tensors"][k]["shape"]) for k in order]
    assert [init for _, _, init in model_rows(page)] == [answer["tensors"][k]["stats"]["init"] for k in order]
    assert page.locator("#model-body svg.sparkline").count() == len(order)
    # Only the changed fields are in the address, and they restore the same list in a fresh page.
    link = page.locator("#share-link").get_attribute("href")
    assert "#model?model=nanogpt/GPT" in link and "n_layer=1" in link and "seed=3" in link and "dropout" not in link
    browser.screenshot(page, "model-nanogpt", full_page=True)
    context, fresh = new_page(chromium)
    try:
        fresh.goto(link)
        assert browser.wait_for_state(fresh, "model", ("ready", "error"), timeout_ms=120_000) == "ready"
        assert fresh.locator("#model-name").input_value() == "nanogpt/GPT"
        assert fresh.locator("#model-field-n_layer").input_value() == "1"
        assert model_rows(fresh) == model_rows(page)
    finally:
        context.close()
    assert console.errors() == []


def test_model_tab_sends_only_changed_fields_and_shows_a_422_at_its_field(page: Page, server: Any, http: httpx.Client):
    models_or_skip(http)
    console = browser.ConsoleLog(page)
    bodies: list[dict[str, Any]] = []
    page.on("request", lambda r: bodies.append(json.loads(r.post_data)) if r.method == "POST" and r.url.endswith("/v1/model") else None)
    page.goto(f"{server.url}/#model?model=nanogpt/GPT&n_layer=1&n_embd=30&n_head=4&vocab_size=100&block_size=16")
    assert browser.wait_for_state(page, "model", ("ready", "error"), timeout_ms=120_000) == "error"
    config = {"n_layer": 1, "n_embd": 30, "n_head": 4, "vocab_size": 100, "block_size": 16}
    assert bodies[-1]["config"] == config
    api = http.post("/v1/model", json={"model": "nanogpt/GPT", "config": config}, headers={"Accept": "application/json"})
    assert api.status_code == 422
    problem = api.json()["detail"][0]
    field = problem["loc"][-1]
    assert page.locator(f'#model-form [data-field="{field}"] .error').inner_text() == problem["msg"]
    assert page.locator(f"#model-field-{field}").get_attribute("aria-invalid") == "true"
    assert page.locator("#model-error").inner_text() == ""

    page.locator("#model-field-n_embd").fill("32")
    assert browser.wait_for_state(page, "model", ("ready", "error"), timeout_ms=120_000) == "ready"
    assert page.locator(f'#model-form [data-field="{field}"] .error').inner_text() == ""
    assert page.locator("#model-body tr").count() > 0
    assert console.errors(allow_statuses=(422,)) == []


def test_a_tensor_too_large_to_fetch_is_estimated_from_its_histogram(page: Page, server: Any, http: httpx.Client):
    query = {"shape": "2050,2050", "scheme": "normal", "seed": "1"}  # 16.03 MiB of float32: over the 16 MiB it counts
    console = open_tensor_view(page, server.url, f"?{urlencode(query)}&bins=120")
    assert "estimated from the histogram" in shown(page, "#rule-note")
    values = load_safetensors(http.get(f"/v1/tensor?{urlencode(query)}").content)["weight"].double()
    for k in (1, 2, 3):
        observed = shown(page, f"#rule-{k}-observed")
        assert observed.startswith("\u2248 ")
        true_share = float((values.abs() <= k).double().mean())
        assert number(observed[2:].rstrip(" %")) == pytest.approx(true_share * 100, abs=0.2), k
    assert console.errors() == []
