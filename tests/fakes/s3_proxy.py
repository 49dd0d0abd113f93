"""A fault-injecting HTTP proxy in front of the local S3 server (moto), on loopback.

Owns: forwarding real S3 HTTP requests byte for byte to an upstream endpoint and, on demand,
answering with what a flaky R2 edge produces instead: bursts of 500/503 with S3 XML error
bodies, connection resets after the request was read, a full outage (every connection
dropped) for a period, and a hold that parks uploads (PUT/POST) until released so a test can
kill a client mid-upload. Counts what it forwarded and what it broke.

Clients point ``R2_ENDPOINT`` at :attr:`FaultProxy.url`; assertions read the bucket straight
from the upstream so that they do not depend on the proxy's mood.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
ERROR_CODES = {500: "InternalError", 503: "SlowDown", 502: "BadGateway"}


@dataclass
class FaultProxy:
    """Handle and fault knobs of a running proxy; knobs may be changed from any thread."""

    upstream: str
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    fail_remaining: int = 0
    fail_status: int = 500
    fail_methods: tuple[str, ...] = ("PUT", "POST", "HEAD", "GET", "DELETE")
    reset_remaining: int = 0
    bad_etag_remaining: int = 0
    """Replace the ETag of the next successful PUT responses with a wrong one."""
    outage_until: float = 0.0
    held: threading.Event = field(default_factory=threading.Event)
    """Set = traffic flows; cleared = uploads (PUT/POST) wait at the proxy."""
    parked: int = 0
    seen: list[tuple[str, str]] = field(default_factory=list)
    """(method, path) of every request forwarded upstream."""
    forwarded: int = 0
    failed: int = 0
    resets: int = 0
    dropped: int = 0

    def __post_init__(self) -> None:
        self.held.set()

    def uploads_of(self, key: str) -> int:
        """How many forwarded PUTs (single or part) targeted ``key``."""
        with self.lock:
            return sum(1 for method, path in self.seen if method == "PUT" and path.endswith(key))

    def fail_next(self, count: int, status: int = 500, methods: tuple[str, ...] = ()) -> None:
        """Answer the next ``count`` matching requests with ``status`` and an S3 error body."""
        with self.lock:
            self.fail_remaining = count
            self.fail_status = status
            self.fail_methods = methods or ("PUT", "POST", "HEAD", "GET", "DELETE")

    def lie_about_etag_next(self, count: int) -> None:
        """Forward the next ``count`` PUTs but answer with an ETag that is not the object's."""
        with self.lock:
            self.bad_etag_remaining = count

    def reset_next(self, count: int) -> None:
        """Close the connection on the next ``count`` requests after reading them."""
        with self.lock:
            self.reset_remaining = count

    def outage(self, seconds: float) -> None:
        """Drop every request for ``seconds`` from now, as if the edge were unreachable."""
        with self.lock:
            self.outage_until = time.monotonic() + seconds

    def hold_uploads(self) -> None:
        """Park PUT/POST requests at the proxy until :meth:`release_uploads`."""
        self.held.clear()

    def release_uploads(self) -> None:
        """Let parked and future uploads through."""
        self.held.set()


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    upstream = urlsplit(proxy.upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def finish(self) -> None:
            super().finish()
            upstream_connection = getattr(self, "_upstream", None)
            if upstream_connection is not None:
                upstream_connection.close()

        def _drop(self) -> None:
            self.close_connection = True
            self.connection.close()

        def _handle(self) -> None:
            body = self._read_body()
            with proxy.lock:
                if time.monotonic() < proxy.outage_until:
                    proxy.dropped += 1
                    action = "drop"
                elif proxy.reset_remaining > 0:
                    proxy.reset_remaining -= 1
                    proxy.resets += 1
                    action = "drop"
                elif proxy.fail_remaining > 0 and self.command in proxy.fail_methods:
                    proxy.fail_remaining -= 1
                    proxy.failed += 1
                    action = "fail"
                else:
                    action = "forward"
            if action == "drop":
                self._drop()
                return
            if action == "fail":
                self._error(proxy.fail_status)
                return
            if self.command in ("PUT", "POST") and not proxy.held.is_set():
                with proxy.lock:
                    proxy.parked += 1
                proxy.held.wait()
            self._forward(body)

        def _error(self, status: int) -> None:
            code = ERROR_CODES.get(status, "InternalError")
            payload = (
                '<?xml version="1.0" encoding="UTF-8"?>'
                f"<Error><Code>{code}</Code><Message>injected by the fault proxy</Message>"
                "</Error>"
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def _forward(self, body: bytes) -> None:
            # One upstream connection per client connection, reused while both stay open.
            connection = getattr(self, "_upstream", None)
            if connection is None:
                connection = http.client.HTTPConnection(
                    upstream.hostname or "127.0.0.1", upstream.port, timeout=60
                )
                self._upstream = connection
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                lie = False
                if self.command == "PUT" and response.status == 200:
                    with proxy.lock:
                        lie = proxy.bad_etag_remaining > 0
                        proxy.bad_etag_remaining -= int(lie)
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() in HOP_BY_HOP or key.lower() == "content-length":
                        continue
                    wrong = '"00000000000000000000000000000000"'
                    self.send_header(key, wrong if lie and key.lower() == "etag" else value)
                if self.command == "HEAD":
                    length = response.getheader("Content-Length") or "0"
                    self.send_header("Content-Length", length)
                else:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                with proxy.lock:
                    proxy.forwarded += 1
                    proxy.seen.append((self.command, urlsplit(self.path).path))
            except (OSError, http.client.HTTPException):
                connection.close()
                self._upstream = None
                raise

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle  # noqa: N815 - stdlib names

    return Handler


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    """Run a proxy to ``upstream`` on an ephemeral loopback port for the block's duration."""
    proxy = FaultProxy(upstream=upstream)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    httpd.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, name="fault-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.release_uploads()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
