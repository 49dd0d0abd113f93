#!/usr/bin/env python3
"""Maintainer command: how far each pin of ``nodes.toml`` is behind its upstream branch head.

Owns: asking GitHub's REST API, for every locked package, for the repository's default branch,
that branch's head commit and date, and whether the pinned commit is an ancestor of the head
(the compare endpoint's ``status`` is ``ahead`` or ``identical``); printing one row per pin
(or JSON) and, with ``--check``, exiting 1 when a pin is off its default branch, on another
branch than the lock says, or a year or more behind the head. Reads ``GITHUB_TOKEN`` (optional,
never printed) and ``GITHUB_API_URL`` (default ``https://api.github.com``). Runs on a
maintainer's machine; the tests point it at a loopback double.

    uv run python image/pins.py [--check] [--json] [--lock image/nodes.toml]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from install_nodes import LockError, Package, load_lock

HERE = Path(__file__).resolve().parent
MAX_AGE_DAYS = 365


class GitHubError(RuntimeError):
    """A GitHub API call failed; the message names the call and GitHub's answer."""


@dataclass(frozen=True)
class PinStatus:
    """One row of the report."""

    name: str
    commit: str
    date: str
    branch: str
    default_branch: str
    head: str
    head_date: str
    days_behind: int
    commits_behind: int
    on_branch: bool

    @property
    def problems(self) -> list[str]:
        """What ``--check`` fails on."""
        found = []
        if self.branch != self.default_branch:
            found.append(f"lock says {self.branch}, the default branch is {self.default_branch}")
        if not self.on_branch:
            found.append(f"{self.commit[:12]} is not on {self.default_branch}")
        if self.days_behind >= MAX_AGE_DAYS:
            found.append(f"{self.days_behind} days behind the head: move the pin")
        return found


class GitHub:
    """The three read-only REST calls the report needs."""

    def __init__(self, base_url: str, token: str | None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/vnd.github+json"
        self.session.headers["X-GitHub-Api-Version"] = "2022-11-28"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def get(self, path: str) -> dict[str, Any]:
        """``GET path``; raise :class:`GitHubError` naming the call, status and detail."""
        url = f"{self.base_url}{path}"
        try:
            answer = self.session.get(url, timeout=self.timeout)
        except requests.RequestException as exc:
            raise GitHubError(f"GET {url}: {exc}") from exc
        if answer.status_code != 200:
            try:
                detail = answer.json().get("message", answer.text[:200])
            except ValueError:
                detail = answer.text[:200]
            raise GitHubError(f"GET {url}: HTTP {answer.status_code}: {detail}")
        body = answer.json()
        if not isinstance(body, dict):
            raise GitHubError(f"GET {url}: expected an object, got {type(body).__name__}")
        return body


def _slug(repo_url: str) -> str:
    return repo_url.removeprefix("https://github.com/").removesuffix(".git")


def status_of(package: Package, github: GitHub) -> PinStatus:
    """Default branch, its head, and whether the pin is an ancestor of it."""
    slug = _slug(package.repo)
    default_branch = str(github.get(f"/repos/{slug}")["default_branch"])
    head = github.get(f"/repos/{slug}/commits/{default_branch}")
    head_sha = str(head["sha"])
    head_date = datetime.fromisoformat(str(head["commit"]["committer"]["date"]))
    compare = github.get(f"/repos/{slug}/compare/{package.commit}...{head_sha}")
    on_branch = compare.get("status") in {"ahead", "identical"}
    return PinStatus(
        name=package.name,
        commit=package.commit,
        date=package.date.isoformat(),
        branch=package.branch,
        default_branch=default_branch,
        head=head_sha,
        head_date=head_date.isoformat(),
        days_behind=(head_date - package.date).days,
        commits_behind=int(compare.get("ahead_by", 0)),
        on_branch=on_branch,
    )


def table(rows: Sequence[PinStatus]) -> str:
    """The report for people."""
    header = ("package", "pin", "pin date", "branch", "head", "head date", "behind", "status")
    lines = [header]
    for row in rows:
        lines.append(
            (
                row.name,
                row.commit[:12],
                row.date[:10],
                row.default_branch,
                row.head[:12],
                row.head_date[:10],
                f"{row.days_behind} d / {row.commits_behind} commits",
                "; ".join(row.problems) or "ok",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point: 0 all pins fine (or no --check), 1 a pin needs moving, 2 usage/API error."""
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(prog="pins.py", description=__doc__.split("\n")[0])
    parser.add_argument("--lock", type=Path, default=HERE / "nodes.toml")
    parser.add_argument("--check", action="store_true", help="exit 1 when a pin needs moving")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    github = GitHub(
        env.get("GITHUB_API_URL") or "https://api.github.com", env.get("GITHUB_TOKEN") or None
    )
    try:
        rows = [status_of(package, github) for package in load_lock(args.lock)]
    except (LockError, GitHubError) as exc:
        sys.stderr.write(f"[pins] ERROR: {exc}\n")
        return 2
    if args.json:
        payload = [{**asdict(row), "problems": row.problems} for row in rows]
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        sys.stdout.write(table(rows) + "\n")
    return 1 if args.check and any(row.problems for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
