"""A GitHub REST double on loopback: the three read calls ``image/pins.py`` makes.

Owns: ``GET /repos/{o}/{r}`` (``default_branch``), ``GET /repos/{o}/{r}/commits/{ref}`` (a
branch name or a full sha: ``sha`` and ``commit.committer.date``) and
``GET /repos/{o}/{r}/compare/{base}...{head}`` (``status`` ahead/behind/identical/diverged and
``ahead_by``/``behind_by`` from a linear history per branch). Unknown repositories, refs or
commits answer 404 ``{"message": "Not Found"}`` as GitHub does; a wrong ``Authorization``
answers 401 ``Bad credentials``. Records request paths and headers.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class FakeRepo:
    """A repository: its default branch and, per branch, commits oldest first (sha, date)."""

    default_branch: str
    branches: dict[str, list[tuple[str, str]]]


@dataclass
class GitHubDouble:
    """Handle to a running double."""

    repos: dict[str, FakeRepo]
    token: str | None = None
    base_url: str = ""
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)


def _compare(repo: FakeRepo, base: str, head: str) -> dict[str, object] | None:
    positions = {}
    for branch, commits in repo.branches.items():
        for index, (sha, _date) in enumerate(commits):
            positions.setdefault(sha, (branch, index))
    if base not in positions or head not in positions:
        return None
    (b_branch, b_index), (h_branch, h_index) = positions[base], positions[head]
    if b_branch != h_branch:
        return {"status": "diverged", "ahead_by": h_index + 1, "behind_by": b_index + 1}
    if b_index == h_index:
        return {"status": "identical", "ahead_by": 0, "behind_by": 0}
    if h_index > b_index:
        return {"status": "ahead", "ahead_by": h_index - b_index, "behind_by": 0}
    return {"status": "behind", "ahead_by": 0, "behind_by": b_index - h_index}


def _handler(double: GitHubDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            return

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            double.requests.append((self.path, dict(self.headers.items())))
            auth = self.headers.get("Authorization")
            if auth is not None and double.token is not None and auth != f"Bearer {double.token}":
                self._send(401, {"message": "Bad credentials"})
                return
            match = re.fullmatch(r"/repos/([^/]+/[^/]+)(/.*)?", self.path)
            repo = double.repos.get(match.group(1)) if match else None
            if match is None or repo is None:
                self._send(404, {"message": "Not Found"})
                return
            rest = match.group(2) or ""
            if rest == "":
                self._send(200, {"default_branch": repo.default_branch})
                return
            if rest.startswith("/commits/"):
                ref = rest.removeprefix("/commits/")
                commits = repo.branches.get(ref)
                found = commits[-1] if commits else None
                for branch_commits in repo.branches.values():
                    found = found or next((c for c in branch_commits if c[0] == ref), None)
                if found is None:
                    self._send(404, {"message": "Not Found"})
                    return
                sha, date = found
                self._send(200, {"sha": sha, "commit": {"committer": {"date": date}}})
                return
            if rest.startswith("/compare/") and "..." in rest:
                base, head = rest.removeprefix("/compare/").split("...", 1)
                body = _compare(repo, base, head)
                self._send(200, body) if body else self._send(404, {"message": "Not Found"})
                return
            self._send(404, {"message": "Not Found"})

    return Handler


@contextmanager
def github_api(repos: dict[str, FakeRepo], token: str | None = None) -> Iterator[GitHubDouble]:
    """Serve ``repos`` on an ephemeral loopback port for the duration of the block."""
    double = GitHubDouble(repos=repos, token=token)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(double))
    httpd.daemon_threads = True
    double.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, name="fake-github", daemon=True)
    thread.start()
    try:
        yield double
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
