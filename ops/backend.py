"""Which Pulumi state backend this checkout uses, decided the way the Pulumi CLI decides it.

Owns: the one declaration of a team's backend, ``backend.url`` in ``Pulumi.yaml``, which the
Pulumi CLI itself honours for every command run in the project; ``PULUMI_BACKEND_URL`` in the
environment overrides it (also as the CLI does). Without either, one person's default is the
local file backend (``~/.pulumi``), which ``scripts/up`` logs in to. CI refuses the local
backend (``--require-team``): a runner's disk is gone after the job.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

ENV = "PULUMI_BACKEND_URL"
LOCAL = "file://~"


@dataclass(frozen=True)
class Backend:
    """The backend URL and where it was declared."""

    url: str
    source: str
    """``PULUMI_BACKEND_URL``, ``Pulumi.yaml backend.url`` or ``default (local)``."""

    @property
    def local(self) -> bool:
        """State on this machine's disk."""
        return self.url.startswith("file://")


def declared(root: Path, env: Mapping[str, str] | None = None) -> Backend:
    """The backend the Pulumi CLI would use in ``root`` (its precedence, without credentials)."""
    env = os.environ if env is None else env
    if url := env.get(ENV, "").strip():
        return Backend(url, ENV)
    project = yaml.safe_load((root / "Pulumi.yaml").read_text(encoding="utf-8")) or {}
    section = project.get("backend") if isinstance(project, dict) else None
    url = str(section.get("url") or "").strip() if isinstance(section, dict) else ""
    if url:
        return Backend(url, "Pulumi.yaml backend.url")
    return Backend(LOCAL, "default (local)")
