"""Put a one-file change on ``main``: a commit pushed there, or a pull request it opens.

Owns: building the commit with git plumbing from the remote's ``main`` (``fetch``, ``show``,
``hash-object``, a throw-away index, ``commit-tree``), so the operator's working tree, index
and branch are never touched and nothing but the intended lines lands (a locally edited stack
file may hold ``secure:`` values that must never be committed). Then either pushing it to
``main`` (``--push``; retried when ``main`` moved meanwhile) or pushing it to a branch and
opening a pull request with ``gh`` unless one is already open for that branch (a re-run
updates the branch and opens nothing new). A change ``main`` already has is not proposed.

Used by the rollback (``scripts/rollback``) and by promotion (``ops promote open-pr``).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Mode = Literal["pr", "push"]
PUSH_ATTEMPTS = 3


class MainlineError(Exception):
    """git or gh failed; the message names the command and its error."""


@dataclass(frozen=True)
class Proposal:
    """What happened on the remote."""

    changed: bool
    """False when ``main`` already had the change (nothing was pushed)."""
    commit: str | None
    branch: str | None
    url: str | None
    """The pull request's URL (mode ``pr``)."""
    existing: bool = False
    """A pull request for the branch was already open (it was updated, not opened again)."""


Runner = Callable[[Sequence[str], str | None, Mapping[str, str] | None], str]


def run(argv: Sequence[str], stdin: str | None, env: Mapping[str, str] | None) -> str:
    """Run a command, return its stdout; a failure raises :class:`MainlineError`."""
    done = subprocess.run(
        list(argv),
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env} if env else None,
    )
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise MainlineError(f"`{' '.join(argv)}` failed (exit {done.returncode}): {detail}")
    return done.stdout


@dataclass
class Mainline:
    """The repository at ``repo`` and its remote's ``base`` branch."""

    repo: Path
    remote: str = "origin"
    base: str = "main"
    runner: Runner = run

    def git(
        self, *args: str, stdin: str | None = None, env: Mapping[str, str] | None = None
    ) -> str:
        """``git -C <repo> ...``."""
        return self.runner(("git", "-C", str(self.repo), *args), stdin, env)

    def _commit(
        self, path: str, edit: Callable[[str], str], message: str
    ) -> tuple[str, str] | None:
        """The commit on top of the remote base that applies ``edit`` to ``path``, and its
        base; None when the base already has the result."""
        self.git("fetch", "--quiet", self.remote, self.base)
        base = self.git("rev-parse", "FETCH_HEAD").strip()
        old = self.git("show", f"{base}:{path}")
        new = edit(old)
        if new == old:
            return None
        listed = self.git("ls-tree", base, "--", path).split()
        mode = listed[0] if listed else "100644"
        blob = self.git("hash-object", "-w", "--stdin", stdin=new).strip()
        with tempfile.TemporaryDirectory(prefix="mainline-") as folder:
            index = {"GIT_INDEX_FILE": str(Path(folder) / "index")}
            self.git("read-tree", base, env=index)
            self.git("update-index", "--cacheinfo", f"{mode},{blob},{path}", env=index)
            tree = self.git("write-tree", env=index).strip()
        commit = self.git("commit-tree", tree, "-p", base, "-m", message).strip()
        return commit, base

    def propose(
        self,
        path: str,
        edit: Callable[[str], str],
        *,
        message: str,
        mode: Mode,
        branch: str,
        title: str,
        body: str,
    ) -> Proposal:
        """Commit ``edit`` of ``path`` onto the remote base and push it (``push``) or open a
        pull request from ``branch`` (``pr``)."""
        if mode == "push":
            return self._push(path, edit, message)
        built = self._commit(path, edit, message)
        if built is None:
            return Proposal(False, None, None, None)
        commit = built[0]
        self.git("push", "--quiet", "--force", self.remote, f"{commit}:refs/heads/{branch}")
        existing = self._existing_pull_request(branch)
        if existing is not None:
            return Proposal(True, commit, branch, existing, existing=True)
        url = self.gh(
            "pr", "create", "--base", self.base, "--head", branch, "--title", title, "--body", body
        ).strip()
        return Proposal(True, commit, branch, url.splitlines()[-1] if url else None)

    def gh(self, *args: str) -> str:
        """``gh ...`` (in the current directory, as the operator runs it)."""
        return self.runner(("gh", *args), None, None)

    def _push(self, path: str, edit: Callable[[str], str], message: str) -> Proposal:
        """Push the commit to the base branch, rebuilt on the new tip when it moved."""
        for _ in range(PUSH_ATTEMPTS):
            built = self._commit(path, edit, message)
            if built is None:
                return Proposal(False, None, None, None)
            try:
                self.git("push", "--quiet", self.remote, f"{built[0]}:refs/heads/{self.base}")
            except MainlineError as error:
                if "rejected" in str(error) or "fetch first" in str(error):
                    continue  # main moved since the fetch: build on the new tip
                raise
            return Proposal(True, built[0], self.base, None)
        raise MainlineError(
            f"{self.base} kept moving: could not push after {PUSH_ATTEMPTS} attempts"
        )

    def _existing_pull_request(self, branch: str) -> str | None:
        """The URL of the open pull request from ``branch`` into the base, if there is one."""
        listed = self.gh(
            "pr",
            "list",
            "--head",
            branch,
            "--base",
            self.base,
            "--state",
            "open",
            "--json",
            "number,url",
        )
        try:
            open_prs = json.loads(listed or "[]")
        except ValueError as exc:
            raise MainlineError(f"`gh pr list` did not print JSON: {listed[:200]}") from exc
        return str(open_prs[0].get("url")) if open_prs else None
