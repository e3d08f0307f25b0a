"""``initsvc serve``: the HTTP service in this process (one worker) or in several (``--workers``),
with one option per setting (each sets its ``INITSVC_`` variable)."""

from __future__ import annotations

import os
from typing import Any, Literal, get_args, get_origin

import click

from service.cli.options import CONTEXT, F
from service.settings import Settings

# Every setting is an option of serve (``--max-elements`` for ``max_elements``; ``--device`` for
# ``default_device``) except the API keys, which stay environment-only: an option's value is
# visible to every user of the machine in the process list.
ENVIRONMENT_ONLY = {"api_keys"}
SERVE_SETTINGS: dict[str, str | None] = {
    name: {"default_device": "--device"}.get(name) for name in Settings.model_fields if name not in ENVIRONMENT_ONLY
}


def _settings_options(command: F) -> F:
    """One option per ``SERVE_SETTINGS`` field, with the field's description as its help."""
    for field_name, flag in reversed(SERVE_SETTINGS.items()):
        field = Settings.model_fields[field_name]
        env = f"INITSVC_{field_name.upper()}"
        default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
        default = "empty" if default == [] else default
        annotation = [a for a in get_args(field.annotation) if a is not type(None)] or [field.annotation]
        kind: Any = {bool: bool, int: int, float: float}.get(annotation[0], str)
        if get_origin(field.annotation) is Literal:
            kind = click.Choice(get_args(field.annotation))
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
    _check_device(settings)
    # Each server process drains on SIGTERM: 503s with Retry-After, /readyz down, in-flight responses
    # finished within --shutdown-timeout-s; with several, the parent passes the signal on to each.
    from service.server import run, run_workers

    if workers == 1:
        run(settings, host=host, port=port)
        return
    status = run_workers(workers, settings, host=host, port=port)
    if status:
        raise SystemExit(status)


def _check_device(settings: Settings) -> None:
    """``--device`` names a device this machine has (the server would fail at start-up otherwise)."""
    from service.engine.devices import available_devices, default_device

    if settings.default_device is None:
        return
    devices = available_devices()
    if default_device(settings.default_device) not in devices:
        raise click.BadParameter(
            f"{settings.default_device!r} is not a device of this machine; it has {', '.join(devices)}",
            param_hint="'--device' (INITSVC_DEFAULT_DEVICE)",
        )
