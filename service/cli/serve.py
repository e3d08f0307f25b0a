"""``initsvc serve``: the HTTP service in this process (one worker) or in several (``--workers``),
with one option per setting (each sets its ``INITSVC_`` variable)."""

from __future__ import annotations

import os
from typing import Any, get_args

import click

from service.cli.options import CONTEXT, F
from service.settings import Settings

# Settings fields that serve takes as options (the rest, such as API keys, stay environment-only).
SERVE_SETTINGS = {
    "default_device": "--device", "max_elements": None, "max_request_bytes": None, "max_tensors": None,
    "max_body_bytes": None, "max_inflight_bytes": None, "queue_depth": None, "qr_threads": None,
    "cpu_threads": None, "job_timeout_s": None, "shutdown_timeout_s": None, "retry_after_s": None,
    "cors_origins": None, "log_json": None,
}




def _settings_options(command: F) -> F:
    """One option per ``SERVE_SETTINGS`` field, with the field's description as its help."""
    for field_name, flag in reversed(SERVE_SETTINGS.items()):
        field = Settings.model_fields[field_name]
        env = f"INITSVC_{field_name.upper()}"
        default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
        default = "empty" if default == [] else default
        annotation = [a for a in get_args(field.annotation) if a is not type(None)] or [field.annotation]
        kind = {bool: bool, int: int, float: float}.get(annotation[0], str)
        show = f"${env}, else {'unset' if default is None else default}"
        name = flag or "--" + field_name.replace("_", "-")
        decls = [f"{name}/--no-{name[2:]}" if kind is bool else name, field_name]
        command = click.option(*decls, default=None, type=None if kind is bool else kind, show_default=show,
                               help=f"{field.description} Sets {env}.")(command)
    return command


@click.command(context_settings=CONTEXT,
              epilog="Example: initsvc serve --port 8080 --device cpu --max-elements 100000000")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Server processes.")
@_settings_options
def serve(host: str, port: int, workers: int, **overrides: Any) -> None:
    """Start the HTTP service. Settings come from INITSVC_* variables; options override them."""
    from pydantic import ValidationError

    for field_name, value in overrides.items():
        if value is not None:
            os.environ[f"INITSVC_{field_name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    try:
        settings = Settings()  # validated here, read again by each server process from the environment
    except ValidationError as exc:
        first = exc.errors()[0]
        field_name = str(first["loc"][0]) if first["loc"] else ""
        hint = f"INITSVC_{field_name.upper()}"
        if field_name in SERVE_SETTINGS:  # an option of serve; else environment-only
            hint = f"'{SERVE_SETTINGS[field_name] or '--' + field_name.replace('_', '-')}' ({hint})"
        raise click.BadParameter(first["msg"], param_hint=hint) from None
    # Each server process drains on SIGTERM: 503s with Retry-After, /readyz down, in-flight responses
    # finished within --shutdown-timeout-s; with several, the parent passes the signal on to each.
    from service.server import run, run_workers

    if workers == 1:
        run(settings, host=host, port=port)
        return
    status = run_workers(workers, settings, host=host, port=port)
    if status:
        raise SystemExit(status)
