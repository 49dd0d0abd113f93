"""Stack configuration values for tests: a minimal valid set, and the committed stack files.

Stack files and ``Pulumi.yaml`` defaults are not read under Pulumi mocks, so these helpers
load them the way the CLI would and stand in fake values for every secret (listed as
secret, as ``pulumi config set --secret`` would leave them).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from components.config import PROJECT, RUNPOD_API_KEY, SCHEMA

ROOT = Path(__file__).resolve().parents[2]

ACCOUNT_ID = "0123456789abcdef0123456789abcdef"

#: The smallest configuration that validates (no digest, so it builds the image with the push
#: token; the managed endpoint pulls it with the separate read-only pull token).
MINIMAL: dict[str, str] = {
    "cloudflare.accountId": ACCOUNT_ID,
    "cloudflare.apiToken": "fake-cloudflare-token",
    "image.owner": "acme",
    "image.registryToken": "fake-ghcr-token",
    "image.pullToken": "fake-ghcr-pull-token",
    "app.repository": "acme/asset-studio",
    "app.githubToken": "fake-github-token",
}

SECRET_KEYS = (*(key.name for key in SCHEMA if key.secret), RUNPOD_API_KEY)


def fake_secret(name: str) -> str:
    """A recognisable fake value for the secret ``name``."""
    return f"fake-{name.replace(':', '-').replace('.', '-')}"


def project_defaults() -> dict[str, str]:
    """``Pulumi.yaml`` defaults as the strings Pulumi passes a program."""
    document = yaml.safe_load((ROOT / "Pulumi.yaml").read_text(encoding="utf-8"))
    return {
        name: _as_config_string(spec["default"])
        for name, spec in document["config"].items()
        if isinstance(spec, dict) and "default" in spec
    }


def stack_file(stack: str) -> dict[str, str]:
    """Values of ``Pulumi.<stack>.yaml`` keyed by name inside the project namespace."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))
    values = {}
    for full_key, value in document["config"].items():
        assert not (isinstance(value, dict) and "secure" in value), f"{full_key} is secret"
        namespace, _, name = full_key.partition(":")
        values[name if namespace == PROJECT else full_key] = _as_config_string(value)
    return values


def stack_values(
    stack: str, overrides: Mapping[str, str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """Full config for ``stack`` (defaults + stack file + fake secrets + overrides).

    Returns the ``set_all_config`` mapping (full keys) and the secret keys.
    """
    values = {**project_defaults(), **stack_file(stack)}
    values.update({name: fake_secret(name) for name in SECRET_KEYS})
    values.update(overrides or {})
    full = {_full(name): value for name, value in values.items()}
    return full, [_full(name) for name in SECRET_KEYS]


def _full(name: str) -> str:
    return name if ":" in name else f"{PROJECT}:{name}"


def _as_config_string(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
