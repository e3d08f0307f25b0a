"""Running the app under uvicorn with a drain on SIGTERM, in one process or in several.

Shutdown, in phases (as uvicorn's own ``Server.shutdown``):
1. SIGTERM: the pool stops admitting work, so a request that still reaches a route (already
   arriving on a busy connection) gets a 503 with ``Retry-After``, and ``/readyz`` asked there a 503.
2. uvicorn stops listening at once (new connections are refused), closes idle connections and
   lets in-flight responses finish, up to ``shutdown_timeout_s``; the process then exits 0.
3. The lifespan stops the device workers.

With several processes (``run_workers``) each one is such a server, on one shared socket; the
parent passes SIGTERM or SIGINT on to every one as SIGTERM, so each drains in the same phases.
"""

from __future__ import annotations

import logging

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from service.settings import Settings

log = logging.getLogger("uvicorn.error")  # where uvicorn's supervisor logs


class DrainingServer(uvicorn.Server):
    """A uvicorn server that marks the app's worker pool as draining when asked to exit."""

    def handle_exit(self, sig: int, frame) -> None:
        drain(self.config.loaded_app if self.config.loaded else None)
        super().handle_exit(sig, frame)
        # uvicorn raises the signal again once it has shut down, so the process dies by it (143);
        # a drain that completes is a clean exit here (0), as the --workers parent's is.
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()


def drain(app) -> None:
    """Phase 1: stop admitting. Works through middleware wrappers to the FastAPI app's state."""
    while app is not None and not hasattr(app, "state"):
        app = getattr(app, "app", None)
    pool = getattr(getattr(app, "state", None), "pool", None)
    if pool is not None:
        pool.stop_accepting()


def uvicorn_options(settings: Settings) -> dict:
    """What every server of ours passes uvicorn: the event loop, the grace period, and no access
    log of uvicorn's own (the app logs one line per request, with its request id)."""
    return {
        "loop": settings.event_loop,
        "timeout_graceful_shutdown": int(settings.shutdown_timeout_s),
        "access_log": False,
    }


def run(settings: Settings | None = None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``create_app(settings)`` in this process until SIGTERM/SIGINT."""
    from service.app import create_app

    settings = settings or Settings()
    config = uvicorn.Config(
        create_app(settings), host=host, port=port, **uvicorn_options(settings)
    )
    DrainingServer(config).run()


def run_workers(workers: int, settings: Settings | None = None, host: str = "127.0.0.1", port: int = 8000) -> int:
    """Serve ``service.app:app`` in ``workers`` processes on one socket until SIGTERM/SIGINT.

    Each process builds the app from the ``INITSVC_`` environment (``Settings()``) and drains as
    ``run`` does. The parent is uvicorn's supervisor: it replaces a process that dies, restarts
    them all on SIGHUP, adds or removes one on SIGTTIN/SIGTTOU. Returns 0 once every process has
    exited, or uvicorn's ``STARTUP_FAILURE`` (3) if one could not start (the app, or the socket).
    """
    settings = settings or Settings()
    config = uvicorn.Config(
        "service.app:app",  # an import string: each process is spawned and imports it afresh
        host=host,
        port=port,
        workers=workers,
        **uvicorn_options(settings),
    )
    supervisor = DrainingMultiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    return STARTUP_FAILURE if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes) else 0


class DrainingProcess(Process):
    """One of uvicorn's supervised server processes, whose server is a ``DrainingServer``."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = DrainingServer(config=self.config)
        return self._server


class DrainingMultiprocess(Multiprocess):
    """uvicorn's ``Multiprocess`` with ``DrainingProcess`` processes.

    On SIGTERM or SIGINT uvicorn's loop (every 0.5 s) sends SIGTERM to each process, which drains;
    the parent then closes its own copy of the socket, so that once every process has stopped
    listening a new connection is refused at once rather than left unanswered in the backlog, and
    waits for them. uvicorn 0.54 (pinned) writes ``Process(...)`` inline where it starts one; the
    methods below are its own with that one call replaced by ``self.new_process()``.
    """

    def new_process(self) -> Process:
        process = DrainingProcess(self.config, self.sockets)
        process.start()
        return process

    def terminate_all(self) -> None:
        super().terminate_all()
        for sock in self.sockets:
            sock.close()

    def init_processes(self) -> None:
        for _ in range(self.processes_num):
            self.processes.append(self.new_process())

    def handle_ttin(self) -> None:
        log.info("Received SIGTTIN, increasing the number of processes.")
        self.processes_num += 1
        self.processes.append(self.new_process())

    def restart_all(self) -> None:
        """Replaces each process, bringing its replacement into service before retiring the old one."""
        for idx, old_process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new_process = self.new_process()
            if not new_process.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new_process.kill()
                new_process.join()
                if not self.should_exit.is_set():
                    log.error("New child process [%s] was not ready in time; keeping [%s].", new_process.pid,
                              old_process.pid)
                return
            old_process.terminate()
            old_process.join()
            self.processes[idx] = new_process

    def keep_subprocess_alive(self) -> None:
        """Replaces a process that died or hangs; stops everything if one failed to start."""
        if self.should_exit.is_set():
            return
        for idx, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:  # the app or the socket is broken: a restart would fail too
                log.error("Child process [%s] failed to start, stopping the parent process.", process.pid)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            log.info("Child process [%s] died", process.pid)
            self.processes[idx] = self.new_process()
