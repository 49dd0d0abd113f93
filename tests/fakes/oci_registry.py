"""An OCI distribution registry on loopback, behaving as GHCR does for the calls promotion makes.

Owns (distribution-spec v1.1): the Bearer token handshake (``401`` with ``WWW-Authenticate:
Bearer realm=...,service=...,scope=...``; ``GET /token`` answers a token for the granted
actions, with basic credentials required for a private package), ``HEAD|GET|PUT
/v2/<name>/manifests/<ref>`` (by tag or digest; a manifest whose media type the ``Accept``
header does not list is ``MANIFEST_UNKNOWN``; a pushed manifest whose blobs are missing is
``MANIFEST_BLOB_UNKNOWN``), ``HEAD /v2/<name>/blobs/<digest>``, blob downloads that redirect
(307) to a second "CDN" server which refuses requests carrying an ``Authorization`` header
(as presigned storage URLs do), monolithic uploads (``POST .../blobs/uploads/`` then ``PUT
<location>?digest=``; a wrong digest is ``DIGEST_INVALID``) and ``GET /v2/<name>/tags/list``
paginated with ``n``/``last`` and a ``Link`` header. Pushing with a token that may only pull
is ``403 DENIED``. Records every request (method, path, whether it carried credentials).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@dataclass
class Registry:
    """The registry's state; ``credentials`` maps a password (token) to granted actions."""

    private: bool = True
    credentials: dict[str, set[str]] = field(default_factory=dict)
    manifests: dict[str, dict[str, tuple[str, bytes]]] = field(default_factory=dict)
    """repository -> digest -> (media type, bytes)."""
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    """repository -> tag -> digest."""
    blobs: dict[str, dict[str, bytes]] = field(default_factory=dict)
    uploads: dict[str, str] = field(default_factory=dict)
    bearer: dict[str, tuple[str, set[str]]] = field(default_factory=dict)
    """issued token -> (repository, actions)."""
    requests: list[tuple[str, str, bool]] = field(default_factory=list)
    base_url: str = ""
    cdn_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def push_image(self, repository: str, tag: str | None = None) -> str:
        """Store a (multi-arch index) image; return its digest."""
        body = json.dumps(
            {"schemaVersion": 2, "mediaType": INDEX, "manifests": [], "nonce": secrets.token_hex(8)}
        ).encode()
        digest = digest_of(body)
        self.manifests.setdefault(repository, {})[digest] = (INDEX, body)
        if tag:
            self.tags.setdefault(repository, {})[tag] = digest
        return digest

    def delete_image(self, repository: str, digest: str) -> None:
        self.manifests[repository].pop(digest)

    # --- auth -----------------------------------------------------------------------------
    def token(
        self, headers: dict[str, str], query: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        scope = query.get("scope", "")
        match = re.fullmatch(r"repository:([a-z0-9._/-]+):([a-z,]+)", scope)
        if not match:
            return 400, _error("UNSUPPORTED", f"scope {scope!r}"), {}
        granted: set[str] = set() if self.private else {"pull"}
        auth = headers.get("authorization", "")
        if auth.startswith("Basic "):
            _, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if password not in self.credentials:
                return 401, _error("UNAUTHORIZED", "authentication required"), {}
            granted = set(self.credentials[password])
        elif self.private:
            return 401, _error("UNAUTHORIZED", "authentication required"), {}
        actions = set(match[2].split(",")) & granted
        issued = secrets.token_hex(16)
        self.bearer[issued] = (match[1], actions)
        return 200, {"token": issued}, {}

    def _challenge(self, repository: str, push: bool) -> tuple[int, Any, dict[str, str]]:
        scope = f"repository:{repository}:{'pull,push' if push else 'pull'}"
        header = f'Bearer realm="{self.base_url}/token",service="ghcr.io",scope="{scope}"'
        return 401, _error("UNAUTHORIZED", "authentication required"), {"WWW-Authenticate": header}

    def _allowed(
        self, headers: dict[str, str], repository: str, push: bool
    ) -> tuple[int, Any, dict[str, str]] | None:
        auth = headers.get("authorization", "")
        grant = (
            self.bearer.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        )
        if grant is None or grant[0] != repository:
            return self._challenge(repository, push)
        if "pull" not in grant[1] or (push and "push" not in grant[1]):
            return 403, _error("DENIED", "permission_denied: write_package"), {}
        return None

    # --- routes ---------------------------------------------------------------------------
    def handle(  # noqa: PLR0911, PLR0912 - a router: one return per route and refusal
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/token":
            return self.token(headers, query)
        if parts.path == "/v2/":
            return self._challenge("", False)
        match = re.fullmatch(r"/v2/(.+?)/(manifests|blobs|tags)/(.*)", parts.path)
        if not match:
            return 404, _error("NAME_UNKNOWN", parts.path), {}
        repository, kind, rest = match[1], match[2], match[3]
        push = method in ("PUT", "POST", "PATCH", "DELETE")
        refused = self._allowed(headers, repository, push)
        if refused:
            return refused
        if kind == "tags" and rest == "list" and method == "GET":
            return self._tags(repository, query)
        if kind == "manifests":
            if method in ("HEAD", "GET"):
                return self._get_manifest(repository, rest, headers, method)
            if method == "PUT":
                return self._put_manifest(repository, rest, headers, body)
        if kind == "blobs":
            if rest == "uploads/" and method == "POST":
                session = secrets.token_hex(8)
                self.uploads[session] = repository
                return 202, None, {"Location": f"/v2/{repository}/blobs/uploads/{session}"}
            if rest.startswith("uploads/") and method == "PUT":
                session = rest.removeprefix("uploads/")
                if self.uploads.pop(session, None) != repository:
                    return 404, _error("BLOB_UPLOAD_UNKNOWN", session), {}
                digest = query.get("digest", "")
                if digest_of(body) != digest:
                    return 400, _error("DIGEST_INVALID", "digest did not match content"), {}
                self.blobs.setdefault(repository, {})[digest] = body
                return 201, None, {"Location": f"/v2/{repository}/blobs/{digest}"}
            if _DIGEST.match(rest) and method in ("HEAD", "GET"):
                if rest not in self.blobs.get(repository, {}):
                    return 404, _error("BLOB_UNKNOWN", rest), {}
                if method == "HEAD":
                    return 200, None, {}
                return 307, None, {"Location": f"{self.cdn_url}/{repository}/{rest}?sig=x"}
        return 405, _error("UNSUPPORTED", f"{method} {parts.path}"), {}

    def _resolve(self, repository: str, reference: str) -> str | None:
        if _DIGEST.match(reference):
            return reference if reference in self.manifests.get(repository, {}) else None
        return self.tags.get(repository, {}).get(reference)

    def _get_manifest(
        self, repository: str, reference: str, headers: dict[str, str], method: str
    ) -> tuple[int, Any, dict[str, str]]:
        digest = self._resolve(repository, reference)
        if digest is None:
            return 404, _error("MANIFEST_UNKNOWN", reference), {}
        media, data = self.manifests[repository][digest]
        accept = headers.get("accept", "")
        if accept and media not in [a.strip() for a in accept.split(",")]:
            return 404, _error("MANIFEST_UNKNOWN", f"no {accept} manifest for {reference}"), {}
        extra = {"Docker-Content-Digest": digest, "Content-Type": media}
        return 200, (None if method == "HEAD" else data), extra

    def _put_manifest(
        self, repository: str, tag: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if not _TAG.match(tag):
            return 400, _error("TAG_INVALID", tag), {}
        try:
            manifest = json.loads(body)
        except ValueError:
            return 400, _error("MANIFEST_INVALID", "not JSON"), {}
        media = headers.get("content-type", "")
        if manifest.get("mediaType") != media or media != MANIFEST:
            return 400, _error("MANIFEST_INVALID", f"media type {media!r}"), {}
        referenced = [manifest.get("config", {}), *manifest.get("layers", [])]
        stored = self.blobs.get(repository, {})
        for descriptor in referenced:
            if descriptor.get("digest") not in stored:
                return 400, _error("MANIFEST_BLOB_UNKNOWN", str(descriptor.get("digest"))), {}
            if len(stored[descriptor["digest"]]) != descriptor.get("size"):
                return 400, _error("SIZE_INVALID", str(descriptor.get("digest"))), {}
        digest = digest_of(body)
        self.manifests.setdefault(repository, {})[digest] = (media, body)
        self.tags.setdefault(repository, {})[tag] = digest
        return (
            201,
            None,
            {"Docker-Content-Digest": digest, "Location": f"/v2/{repository}/manifests/{digest}"},
        )

    def _tags(self, repository: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if repository not in self.manifests:
            return 404, _error("NAME_UNKNOWN", repository), {}
        every = sorted(self.tags.get(repository, {}))
        last = query.get("last")
        if last:
            every = [tag for tag in every if tag > last]
        size = int(query.get("n", "100"))
        page = every[:size]
        extra = {}
        if len(every) > size:
            extra["Link"] = f'</v2/{repository}/tags/list?n={size}&last={page[-1]}>; rel="next"'
        return 200, {"name": repository, "tags": page}, extra


def _error(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message}]}


def _server(handle: Any, record: Any) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            return

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            record(self.command, self.path, "authorization" in headers)
            status, payload, extra = handle(self.command, self.path, headers, body)
            data = (
                payload
                if isinstance(payload, bytes)
                else (b"" if payload is None else json.dumps(payload).encode())
            )
            self.send_response(status)
            if "Content-Type" not in extra:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _serve  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


@contextmanager
def oci_registry(*, private: bool = True) -> Iterator[Registry]:
    """A registry and its blob CDN on 127.0.0.1 for a ``with`` block."""
    registry = Registry(private=private)

    def handle(method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        with registry.lock:
            return registry.handle(method, path, headers, body)

    def cdn(method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        if "authorization" in headers:
            return 400, _error("InvalidArgument", "Only one auth mechanism allowed"), {}
        repository, _, digest = urlsplit(path).path.lstrip("/").rpartition("/")
        with registry.lock:
            data = registry.blobs.get(repository, {}).get(digest)
        if method != "GET" or data is None:
            return 404, _error("NotFound", path), {}
        return 200, data, {"Content-Type": "application/octet-stream"}

    def record(method: str, path: str, authorised: bool) -> None:
        with registry.lock:
            registry.requests.append((method, path, authorised))

    servers = [_server(handle, record), _server(cdn, record)]
    registry.base_url = f"http://127.0.0.1:{servers[0].server_address[1]}"
    registry.cdn_url = f"http://127.0.0.1:{servers[1].server_address[1]}"
    for server in servers:
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
    try:
        yield registry
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
