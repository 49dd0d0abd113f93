"""A local HTTP file server with Range support and fault knobs, standing in for Hugging Face.

Owns: serving byte blobs on 127.0.0.1 the way the hub's ``resolve`` URLs do (HEAD and GET,
``Range: bytes=N-``/``N-M`` with 206 and ``Content-Range``, 416 past the end, an optional 302
to a "CDN" URL carrying ``X-Linked-Etag``/``X-Linked-Size`` and a signed query string), plus
faults a real network produces: 5xx bursts, a connection dropped mid-body, a corrupted byte,
401 for gated files without the right bearer token, and a per-chunk delay. Records every
request so tests can assert on headers and concurrency.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

CHUNK = 64 * 1024


@dataclass
class FakeFile:
    """One blob and the faults to inject when it is served."""

    data: bytes
    linked: bool = True
    """Serve ``/resolve/<name>`` as a 302 with X-Linked-* headers to ``/cdn/<name>?sig=...``."""
    fail_first: int = 0
    """Answer this many GETs of the body with HTTP 500 first."""
    fail_status: int = 500
    drop_after: int | None = None
    """On the first body GET, close the connection after this many bytes of the body."""
    corrupt_once: bool = False
    """Flip one byte in the first body response."""
    token: str | None = None
    """When set, 401 unless ``Authorization: Bearer <token>`` (on /resolve, like the hub)."""
    delay_per_chunk: float = 0.0
    stall_after: int | None = None
    """On the first body GET, stop sending for ``stall_seconds`` after this many bytes."""
    stall_seconds: float = 0.0
    advertised_size: int | None = None
    """Report this in X-Linked-Size instead of the real size."""
    ignore_range: bool = False
    gets: int = 0

    @property
    def sha256(self) -> str:
        """Hex sha256 of the blob."""
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class RequestRecord:
    """What the server saw."""

    method: str
    path: str
    authorization: str | None
    range: str | None


@dataclass
class FileServer:
    """Handle to a running server."""

    base_url: str
    files: dict[str, FakeFile]
    requests: list[RequestRecord] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, name: str) -> str:
        """The hub-style URL of ``name``."""
        return f"{self.base_url}/resolve/{name}"

    def body_gets(self, name: str) -> list[RequestRecord]:
        """GET requests that fetched bytes of ``name`` (after any redirect)."""
        return [
            r
            for r in self.requests
            if r.method == "GET" and r.path.rsplit("/", 1)[-1] == name and "/cdn/" in r.path
        ] or [r for r in self.requests if r.method == "GET" and r.path == f"/resolve/{name}"]


def _byte_range(header: str | None, size: int) -> tuple[int, int]:
    """(first, last) byte of a ``Range: bytes=N-`` or ``bytes=N-M`` header, else the whole."""
    if not header:
        return 0, size - 1
    first, _, last = header.removeprefix("bytes=").partition("-")
    return int(first), min(int(last), size - 1) if last else size - 1


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _record(self) -> None:
            with server.lock:
                server.requests.append(
                    RequestRecord(
                        method=self.command,
                        path=urlsplit(self.path).path,
                        authorization=self.headers.get("Authorization"),
                        range=self.headers.get("Range"),
                    )
                )

        def _plain(self, status: int, text: str = "") -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self._serve()

        def do_GET(self) -> None:
            self._serve()

        def _serve(self) -> None:
            self._record()
            parts = urlsplit(self.path)
            kind, _, name = parts.path.lstrip("/").partition("/")
            fake = server.files.get(name)
            if fake is None or kind not in ("resolve", "cdn"):
                self._plain(404, "not found")
                return
            if kind == "resolve":
                expected = f"Bearer {fake.token}"
                if fake.token and self.headers.get("Authorization") != expected:
                    self._plain(401, "Access to model is restricted. You must be authenticated.")
                    return
                if fake.linked:
                    self.send_response(302)
                    # Another host name for the same socket, like the hub's CDN: clients must
                    # drop the bearer token when they follow it.
                    port = self.server.server_address[1]
                    cdn = f"http://localhost:{port}/cdn/{name}?sig=SECRET-SIGNATURE&exp=1"
                    self.send_header("Location", cdn)
                    self.send_header("X-Linked-Etag", f'"{fake.sha256}"')
                    size = fake.advertised_size or len(fake.data)
                    self.send_header("X-Linked-Size", str(size))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            elif self.headers.get("Authorization"):
                # A CDN that receives the hub token is a leak the client must never cause.
                self._plain(400, "Authorization header sent to the CDN")
                return
            self._body(fake)

        def _body(self, fake: FakeFile) -> None:
            if self.command == "GET":
                with server.lock:
                    fake.gets += 1
                    attempt = fake.gets
                if attempt <= fake.fail_first:
                    self._plain(fake.fail_status, "upstream error")
                    return
            else:
                attempt = 0
            data = fake.data
            wanted = None if fake.ignore_range else self.headers.get("Range")
            start, end = _byte_range(wanted, len(data))
            if start >= len(data) and wanted:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206 if wanted else 200
            body = data[start : end + 1]
            first_body = attempt == fake.fail_first + 1
            if fake.corrupt_once and first_body and body:
                middle = len(body) // 2
                body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.end_headers()
            if self.command == "HEAD":
                return
            self._send(fake, body, first_body=first_body)

        def _send(self, fake: FakeFile, body: bytes, *, first_body: bool) -> None:
            limit = fake.drop_after if (fake.drop_after is not None and first_body) else None
            with server.lock:
                server.active += 1
                server.max_active = max(server.max_active, server.active)
            try:
                sent = 0
                while sent < len(body):
                    chunk = body[sent : sent + CHUNK]
                    if fake.stall_after is not None and first_body and sent >= fake.stall_after:
                        self.wfile.flush()
                        time.sleep(fake.stall_seconds)
                        self.close_connection = True
                        return
                    if limit is not None and sent + len(chunk) > limit:
                        self.wfile.write(chunk[: max(0, limit - sent)])
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    if fake.delay_per_chunk:
                        time.sleep(fake.delay_per_chunk)
                    self.wfile.write(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            finally:
                with server.lock:
                    server.active -= 1

    return Handler


@contextmanager
def file_server(files: dict[str, FakeFile]) -> Iterator[FileServer]:
    """Serve ``files`` on an ephemeral loopback port for the duration of the block."""
    handle = FileServer(base_url="", files=files)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(handle))
    httpd.daemon_threads = True
    handle.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, name="fake-http-files", daemon=True)
    thread.start()
    try:
        yield handle
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
