"""Reading one HTTP/1.1 answer off a raw socket, for tests that must send what httpx would not."""

from __future__ import annotations

import socket


def read_response(sock: socket.socket, buffered: bytes = b"") -> tuple[int, dict[str, str], bytes, bytes]:
    """``(status, headers, body, rest)``: header names lower-cased; the body by its Content-Length
    (without one, up to the close); ``rest``, what was read past the answer (``buffered`` is what
    an earlier call read past its own)."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before an answer: {data[:200]!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), data[:200]
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"]) if "content-length" in headers else None
    while length is None or len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            assert length is None, "the connection closed inside the body"
            break
        rest += chunk
    end = len(rest) if length is None else length
    return int(lines[0].split()[1]), headers, rest[:end], rest[end:]
