"""Which endpoint the ops commands talk to, and what the stack says about the rollout.

Owns: resolving the endpoint id, API key and job-API base URL from flags, piped
``pulumi stack output --json`` and the environment; reading the stack outputs by the names
the program exports (:mod:`components.outputs`, the one list both sides use; see
:data:`READS`). Precedence for the endpoint id: the ``--endpoint-id`` flag, then the stack
outputs, then ``RUNPOD_COMFYUI_ENDPOINT_ID``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from components import outputs as names

DEFAULT_ENDPOINT_BASE_URL = "https://api.runpod.ai/v2"

Value = Literal[
    "endpoint_id",
    "image_digest",
    "image_ref",
    "volume_id",
    "kv_namespace_id",
    "kv_key",
    "r2_endpoint",
    "r2_bucket",
    "r2_access_key_id",
    "r2_secret_access_key",
    "provider",
    "comfyui_percent",
    "stack",
]

#: What ops reads from the stack outputs, and the one output it comes from.
READS: dict[Value, str] = {
    "endpoint_id": names.COMFYUI_ENDPOINT_ID,
    "image_digest": names.IMAGE_DIGEST,
    "image_ref": names.IMAGE_REF,
    "volume_id": names.COMFYUI_NETWORK_VOLUME_ID,
    "kv_namespace_id": names.KV_NAMESPACE_ID,
    "kv_key": names.KV_KEY,
    "r2_endpoint": names.S3_ENDPOINT,
    "r2_bucket": names.BUCKET_NAME,
    "r2_access_key_id": names.APP_R2_ACCESS_KEY_ID,
    "r2_secret_access_key": names.APP_R2_SECRET_ACCESS_KEY,
}

#: What ops reads from the rollout flag (the ``rolloutFlag`` output), and its field there.
FLAG_READS: dict[Value, str] = {
    "provider": "provider",
    "comfyui_percent": "comfyuiPercent",
    "stack": "stack",
}

#: Which ``R2_*`` variable each stack output can stand in for (the environment wins).
R2_ENV_FROM_OUTPUTS: dict[str, Value] = {
    "R2_ENDPOINT": "r2_endpoint",
    "R2_BUCKET": "r2_bucket",
    "R2_ACCESS_KEY_ID": "r2_access_key_id",
    "R2_SECRET_ACCESS_KEY": "r2_secret_access_key",
}

PROVIDERS = ("scenario", "comfyui", "runpod")

#: What ``pulumi stack output --json`` prints for a value it has not got or will not show.
_ABSENT = (None, "", "[secret]")


class TargetError(ValueError):
    """Not enough information to know which endpoint to talk to."""


def _json_object(value: Any) -> dict[str, Any] | None:
    """The JSON object an output holds (``rolloutFlag`` is a JSON string), else None."""
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


@dataclass(frozen=True)
class StackOutputs:
    """``pulumi stack output --json`` as a mapping, read by the names the program exports."""

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

    def get(self, what: Value) -> Any:
        """The value ``what`` (a key of :data:`READS` or :data:`FLAG_READS`), or None."""
        if what in FLAG_READS:
            flag = self.flag() or {}
            value = flag.get(FLAG_READS[what])
        else:
            value = self.values.get(READS[what])
        return None if value in _ABSENT else value

    def flag(self) -> dict[str, Any] | None:
        """The rollout flag the program exports (``rolloutFlag``), parsed, or None."""
        return _json_object(self.values.get(names.ROLLOUT_FLAG))

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
