"""The playground page at ``GET /``, in a real browser: headless Chromium driven by Playwright.

A person picks a scheme and its parameters and sees the histogram and stats of the tensor the
service made; bad values show the API's message beside their field; the download is torch's
tensor, byte for byte; the module view lists the state_dict. Screenshots go to
``artifacts/screenshots/``. The module is skipped, with the reason, where Chromium or Playwright is
missing (``.ci/browser-setup`` installs both).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from safetensors.torch import load_file
from starlette.responses import JSONResponse
from torch import nn

import service
from service.api.routes.playground import ASSETS
from service.schemas.recipes import RECIPE_MODELS
from service.settings import Settings
from tests import browser
from tests.conftest import LiveServer
from tests.torch_reference import as_bytes, reference

if reason := browser.missing():
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # after the skip above

# Playwright's driver pipes and its event loop can be finalized after the test that used them
# (a ResourceWarning from the garbage collector, not from the page or the service).
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

# Families whose expected distribution has a density curve; the rest draw a point mass or nothing.
DENSITY_SCHEMES = {
    "uniform", "normal", "trunc_normal", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
    "orthogonal", "sparse", "variance_scaling", "lecun_uniform", "lecun_normal", "trunc_normal_tf",
}
POINT_MASS_SCHEMES = {"constant", "ones", "zeros"}
FIXED_SCHEMES = {"eye", "dirac"}


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=browser.chromium_path(), args=browser.FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    new_page = context.new_page()
    new_page.set_default_timeout(20_000)
    yield new_page
    context.close()


def open_playground(page: Page, url: str, query: str = "") -> browser.ConsoleLog:
    console = browser.ConsoleLog(page)
    page.goto(f"{url}/{query}")
    state = browser.wait_for_state(page, "tensor", ("ready", "error"))
    assert state == "ready", page.locator("#tensor-form").inner_text()
    return console


def settle(page: Page) -> str:
    """Wait out the debounce and the request: the state after the last input."""
    return browser.wait_for_state(page, "tensor", ("ready", "error"))


def shown_number(page: Page, selector: str) -> float:
    return float(page.locator(selector).inner_text().replace("\u2212", "-").replace(",", ""))


def test_page_loads_without_console_errors_and_draws_the_default_tensor(page: Page, server: Any, http: httpx.Client):
    console = open_playground(page, server.url)

    catalog = http.get("/v1/schemes").json()["schemes"]
    options = page.locator("#scheme option").evaluate_all("nodes => nodes.map(n => n.value)")
    assert options == list(catalog)
    assert page.locator("#plot svg rect.bar").count() > 10
    assert page.locator("#plot path.density").count() == 1
    assert page.locator("#stat-std-actual").inner_text() != "\u2014"
    assert page.locator("#fact-fan_in").inner_text() == "784"
    assert page.locator("#download").get_attribute("href").startswith(f"{server.url}/v1/tensor?shape=256,784&")
    browser.screenshot(page, "tensor-default", full_page=True)
    assert console.errors() == []


def test_normal_with_std_2_updates_plot_and_stats(page: Page, server: Any):
    console = open_playground(page, server.url)

    page.select_option("#scheme", "normal")
    settle(page)
    page.get_by_label("std", exact=True).fill("2")
    page.wait_for_function("document.getElementById('stat-std-expected').textContent === '2'")
    assert settle(page) == "ready"

    assert shown_number(page, "#stat-std-actual") == pytest.approx(2.0, abs=0.02)
    assert shown_number(page, "#stat-mean-actual") == pytest.approx(0.0, abs=0.02)
    assert page.locator("#plot-title").inner_text().endswith("normal")
    assert page.locator("#plot rect.band").count() == 3  # +-1, 2 and 3 sigma
    assert "N(0, 2\u00b2)" in page.locator("#legend").inner_text()
    assert "std=2" in page.locator("#download").get_attribute("href")
    browser.screenshot(page.locator(".plot-panel"), "tensor-normal-std-2")
    assert console.errors() == []


def test_negative_std_shows_the_api_message_next_to_std(page: Page, server: Any, http: httpx.Client):
    console = open_playground(page, server.url, "?scheme=normal")
    body = {"shape": [256, 784], "init": {"scheme": "normal", "std": -1}}
    api = http.post("/v1/tensor", json=body, headers={"Accept": "application/json"})
    assert api.status_code == 422
    message = api.json()["detail"][0]["msg"]

    std = page.get_by_label("std", exact=True)
    std.fill("-1")
    assert settle(page) == "error"

    field = page.locator('[data-field="std"]')
    assert field.locator(".error").inner_text() == message
    assert std.get_attribute("aria-invalid") == "true"
    assert page.locator("#form-error").inner_text() == ""
    assert page.locator("#stale-note").is_visible()
    browser.screenshot(page, "tensor-error-std", full_page=True)

    page.locator("#params-reset").click()  # back to the catalog's default, std=1
    assert settle(page) == "ready"
    assert page.get_by_label("std", exact=True).input_value() == "1"
    assert page.locator('[data-field="std"] .error').inner_text() == ""
    assert page.get_by_label("std", exact=True).get_attribute("aria-invalid") is None
    assert page.locator("#stat-std-expected").inner_text() == "1"
    assert console.errors(allow_statuses=(422,)) == []


def test_a_shape_over_the_element_limit_shows_the_413_detail_at_shape(page: Page, server: Any):
    console = open_playground(page, server.url)
    page.locator("#shape").fill("100000, 100000, 1000")
    assert settle(page) == "error"
    assert "INITSVC_MAX_ELEMENTS" in page.locator("#shape-error").inner_text()
    assert console.errors(allow_statuses=(413,)) == []


@pytest.mark.parametrize(
    ("scheme", "setup", "params", "seed"),
    [
        pytest.param(
            "xavier_normal", {"gain": ("leaky_relu", "0.2")}, {"gain": {"nonlinearity": "leaky_relu", "param": 0.2}},
            "7", id="xavier_normal-gain-from-leaky_relu",
        ),
        pytest.param(
            "normal", {"mean": "0.5", "std": "2"}, {"mean": 0.5, "std": 2.0}, str(2**64 - 1), id="normal-seed-2^64-1",
        ),
    ],
)
def test_download_is_torchs_tensor_byte_for_byte(page: Page, server: Any, tmp_path: Any, scheme: str,
                                                 setup: dict[str, Any], params: dict[str, Any], seed: str):
    console = open_playground(page, server.url)
    page.select_option("#scheme", scheme)
    page.locator("#shape").fill("64, 32")
    for name, value in setup.items():
        if name == "gain":
            nonlinearity, param = value
            page.locator('[data-field="gain"] .segmented label').nth(1).click()
            page.locator('[data-field="gain"] select').select_option(nonlinearity)
            page.get_by_label("negative slope").fill(param)
        else:
            page.get_by_label(name, exact=True).fill(value)
    page.locator("#seed").fill(seed)
    assert settle(page) == "ready"
    assert page.locator("#fact-seed").inner_text().replace(",", "") == seed

    with page.expect_download() as download_info:
        page.locator("#download").click()
    download = download_info.value
    assert download.suggested_filename == "weight.safetensors"
    path = tmp_path / "weight.safetensors"
    download.save_as(path)

    tensors = load_file(path)
    assert list(tensors) == ["weight"]
    expected = reference([64, 32], scheme, params, seed=int(seed))
    assert as_bytes(tensors["weight"]) == as_bytes(expected)
    assert console.errors() == []


def test_curl_and_python_snippets_describe_the_plotted_tensor(page: Page, server: Any):
    console = open_playground(page, server.url, "?scheme=trunc_normal&std=0.02&shape=64,32&seed=3")

    curl = page.locator("#curl-code").inner_text()
    words = shlex.split(curl.replace("\\\n", " "))
    assert words[:3] == ["curl", "-X", "POST"]
    assert words[3] == f"{server.url}/v1/tensor"
    body = json.loads(words[words.index("-d") + 1])
    assert body == {"shape": [64, 32], "init": {"scheme": "trunc_normal", "std": 0.02}, "dtype": "float32",
                    "device": "cpu", "seed": 3}

    python = page.locator("#python-code").inner_text()
    assert python.startswith("from service.client import InitClient\n")
    code = compile(python, "<playground snippet>", "exec")
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # the client the snippet names, against the live server
    expected = reference([64, 32], "trunc_normal", {"std": 0.02}, seed=3)
    assert as_bytes(namespace["weight"]) == as_bytes(expected)

    page.locator("#copy-curl").click()
    expect(page.locator("#copy-status")).to_have_text("Copied the curl command.")
    page.locator("#copy-python").click()
    expect(page.locator("#copy-status")).to_have_text("Copied the Python code.")
    assert console.errors() == []


def test_typing_a_shape_sends_few_requests_and_shows_the_last(page: Page, server: Any):
    console = open_playground(page, server.url)
    posts: list[str] = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)

    page.locator("#shape").fill("")
    page.locator("#shape").press_sequentially("512, 1024", delay=25)
    assert settle(page) == "ready"
    assert page.locator("#plot-title").inner_text().startswith("weight \u00b7 float32 [512, 1024]")
    assert len(posts) <= 3  # debounced: not one request per key
    assert console.errors() == []


def test_every_control_has_a_label_and_the_tabs_work_from_the_keyboard(page: Page, server: Any):
    console = open_playground(page, server.url, "?scheme=xavier_uniform")
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
               .filter((el) => el.type !== 'hidden' && !el.closest('[hidden]'))
               .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
               .map((el) => el.id || el.name)"""
    )
    assert unlabelled == []

    page.locator("#tab-tensor").focus()
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.id") == "tab-module"
    assert page.locator("#view-module").is_visible()
    assert not page.locator("#view-tensor").is_visible()
    page.keyboard.press("ArrowLeft")
    assert page.locator("#view-tensor").is_visible()
    assert console.errors(allow_statuses=(404,)) == []


