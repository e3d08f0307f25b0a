"""``initsvc``: serve the API (more verbs arrive with the client)."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """initsvc: initialized neural-network weights over HTTP, bit-identical to torch.nn.init."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Server processes.")
def serve(host: str, port: int, workers: int) -> None:
    """Start the HTTP service (settings from INITSVC_* variables)."""
    import uvicorn

    uvicorn.run("service.app:app", host=host, port=port, workers=workers, timeout_graceful_shutdown=30)
