"""A GitHub REST double on loopback: issues, comments and labels, as ``ops health-alert`` uses them.

Owns: ``GET|POST /repos/{o}/{r}/issues`` (the list also returns pull requests, marked with a
``pull_request`` key, exactly as GitHub does; ``state``, ``labels``, ``per_page`` and ``page``
filter and paginate, with a ``Link: <...>; rel="next"`` header), ``PATCH
/repos/{o}/{r}/issues/{n}`` (``state``, ``state_reason``), ``GET|POST
/repos/{o}/{r}/issues/{n}/comments`` (paginated the same way) and ``POST /repos/{o}/{r}/labels``
(422 ``already_exists`` for a name taken, case-insensitively). A wrong or missing token answers
401 ``Bad credentials``; an unknown repository or issue 404 ``Not Found``; a label on a new issue
that does not exist 422 (stricter than GitHub, which may create it: the client creates it
first). Also receives webhook posts at ``/hooks/<name>`` (any JSON), for the alert's optional
webhook. Records every request.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "ghs_test-health-token"  # a local double's credential, not a real one


@dataclass
class IssuesDouble:
    """State and handle of a running double."""

    repository: str
    token: str = TOKEN
    base_url: str = ""
    issues: list[dict[str, Any]] = field(default_factory=list)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    labels: list[dict[str, Any]] = field(default_factory=list)
    hooks: list[tuple[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_pull_request(self, title: str, labels: list[str]) -> None:
        """A pull request: GitHub lists it among the issues."""
        number = len(self.issues) + 1
        self.issues.append(
            {
                **self._issue(number, title, "", labels),
                "pull_request": {"url": f"{self.base_url}/pulls/{number}"},
            }
        )

    def _issue(self, number: int, title: str, body: str, labels: list[str]) -> dict[str, Any]:
        return {
            "number": number,
            "title": title,
            "body": body,
            "state": "open",
            "state_reason": None,
            "labels": [{"name": name} for name in labels],
            "html_url": f"https://github.com/{self.repository}/issues/{number}",
        }

    def open_issues(self, label: str) -> list[dict[str, Any]]:
        """Open issues (not pull requests) carrying ``label``."""
        return [
            i
            for i in self.issues
            if i["state"] == "open"
            and "pull_request" not in i
            and label in {lab["name"] for lab in i["labels"]}
        ]

    # --- HTTP ---------------------------------------------------------------------------
    def handle(  # noqa: PLR0911, PLR0912 - a router: one return per route and refusal
        self, method: str, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path.startswith("/hooks/"):
            self.hooks.append((parts.path, body))
            return 200, {"ok": True}, {}
        auth = headers.get("authorization", "")
        if auth not in (f"Bearer {self.token}", f"token {self.token}"):
            return 401, {"message": "Bad credentials"}, {}
        match = re.fullmatch(
            r"/repos/([^/]+/[^/]+)/(issues|labels)(?:/(\d+))?(/comments)?", parts.path
        )
        if not match or match[1] != self.repository:
            return 404, {"message": "Not Found"}, {}
        kind, number, comments = match[2], match[3], match[4]
        if kind == "labels":
            return self._labels(method, number, body)
        if number is None:
            if method == "GET":
                return self._page(parts.path, self._filter(query), query)
            if method == "POST":
                return self._create(body)
            return 404, {"message": "Not Found"}, {}
        issue = next((i for i in self.issues if i["number"] == int(number)), None)
        if issue is None:
            return 404, {"message": "Not Found"}, {}
        if comments:
            if method == "GET":
                return self._page(parts.path, self.comments.get(issue["number"], []), query)
            if method == "POST" and isinstance(body, dict) and isinstance(body.get("body"), str):
                comment = {"id": sum(map(len, self.comments.values())) + 1, "body": body["body"]}
                self.comments.setdefault(issue["number"], []).append(comment)
                return 201, comment, {}
            return 422, {"message": "Validation Failed"}, {}
        if method == "PATCH" and isinstance(body, dict):
            state = body.get("state", issue["state"])
            if state not in ("open", "closed"):
                return 422, {"message": "Validation Failed"}, {}
            issue["state"], issue["state_reason"] = state, body.get("state_reason")
            return 200, issue, {}
        if method == "GET":
            return 200, issue, {}
        return 404, {"message": "Not Found"}, {}

    def _filter(self, query: dict[str, str]) -> list[dict[str, Any]]:
        state = query.get("state", "open")
        wanted = {name for name in query.get("labels", "").split(",") if name}
        return [
            i
            for i in self.issues
            if (state == "all" or i["state"] == state)
            and wanted <= {lab["name"] for lab in i["labels"]}
        ]

    def _page(
        self, path: str, items: list[dict[str, Any]], query: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        per_page = min(100, int(query.get("per_page", "30")))
        page = int(query.get("page", "1"))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(items):
            rest = {**query, "page": str(page + 1), "per_page": str(per_page)}
            link = "&".join(f"{k}={v}" for k, v in rest.items())
            headers["Link"] = f'<{self.base_url}{path}?{link}>; rel="next"'
        return 200, chunk, headers

    def _create(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        if not isinstance(body, dict) or not isinstance(body.get("title"), str):
            return 422, {"message": "Validation Failed", "errors": [{"field": "title"}]}, {}
        names = {label["name"].lower() for label in self.labels}
        wanted = list(body.get("labels") or [])
        if any(str(name).lower() not in names for name in wanted):
            return 422, {"message": "Validation Failed", "errors": [{"field": "labels"}]}, {}
        issue = self._issue(len(self.issues) + 1, body["title"], body.get("body") or "", wanted)
        self.issues.append(issue)
        return 201, issue, {}

    def _labels(
        self, method: str, number: str | None, body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if method != "POST" or number is not None or not isinstance(body, dict):
            return 404, {"message": "Not Found"}, {}
        name = str(body.get("name") or "")
        if not name:
            return 422, {"message": "Validation Failed"}, {}
        if any(label["name"].lower() == name.lower() for label in self.labels):
            return (
                422,
                {
                    "message": "Validation Failed",
                    "errors": [{"resource": "Label", "code": "already_exists", "field": "name"}],
                },
                {},
            )
        label = {"name": name, "color": body.get("color"), "description": body.get("description")}
        self.labels.append(label)
        return 201, label, {}


def _handler(double: IssuesDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            return

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            headers = {k.lower(): v for k, v in self.headers.items()}
            with double.lock:
                double.requests.append((self.command, self.path))
                status, payload, extra = double.handle(self.command, self.path, headers, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve  # noqa: N815 - http.server's naming

    return Handler


@contextmanager
def github_issues(repository: str = "acme/comfyui-runpod") -> Iterator[IssuesDouble]:
    """Run an :class:`IssuesDouble` on 127.0.0.1 for a ``with`` block."""
    double = IssuesDouble(repository=repository)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(double))
    server.daemon_threads = True
    double.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield double
    finally:
        server.shutdown()
        server.server_close()