def test_narrow_screen_has_no_horizontal_scroll(page: Page, server: Any):
    page.set_viewport_size({"width": 390, "height": 844})
    console = open_playground(page, server.url, "?scheme=trunc_normal")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    browser.screenshot(page, "tensor-narrow", full_page=True)
    assert console.errors() == []


def example_module_keys() -> dict[str, list[int]]:
    """The state_dict of the page's example stack, built on the meta device (no RNG draws)."""
    stack = nn.Sequential(
        nn.Linear(784, 256, device="meta"), nn.LayerNorm(256, device="meta"), nn.ReLU(),
        nn.Linear(256, 10, device="meta"), nn.Linear(10, 4, device="meta"),
    )
    return {key: list(value.shape) for key, value in stack.state_dict().items()}


def test_module_view_lists_every_state_dict_key(page: Page, server: Any, http: httpx.Client):
    probe = http.post("/v1/module", json={"layers": [{"type": "ReLU"}]}, headers={"Accept": "application/json"})
    if probe.status_code == 404:
        pytest.skip("POST /v1/module answers 404 on this server: the endpoint is not built yet")
    has_layer_list = http.get("/v1/layers").status_code == 200
    console = open_playground(page, server.url)

    page.locator("#tab-module").click()
    assert browser.wait_for_state(page, "module", ("ready", "error", "unavailable")) == "ready"
    if has_layer_list:  # the "add layer" helper appends Linear(10, 4) to the example
        page.locator("#layer-type").select_option("Linear")
        page.get_by_label("in_features").fill("10")
        page.get_by_label("out_features").fill("4")
        page.locator("#layer-add").click()
    else:
        page.locator("#layers-json").fill(json.dumps(json.loads(page.locator("#layers-json").input_value())
                                                     + [{"type": "Linear", "in_features": 10, "out_features": 4}]))
    page.wait_for_function("document.querySelector('#module-body tr[data-key=\"4.weight\"]') !== null")
    assert browser.wait_for_state(page, "module", ("ready", "error")) == "ready"

    rows = page.locator("#module-body tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.key, r.querySelector('.shape').textContent])"
    )
    shown = {key: [int(d) for d in re.findall(r"\d+", shape)] for key, shape in rows}
    assert shown == example_module_keys()
    assert page.locator("#module-body svg.sparkline").count() == len(shown)
    browser.screenshot(page, "module-view", full_page=True)
    assert console.errors() == []


