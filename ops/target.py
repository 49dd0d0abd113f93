"""Which endpoint the ops commands talk to, and what the stack says about the rollout.

Owns: resolving the endpoint id, API key and job-API base URL from flags, piped
``pulumi stack output --json`` and the environment; reading stack outputs tolerantly by a
documented set of names (see :data:`OUTPUT_NAMES`). Precedence for the endpoint id: the
``--endpoint-id`` flag, then the stack outputs, then ``RUNPOD_COMFYUI_ENDPOINT_ID``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_ENDPOINT_BASE_URL = "https://api.runpod.ai/v2"

#: Stack output names accepted for each value, first match wins. Matching ignores case,
#: ``_`` and ``-``; nested objects (e.g. ``rollout: {provider, comfyuiPercent}``) are
#: searched too, top level first. ``[secret]`` placeholders count as absent.
OUTPUT_NAMES: dict[str, tuple[str, ...]] = {
    "endpoint_id": (
        "endpointId",
        "serverlessEndpointId",
        "comfyuiEndpointId",
        "runpodEndpointId",
        "runpodComfyuiEndpointId",
    ),
    "provider": ("rolloutProvider", "provider", "imageGenerationProvider"),
    "comfyui_percent": ("comfyuiPercent", "rolloutComfyuiPercent", "rolloutPercent"),
    "image_digest": ("imageDigest", "workerImageDigest", "imageRepoDigest", "imageRef"),
    "stack": ("stack", "stackName"),
    "r2_endpoint": ("s3Endpoint", "r2Endpoint", "bucketEndpoint"),
    "r2_bucket": ("bucketName", "r2Bucket"),
    "r2_access_key_id": ("appR2AccessKeyId", "r2ReadAccessKeyId"),
    "r2_secret_access_key": ("appR2SecretAccessKey", "r2ReadSecretAccessKey"),
    "kv_namespace_id": ("kvNamespaceId",),
    "kv_key": ("kvKey",),
}

#: Outputs holding the whole flag ``{provider, comfyuiPercent, endpointId, stack}``.
FLAG_OUTPUTS = frozenset({"rolloutflag", "flag", "providerflag"})

#: Which ``R2_*`` variable each stack output can stand in for (the environment wins).
R2_ENV_FROM_OUTPUTS = {
    "R2_ENDPOINT": "r2_endpoint",
    "R2_BUCKET": "r2_bucket",
    "R2_ACCESS_KEY_ID": "r2_access_key_id",
    "R2_SECRET_ACCESS_KEY": "r2_secret_access_key",
}

PROVIDERS = ("scenario", "comfyui", "runpod")


class TargetError(ValueError):
    """Not enough information to know which endpoint to talk to."""


def _norm(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def _json_object(value: Any) -> Any:
    """A JSON object inside a string output (e.g. ``rolloutFlag``), else the value."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return parsed if isinstance(parsed, dict) else value
    return value


def _flatten(values: Mapping[str, Any], depth: int = 0) -> list[tuple[int, str, Any]]:
    found: list[tuple[int, str, Any]] = []
    for key, raw in values.items():
        value = _json_object(raw)
        if isinstance(value, Mapping) and depth < 3:
            found.extend(_flatten(value, depth + 1))
        else:
            found.append((depth, _norm(key), value))
    return found


@dataclass(frozen=True)
class StackOutputs:
    """``pulumi stack output --json`` as a mapping, read by tolerant names."""

    values: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> StackOutputs:
        """Parse the JSON document; raise :class:`TargetError` on anything else."""
        if not text.strip():
            return cls({})
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise TargetError(
                "stack outputs are not JSON: pipe `pulumi stack output --json` into --outputs -"
            ) from exc
        if not isinstance(data, dict):
            raise TargetError("stack outputs must be a JSON object (pulumi stack output --json)")
        return cls(data)

    @classmethod
    def load(cls, source: str | None) -> StackOutputs:
        """Read ``source``: ``-`` for stdin, a file path, or None for nothing."""
        if source is None:
            return cls({})
        if source == "-":
            return cls.parse(sys.stdin.read())
        path = Path(source)
        if not path.is_file():
            raise TargetError(f"--outputs {source}: no such file")
        return cls.parse(path.read_text(encoding="utf-8"))

    def get(self, what: str) -> Any:
        """The value for ``what`` (a key of :data:`OUTPUT_NAMES`), or None."""
        wanted = [_norm(name) for name in OUTPUT_NAMES[what]]
        matches = [
            (depth, wanted.index(key), value)
            for depth, key, value in _flatten(self.values)
            if key in wanted and value not in (None, "", "[secret]")
        ]
        return min(matches, key=lambda match: match[:2])[2] if matches else None

    def flag(self) -> dict[str, Any] | None:
        """The KV flag value the program exports (``rolloutFlag``), parsed, or None."""
        for key, value in self.values.items():
            parsed = _json_object(value)
            if _norm(key) in FLAG_OUTPUTS and isinstance(parsed, dict):
                return dict(parsed)
        return None

    def r2_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` with any unset ``R2_*`` variable filled from the outputs."""
        merged = dict(env)
        for variable, what in R2_ENV_FROM_OUTPUTS.items():
            value = self.get(what)
            if not merged.get(variable, "").strip() and value is not None:
                merged[variable] = str(value)
        return merged

    @property
    def empty(self) -> bool:
        """Nothing was given."""
        return not self.values


@dataclass(frozen=True)
class Target:
    """One endpoint's job API and the credentials to call it."""

    base_url: str
    endpoint_id: str
    api_key: str = field(repr=False)


def resolve_target(
    *,
    endpoint_id: str | None,
    api_key: str | None,
    base_url: str | None,
    outputs: StackOutputs,
    env: Mapping[str, str] | None = None,
) -> Target:
    """Combine flags, stack outputs and the environment; raise :class:`TargetError`."""
    env = os.environ if env is None else env
    problems = []
    endpoint = (
        endpoint_id
        or (str(outputs.get("endpoint_id")) if outputs.get("endpoint_id") else None)
        or env.get("RUNPOD_COMFYUI_ENDPOINT_ID", "").strip()
    )
    if not endpoint:
        problems.append(
            "no endpoint id: pass --endpoint-id, set RUNPOD_COMFYUI_ENDPOINT_ID, or pipe "
            "`pulumi stack output --json` into `--outputs -`"
        )
    key = api_key or env.get("RUNPOD_API_KEY", "").strip()
    if not key:
        problems.append("no API key: set RUNPOD_API_KEY")
    if problems:
        raise TargetError("; ".join(problems))
    base = base_url or env.get("RUNPOD_ENDPOINT_BASE_URL", "").strip() or DEFAULT_ENDPOINT_BASE_URL
    return Target(base_url=base.rstrip("/"), endpoint_id=endpoint, api_key=key)
