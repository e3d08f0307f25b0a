"""``initsvc serve`` runs the event loop the settings name (``INITSVC_EVENT_LOOP``, docs/api.md §7),
in one process and in several, and the servers the tests start run the same one."""

from __future__ import annotations

import pytest
import uvicorn

from service import server as serving
from service.settings import Settings


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_serve_runs_the_event_loop_the_settings_name(monkeypatch, event_loop):
    seen: list[str] = []
    monkeypatch.setattr(serving.DrainingServer, "run", lambda self, sockets=None: seen.append(self.config.loop))
    monkeypatch.setattr(serving.DrainingMultiprocess, "run", lambda self: seen.append(self.config.loop))
    monkeypatch.setattr(uvicorn.Config, "bind_socket", lambda self: None)
    settings = Settings(event_loop=event_loop)
    serving.run(settings)
    serving.run_workers(2, settings)
    assert seen == [event_loop, event_loop]


def test_the_default_loop_is_asyncio(monkeypatch):
    monkeypatch.delenv("INITSVC_EVENT_LOOP", raising=False)
    assert Settings().event_loop == "asyncio"


def test_the_test_server_runs_the_default_loop(server):
    assert server.server.config.loop == Settings().event_loop


def test_an_unknown_loop_is_refused_naming_the_setting(monkeypatch):
    from pydantic import ValidationError

    monkeypatch.setenv("INITSVC_EVENT_LOOP", "trio")
    with pytest.raises(ValidationError, match="event_loop"):
        Settings()


def test_serve_names_the_option_and_the_variable_of_a_bad_loop_from_the_environment(monkeypatch):
    from click.testing import CliRunner

    from service.cli import main

    monkeypatch.setenv("INITSVC_EVENT_LOOP", "trio")
    done = CliRunner().invoke(main, ["serve"])
    assert done.exit_code == 2
    assert "Invalid value for '--event-loop' (INITSVC_EVENT_LOOP): Input should be 'asyncio' or 'uvloop'" in done.output
    monkeypatch.delenv("INITSVC_EVENT_LOOP")
    done = CliRunner().invoke(main, ["serve", "--event-loop", "trio"])
    assert done.exit_code == 2 and "'trio' is not one of 'asyncio', 'uvloop'" in done.output
