"""What the client commands share: the client they build, error reporting on one line, JSON and
summary printing, the download progress bar, and saving an answer to a file."""

from __future__ import annotations

import functools
import json
import sys
from typing import Any

import click

from service.cli.options import (
    F,
)


def _reports_errors(command: F) -> F:
    """Service errors and unreachable servers become ``ErrorName: detail`` and exit status 1."""
    import httpx

    from service.client import InitServiceError

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except InitServiceError as exc:
            message = f"{type(exc).__name__}: {exc}"
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            url = click.get_current_context().params.get("url") or "the URL given"
            reason = exc.__cause__ or exc  # the client's own message names base_url, not --url
            message = (f"{type(exc).__name__}: the server is not reachable at {url} ({reason or 'no answer'}). "
                       "Start one with 'initsvc serve', or point --url (or INITSVC_URL) at a running one.")
        except httpx.HTTPError as exc:
            where = f" ({exc.request.url})" if _has_request(exc) else ""
            message = f"{type(exc).__name__}: {exc or 'no answer'}{where}"
        click.echo(" ".join(message.split()), err=True)
        sys.exit(1)

    return run  # type: ignore[return-value]


def _has_request(exc: Exception) -> bool:
    try:
        return exc.request is not None  # type: ignore[attr-defined]
    except RuntimeError:
        return False


def _client(url: str, api_key: str | None, timeout: float, retries: int) -> Any:
    from service.client import InitClient

    return InitClient(url, api_key, timeout=timeout, retries=retries)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def _echo_summary(summary: Any) -> None:
    """``--json``: the stats, normalized request and provenance, without the data."""
    _echo_json({"tensors": summary.tensors, "request": summary.request, "provenance": summary.provenance})


class _ProgressBar:
    """``progress(done, total)`` for the client: a bar sized from Content-Length, or an
    indeterminate one when there is none; on stderr, so ``-o -`` can write to stdout."""

    def __init__(self, enabled: bool, label: str):
        self.enabled, self.label, self.bar, self.done = enabled, label, None, 0

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            unsized = (None for _ in ())  # no length hint: click draws an indeterminate bar
            self.bar = click.progressbar(iterable=None if total is not None else unsized, length=total,
                                         label=self.label, file=sys.stderr, show_eta=total is not None,
                                         item_show_func=lambda done: _size(done) if done is not None else None)
            self.bar.__enter__()
        self.bar.update(done - self.done, done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _save(client: Any, output: str, quiet: bool, **request: Any) -> None:
    """Stream the answer to ``output`` (``-``: stdout) with a progress bar, then say what was written.
    Binary is not written to a terminal (``-o -`` is for a pipe or a redirect)."""
    if output == "-" and sys.stdout.isatty():
        raise click.UsageError("-o - writes the safetensors bytes to stdout, which is a terminal here; "
                               "pipe or redirect it (| or >), or give a file name")
    if output != "-":
        from pathlib import Path

        from service.client._answers import check_target

        try:
            check_target(Path(output))
        except OSError as exc:  # before the server makes anything
            raise click.BadParameter(str(exc), param_hint="'-o' / '--output'") from None
    bar = _ProgressBar(not quiet and output != "-" and sys.stderr.isatty(), f"{output}")
    try:
        path = sys.stdout.buffer if output == "-" else output
        written = client.download(path=path, progress=bar, **request)
    finally:
        bar.close()
    if not quiet and output != "-":
        click.echo(f"wrote {written.path}: {written.nbytes} bytes, seed {written.seed}, device {written.device}",
                   err=True)
