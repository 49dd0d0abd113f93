"""The rollback state: where the app sends traffic right now, and the command that undoes it.

Owns: reading the provider flag the app reads on every request (``{provider,
comfyuiPercent, endpointId, stack}``) from the Workers KV value URL in ``ROLLOUT_FLAG_URL``
(with ``CLOUDFLARE_API_TOKEN`` as bearer when set) or built from ``CLOUDFLARE_ACCOUNT_ID``
plus the ``kvNamespaceId``/``kvKey`` outputs, else from the stack outputs (``rolloutFlag``),
and judging it. An unreachable flag is reported, never a failure; an invalid one fails.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from ops.report import Check
from ops.target import PROVIDERS, StackOutputs

CLOUDFLARE_API = "https://api.cloudflare.com/client/v4"


@dataclass(frozen=True)
class RolloutState:
    """The flag as read, and where it came from."""

    provider: Any
    comfyui_percent: Any
    endpoint_id: Any
    source: str

    @classmethod
    def of(cls, flag: dict[str, Any], *, source: str) -> RolloutState:
        """The state a flag ``{provider, comfyuiPercent, endpointId, stack}`` describes."""
        return cls(
            provider=flag.get("provider"),
            comfyui_percent=flag.get("comfyuiPercent"),
            endpoint_id=flag.get("endpointId"),
            source=source,
        )


def rollback_command(stack: str) -> str:
    """The emergency rollback, exactly as the runbook gives it."""
    return (
        f"pulumi config set rollout.provider scenario --stack {stack} && pulumi up --stack {stack}"
    )


def read_state(
    outputs: StackOutputs, env: Mapping[str, str] | None = None, *, timeout_s: float = 10.0
) -> tuple[RolloutState | None, str | None]:
    """The flag from KV (preferred) or the stack outputs; else None and why."""
    env = os.environ if env is None else env
    url = env.get("ROLLOUT_FLAG_URL", "").strip() or _kv_url(outputs, env)
    problem = None
    if url:
        headers = {}
        token = env.get("CLOUDFLARE_API_TOKEN", "").strip()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = requests.get(url, headers=headers, timeout=timeout_s)
            response.raise_for_status()
            flag = json.loads(response.text)
        except (requests.RequestException, ValueError) as exc:
            problem = f"flag at ROLLOUT_FLAG_URL unreadable ({type(exc).__name__})"
        else:
            if isinstance(flag, dict):
                return RolloutState.of(flag, source="KV flag"), None
            problem = "flag at ROLLOUT_FLAG_URL is not a JSON object"
    flag = outputs.flag()
    if flag is not None:
        return RolloutState.of(flag, source="stack outputs (rolloutFlag)"), problem
    return None, problem or "no ROLLOUT_FLAG_URL and no rollout values in the stack outputs"


def _kv_url(outputs: StackOutputs, env: Mapping[str, str]) -> str:
    """The Cloudflare API URL of the flag, from the outputs and CLOUDFLARE_ACCOUNT_ID."""
    account = env.get("CLOUDFLARE_ACCOUNT_ID", "").strip()
    namespace, key = outputs.get("kv_namespace_id"), outputs.get("kv_key")
    if not (account and namespace and key and env.get("CLOUDFLARE_API_TOKEN", "").strip()):
        return ""
    return f"{CLOUDFLARE_API}/accounts/{account}/storage/kv/namespaces/{namespace}/values/{key}"


def rollout_check(
    state: RolloutState | None,
    problem: str | None,
    *,
    tested_endpoint: str,
    stack: str,
    expected_provider: str | None = None,
) -> Check:
    """Judge the rollback state; absence is a skip (a failure when a provider is expected),
    nonsense or another provider than ``expected_provider`` is a failure."""
    command = rollback_command(stack)
    if state is None:
        if expected_provider:
            return Check(
                "rollback state",
                "fail",
                f"{problem}: cannot confirm provider={expected_provider}",
            )
        return Check("rollback state", "skip", f"{problem}; rollback would be: {command}")
    issues = []
    provider = str(state.provider).lower() if state.provider is not None else None
    if expected_provider and provider != expected_provider:
        issues.append(f"the flag names {state.provider!r}, expected {expected_provider!r}")
    if provider not in PROVIDERS:
        issues.append(f"provider {state.provider!r} is not one of {', '.join(PROVIDERS)}")
    percent = state.comfyui_percent
    try:
        percent_value = int(str(percent)) if percent is not None else None
    except ValueError:
        percent_value = None
    if percent is not None and (percent_value is None or not 0 <= percent_value <= 100):
        issues.append(f"comfyuiPercent {percent!r} is not 0..100")
    if (
        provider in ("comfyui", "runpod")
        and state.endpoint_id
        and str(state.endpoint_id) != tested_endpoint
    ):
        issues.append(
            f"the flag sends traffic to endpoint {state.endpoint_id} but this run tested "
            f"{tested_endpoint}"
        )
    data = {
        "provider": state.provider,
        "comfyuiPercent": state.comfyui_percent,
        "endpointId": state.endpoint_id,
        "source": state.source,
        "rollbackCommand": command,
    }
    summary = f"provider={state.provider}, comfyuiPercent={state.comfyui_percent} ({state.source})"
    if issues:
        return Check("rollback state", "fail", f"{summary}: {'; '.join(issues)}", data)
    return Check("rollback state", "pass", f"{summary}; rollback: {command}", data)
