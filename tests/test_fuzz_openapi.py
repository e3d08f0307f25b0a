"""Schemathesis against the live server's own /openapi.json: no 5xx for any generated request, and
every answer is one the document lists, with the documented content type and body schema.

Budget: ``MAX_EXAMPLES`` per operation and generation mode (valid and invalid inputs), on top of
schemathesis' coverage phase (boundary values of every field; /v1/module's many layer schemas make
most of it). Derandomized, so a run is repeatable. That is about 10,500 requests, in about a minute
on 2 cores. The server runs with small limits, so no generated shape can ask for real memory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.settings import Settings
from tests.conftest import live_server

MAX_EXAMPLES = 300
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
INT64_MAX = 2**63 - 1


LIMITS = {"max_elements": 1 << 16, "max_request_bytes": 1 << 20, "max_tensors": 16, "max_body_bytes": 256 * 1024}
# Hypothesis keeps a cache under ./.hypothesis; keep it out of the working tree.
HYPOTHESIS_HOME = os.path.join(tempfile.gettempdir(), f"initsvc-hypothesis-{os.getpid()}")  # made on first write
set_hypothesis_home_dir(HYPOTHESIS_HOME)
# The document is loaded from an app built with the server's settings (schemathesis parametrizes at
# collection time, before any server runs); test_live_document_is_the_one_fuzzed checks that it is
# the document the live server serves at /openapi.json.
DOCUMENT = json.loads(json.dumps(create_app(Settings(**LIMITS)).openapi()))
schema = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture(scope="module")
def fuzzed_server():
    with live_server(**LIMITS) as s:
        yield s
    shutil.rmtree(HYPOTHESIS_HOME, ignore_errors=True)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_openapi_document_holds_for_generated_requests(case, fuzzed_server):
    case.call_and_validate(base_url=fuzzed_server.url, checks=CHECKS, timeout=60)


def test_every_operation_of_the_document_is_fuzzed():
    """The parametrized test above covers every operation the document lists (nothing filtered out)."""
    documented = {(method.upper(), path) for path, item in DOCUMENT["paths"].items() for method in item
                  if method in ("get", "head", "post", "put", "patch", "delete")}
    fuzzed = {(op.method.upper(), op.path) for op in (result.ok() for result in schema.get_all_operations())}
    assert fuzzed == documented


def test_live_document_is_the_one_fuzzed(fuzzed_server):
    assert httpx.get(fuzzed_server.url + "/openapi.json").json() == DOCUMENT
