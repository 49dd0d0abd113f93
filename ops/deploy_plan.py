"""What a push to ``main`` deploys: staging, prod, and whether prod's change is a rollout flip.

Owns: reading the pushed range with git and deciding, for ``.github/workflows/deploy.yml``:

- ``staging``: something besides ``Pulumi.prod.yaml`` changed (code, image, staging's file);
- ``prod``: ``Pulumi.prod.yaml`` changed (a promotion, a percentage step, a rollback);
- ``rollout_only``: the push changed nothing but ``Pulumi.prod.yaml``, and in it nothing but
  ``rollout.provider`` and ``rollout.comfyuiPercent`` (comments and order aside). Such a
  change (a rollback, a percentage step) deploys prod at once, through the ``production``
  environment, without waiting for staging, and applies to the resources those two keys
  feed only (``pulumi up --target``, :func:`ops.rollback.rollout_urns`): whatever else
  ``main`` holds that prod has not run yet stays out. ``rollout.kvKey`` is not a flag flip
  (it moves the flag) and takes the normal way.

An unknown ``before`` (a new branch, a force push that dropped it, all zeros) counts as
everything changed and never as rollout-only.

The same question decides a pull request's previews (``.github/workflows/preview.yml``,
``before`` = the merge commit's first parent): ``stacks`` lists what merging it would deploy,
so prod is previewed (and prod's passphrase handed to a job) only when the pull request
changes ``Pulumi.prod.yaml``.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROD_FILE = "Pulumi.prod.yaml"
#: Every stack a plan can name, in deploy order.
STACKS = ("staging", "prod")


@dataclass(frozen=True)
class DeployPlan:
    """The three answers, and why."""

    staging: bool
    prod: bool
    rollout_only: bool
    reason: str

    @property
    def stacks(self) -> list[str]:
        """The stacks this change deploys, in deploy order (a preview matrix)."""
        deployed = {"staging": self.staging, "prod": self.prod}
        return [stack for stack in STACKS if deployed[stack]]

    def github_output(self) -> str:
        """``key=value`` lines for ``$GITHUB_OUTPUT``."""
        return (
            f"staging={str(self.staging).lower()}\n"
            f"prod={str(self.prod).lower()}\n"
            f"rollout_only={str(self.rollout_only).lower()}\n"
            f"stacks={json.dumps(self.stacks, separators=(',', ':'))}\n"
        )


class GitError(Exception):
    """git could not answer."""


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _exists(repo: Path, rev: str) -> bool:
    if not rev or set(rev) == {"0"}:
        return False
    try:
        _git(repo, "cat-file", "-e", f"{rev}^{{commit}}")
    except GitError:
        return False
    return True


def _config(repo: Path, rev: str) -> dict[str, Any] | None:
    try:
        text = _git(repo, "show", f"{rev}:{PROD_FILE}")
    except GitError:
        return None
    document = yaml.safe_load(text) or {}
    config = document.get("config") if isinstance(document, dict) else None
    return dict(config) if isinstance(config, dict) else {}


#: The keys a rollout-only change may touch: the flag's provider and share.
ROLLOUT_KEYS = frozenset({"rollout.provider", "rollout.comfyuiPercent"})


def _is_rollout_key(key: str) -> bool:
    return str(key).partition(":")[2] in ROLLOUT_KEYS


def plan(repo: Path, before: str, after: str) -> DeployPlan:
    """Decide for the push ``before..after`` in the repository at ``repo``."""
    if not _exists(repo, before):
        return DeployPlan(True, True, False, f"unknown base {before[:12] or '(none)'}: deploy all")
    changed = [p for p in _git(repo, "diff", "--name-only", before, after).splitlines() if p]
    prod = PROD_FILE in changed
    staging = any(path != PROD_FILE for path in changed)
    if not prod:
        return DeployPlan(staging, False, False, f"{len(changed)} file(s) changed, not {PROD_FILE}")
    if staging:
        rest = ", ".join(p for p in changed if p != PROD_FILE)
        return DeployPlan(True, True, False, f"{PROD_FILE} and other files changed ({rest})")
    old, new = _config(repo, before), _config(repo, after)
    if old is None or new is None:
        return DeployPlan(False, True, False, f"{PROD_FILE} added or removed")
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    others = [k for k in keys if not _is_rollout_key(k)]
    if keys and not others:
        return DeployPlan(False, True, True, f"only {', '.join(keys)} changed: a rollout change")
    what = ", ".join(others) if others else "comments or formatting only"
    return DeployPlan(False, True, False, f"{PROD_FILE} changed: {what}")
