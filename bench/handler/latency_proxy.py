"""A loopback HTTP proxy that adds a fixed delay to every request (a stand-in for R2's RTT).

Owns only what the handler benchmark needs: forward each request to an upstream S3 server
after ``delay`` seconds, so concurrent and one-at-a-time uploads differ the way they do over
a real network. Bodies must carry Content-Length (boto3 always sends it).
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def _handler_class(upstream: str, delay: float) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            time.sleep(delay)
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                headers["Host"] = self.headers.get("Host", "")
                headers["Content-Length"] = str(len(body))
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                # HEAD announces the object's length (upstream's header), with no body.
                length = response.getheader("Content-Length", "0")
                self.send_header(
                    "Content-Length", length if self.command == "HEAD" else str(len(payload))
                )
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
            finally:
                connection.close()

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward  # noqa: N815 - stdlib names

    return Handler


@contextmanager
def latency_proxy(upstream: str, delay: float) -> Iterator[str]:
    """Serve a delaying proxy to ``upstream`` on loopback; yield its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(upstream, delay))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}"
    finally:
        server.shutdown()
        server.server_close()
