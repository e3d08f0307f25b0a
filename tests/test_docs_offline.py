"""``/docs`` and ``/redoc`` work without a network: their pages load only assets the app serves
itself (from the fastapi-offline package), and in headless Chromium with every other host
blocked, Swagger UI lists the operations, "Try it out" on ``POST /v1/tensor`` gets a 200, and
ReDoc renders."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest

from tests import browser

ASSET = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""")


def _references(html: str) -> list[str]:
    return [a or b for a, b in ASSET.findall(html)]


@pytest.mark.parametrize("page_path", ["/docs", "/redoc"])
def test_the_page_references_only_assets_the_app_serves(http, page_path):
    page = http.get(page_path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text and "//" not in page.text.replace("<!--", "")
    references = _references(page.text)
    assert "/openapi.json" in references
    scripts = [r for r in references if r.endswith(".js")]
    assert scripts, page.text  # the page is nothing without its script
    for reference in references:
        assert reference.startswith("/"), reference
        asset = http.get(urljoin(page_path, reference))
        assert asset.status_code == 200, reference
        assert len(asset.content) > (100_000 if reference.endswith((".js", ".css")) else 0), reference


def test_the_oauth2_redirect_page_is_local(http):
    page = http.get("/docs/oauth2-redirect")
    assert page.status_code == 200 and "https://" not in page.text and "http://" not in page.text


# ---- in a browser, with the network blocked ------------------------------------------------------

needs_browser = pytest.mark.skipif(bool(browser.missing()), reason=str(browser.missing()))
# Playwright's driver pipes can be finalized after the test that used them (a ResourceWarning).
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(scope="module")
def offline_page(server) -> Iterator[tuple[Any, list[str], browser.ConsoleLog]]:
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []
    local = urlsplit(server.url).netloc

    def only_local(route: Any) -> None:
        if urlsplit(route.request.url).netloc == local:
            route.continue_()
        else:
            blocked.append(f"{route.request.resource_type} {route.request.url}")
            route.abort()

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=browser.chromium_path(), args=browser.FLAGS)
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        context.route("**/*", only_local)
        page = context.new_page()
        page.set_default_timeout(30_000)
        console = browser.ConsoleLog(page)
        yield page, blocked, console
        context.close()
        chromium.close()


@needs_browser
def test_swagger_ui_shows_every_operation_offline(offline_page, server, http):
    page, blocked, console = offline_page
    page.goto(f"{server.url}/docs")
    page.locator(".opblock").first.wait_for()
    document = http.get("/openapi.json").json()
    expected = {(method.upper(), path) for path, item in document["paths"].items() for method in item
                if method in ("get", "post", "put", "delete", "patch", "head")}
    shown = set()
    for block in page.locator(".opblock").all():
        method = block.locator(".opblock-summary-method").inner_text().strip()
        path = block.locator(".opblock-summary-path").get_attribute("data-path")
        shown.add((method, path))
    assert shown == expected
    assert blocked == [] and console.errors() == []


@needs_browser
def test_try_it_out_sends_the_example_and_gets_200(offline_page, server):
    page, blocked, console = offline_page
    page.goto(f"{server.url}/docs#/")
    summary = page.locator(".opblock-post .opblock-summary-path[data-path='/v1/tensor']")
    summary.click()
    block = page.locator(".opblock.is-open")
    block.locator("button.try-out__btn").click()
    block.locator("button.execute").click()
    status = block.locator(".live-responses-table .response .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip().startswith("200"), block.locator(".live-responses-table").inner_text()
    assert blocked == [] and console.errors() == []


@needs_browser
def test_redoc_renders_offline(offline_page, server):
    page, blocked, console = offline_page
    page.goto(f"{server.url}/redoc")
    page.get_by_text("/v1/tensors", exact=False).first.wait_for(state="attached")
    assert page.locator("h1").first.inner_text().startswith("initsvc")
    # ReDoc's bundle links its own "API docs by Redocly" logo from its CDN: an image that stays
    # blank offline. Nothing else leaves the machine.
    assert [b for b in blocked if b != "image https://cdn.redoc.ly/redoc/logo-mini.svg"] == []
