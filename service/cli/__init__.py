"""``initsvc``: serve the API, and fetch from it.

    initsvc serve [--port 8000] [--device cuda:0] [--max-elements N ...]
    initsvc fetch --shape 256 784 --scheme kaiming_uniform --seed 0 -o w.safetensors
    initsvc module layers.json -o model.safetensors
    initsvc schemes | gain relu | fans 64 3 7 7 | devices

Thin over ``service.client`` (as httpx's ``_main.py`` is over httpx) and over ``Settings``, whose
fields ``serve``'s options are. A service error prints ``ErrorName: detail`` on one line and
exits 1, without a traceback. Client verbs never import torch.

This package: the ``initsvc`` group here; ``serve`` in ``serve.py``; the client verbs in
``downloads.py`` (fetch, module, model) and ``catalog.py`` (models, schemes, gain, fans, devices),
their output helpers in ``output.py``, shared options and value parsers in ``options.py``.
"""

from __future__ import annotations

import os

# Pinned before anything loads torch, as in ``service.app`` (``serve`` runs the server in this
# process); the client commands never load torch, so it changes nothing for them.
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
import click

import service
from service.cli.catalog import devices, fans, gain, models, schemes
from service.cli.downloads import fetch, model, module
from service.cli.options import CONTEXT
from service.cli.serve import serve

COMMANDS = (serve, fetch, module, model, models, schemes, gain, fans, devices)


@click.group(context_settings=CONTEXT, commands=COMMANDS)
@click.version_option(service.__version__, prog_name="initsvc", message="%(prog)s %(version)s")
def main() -> None:
    """initsvc: initialized neural-network weights over HTTP, bit-identical to torch.nn.init."""
