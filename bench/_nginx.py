"""Debian's nginx on loopback with the repository's cache-tier conf (``deploy/nginx/initsvc-cache.conf``)
filled in for free ports and a scratch cache folder, run as the current user: what
``bench/cache_tier.py`` measures and ``tests/test_cache_tier.py`` tests."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "deploy" / "nginx" / "initsvc-cache.conf"
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)

MAIN_CONF = """\
daemon off;
worker_processes 1;
{user}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/initsvc-cache.conf;
}}
"""


def render(template: str, values: dict[str, str]) -> str:
    """What the nginx image's envsubst does: every ${CACHE_...} placeholder filled, none left."""
    text = re.sub(r"\$\{(CACHE_\w+)\}", lambda m: values[m[1]], template)
    if "${" in text:
        raise ValueError(f"placeholders left unfilled: {re.findall(r'[$][{][^}]*[}]', text)}")
    return text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited {process.returncode}: {log.read_text() if log.exists() else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("nginx did not start listening")


def start_nginx(prefix: Path, upstream: str) -> tuple[subprocess.Popen, int]:
    """nginx with the repository's conf in front of ``upstream`` (``host:port``); (process, its port)."""
    if NGINX is None:
        raise RuntimeError("nginx is not installed (bash .ci/nginx-setup installs Debian's nginx-light)")
    port = _free_port()
    (prefix / "cache").mkdir(mode=0o700)
    values = {
        "CACHE_UPSTREAM": upstream,
        "CACHE_LISTEN": f"127.0.0.1:{port}",
        "CACHE_DIR": str(prefix / "cache"),
        "CACHE_MAX_SIZE": "256m",
    }
    (prefix / "initsvc-cache.conf").write_text(render(CONF.read_text(), values))
    # As root nginx would hand its workers to "nobody", who cannot write the scratch cache folder.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(MAIN_CONF.format(prefix=prefix, user=user))
    log = prefix / "error.log"
    process = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(log)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        _wait_for_port(port, process, log)
    except BaseException:
        process.kill()
        process.wait(10)
        assert process.stderr is not None
        process.stderr.close()
        raise
    return process, port


def stop_nginx(process: subprocess.Popen, prefix: Path) -> list[str]:
    """Stop it; the ``[emerg]``/``[crit]`` lines of its error log (none when all went well)."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    if process.stderr is not None:
        process.stderr.close()
    return [line for line in (prefix / "error.log").read_text().splitlines() if "[emerg]" in line or "[crit]" in line]