def test_module_view_reports_a_bad_layer_beside_the_layer_list(page: Page, server: Any, http: httpx.Client):
    bad = {"layers": [{"type": "Linear", "in_features": 4}]}
    probe = http.post("/v1/module", json=bad, headers={"Accept": "application/json"})
    if probe.status_code == 404:
        pytest.skip("POST /v1/module answers 404 on this server: the endpoint is not built yet")
    console = open_playground(page, server.url)
    page.locator("#tab-module").click()
    browser.wait_for_state(page, "module", ("ready", "error"))

    page.locator("#layers-json").fill(json.dumps(bad["layers"]))
    page.locator("#layers-json").press("Control+Enter")
    assert browser.wait_for_state(page, "module", ("error",)) == "error"
    error = page.locator("#layers-error").inner_text()
    assert error == f"layers[0] (Linear) \u2192 out_features: {probe.json()['detail'][0]['msg']}"
    assert page.locator("#layers-json").get_attribute("aria-invalid") == "true"
    page.locator("#layers-json").fill("[{")
    assert browser.wait_for_state(page, "module", ("error",)) == "error"
    assert page.locator("#layers-error").inner_text().startswith("Not valid JSON")
    assert console.errors(allow_statuses=(422,)) == []


@pytest.fixture(scope="module")
def server_without_modules() -> Iterator[LiveServer]:
    """A server whose app lacks /v1/module and /v1/layers, as before that endpoint was built."""
    live = LiveServer(Settings())
    app = live.server.config.app
    gone = {"/v1/module", "/v1/layers"}

    async def without_modules(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in gone:
            await JSONResponse({"detail": "Not Found"}, status_code=404)(scope, receive, send)
            return
        await app(scope, receive, send)

    live.server.config.app = without_modules
    with live:
        yield live


def test_module_view_says_so_when_the_server_has_no_module_endpoint(page: Page, server_without_modules: LiveServer):
    console = open_playground(page, server_without_modules.url)
    page.locator("#tab-module").click()
    assert browser.wait_for_state(page, "module", ("ready", "error", "unavailable")) == "unavailable"

    assert page.locator("#module-unavailable").is_visible()
    assert "404" in page.locator("#helper-note").inner_text()
    assert not page.locator("#layer-helper").is_visible()
    assert json.loads(page.locator("#layers-json").input_value())[0]["type"] == "Linear"
    assert page.locator("#module-body tr").count() == 0
    browser.screenshot(page, "module-unavailable", full_page=True)

    page.locator("#tab-tensor").click()  # the tensor view does not depend on it
    assert page.locator("#plot svg rect.bar").count() > 0
    assert console.errors(allow_statuses=(404,)) == []


@pytest.fixture(scope="module")
def shared_page(chromium: Any, server: Any) -> Iterator[tuple[Page, browser.ConsoleLog]]:
    """One page for the walk through every scheme, as a person would switch between them."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    new_page = context.new_page()
    new_page.set_default_timeout(20_000)
    console = open_playground(new_page, server.url)
    yield new_page, console
    context.close()


@pytest.mark.parametrize("scheme", list(RECIPE_MODELS))
def test_every_scheme_renders(shared_page: tuple[Page, browser.ConsoleLog], scheme: str):
    page, console = shared_page
    console.clear()
    page.select_option("#scheme", scheme)
    assert settle(page) == "ready", page.locator("#tensor-form").inner_text()

    assert page.locator("#plot-title").inner_text().endswith(f"\u00b7 {scheme}")
    assert page.locator("#plot svg rect.bar").count() >= 1
    density = page.locator("#plot path.density").count()
    if scheme in FIXED_SCHEMES:  # eye and dirac draw nothing: 0s and 1s, no density
        assert density == 0
        assert "draws nothing" in page.locator("#legend").inner_text()
        assert page.locator("#stat-std-expected").inner_text() == "\u2014"
        values = {shown_number(page, "#stat-min-actual"), shown_number(page, "#stat-max-actual")}
        assert values == {0.0, 1.0}
    elif scheme in POINT_MASS_SCHEMES:
        assert density == 0
        assert page.locator("#plot line.mark.point").count() == 1
    else:
        assert scheme in DENSITY_SCHEMES, f"add {scheme} to one of the scheme families of this test"
        assert density == 1
    browser.screenshot(page.locator(".plot-panel"), f"scheme-{scheme}")
    assert console.errors() == [], scheme


def test_page_files_are_served_from_the_package_and_nothing_else(http: httpx.Client):
    folder = Path(service.__file__).parent / "static" / "playground"
    assert sorted(path.name for path in folder.iterdir()) == sorted(ASSETS)
    page = http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for src in re.findall(r'(?:src|href)="(/playground/[^"]+)"', page.text):
        assert http.get(src).status_code == 200, src
    script = http.get("/playground/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert http.get("/playground/..%2Fapp.py").status_code == 404
    assert http.get("/playground/missing.js").status_code == 404
    assert http.head("/").status_code == 200
    assert "/" not in http.get("/openapi.json").json()["paths"]
