"""Shared builders for component tests: the stack config as the config reader builds it, each
component's settings from it, and the wiring every RunPod worker is given.

Used by the component tests, the engine simulation (`tests/provider/`) and
`bench/provider_calls`. Keys are changed the way an operator sets them, written with `_` for
the first dot and `__` for a namespace colon: `serverless_workersMin="1"` is
`serverless.workersMin`, `runpod__apiKey` is `runpod:apiKey`; `None` removes a key.
"""

from __future__ import annotations

from typing import Any

import pulumi

from components.config import (
    ServerlessSettings,
    StackConfig,
    VideoPodSettings,
    parse,
)
from components.worker_wiring import WorkerWiring
from tests.fakes.stack_values import MINIMAL

IMAGE = "ghcr.io/acme/comfyui-worker@sha256:" + "c" * 64
"""The worker image `worker_wiring` pins by default."""


def config_values(**changes: str | None) -> dict[str, str]:
    """MINIMAL (the smallest valid config) with `changes` applied."""
    values = dict(MINIMAL)
    for name, value in changes.items():
        key = name.replace("__", ":").replace("_", ".", 1)
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return values


def stack_config(stack: str = "staging", **changes: str | None) -> StackConfig:
    """The config reader's `StackConfig` for MINIMAL with `changes`."""
    return parse(config_values(**changes), stack=stack)


def running_stack_config(**changes: str | None) -> StackConfig:
    """`stack_config` for the project and stack a Pulumi program runs as (call it inside
    the program, so derived names follow the mocked stack)."""
    return parse(config_values(**changes), stack=pulumi.get_stack(), project=pulumi.get_project())


def serverless_settings(**changes: str | None) -> ServerlessSettings:
    """`cfg.serverless` of the running stack; no rollout wait unless `changes` asks for one
    (the wait has tests of its own, and the emulator's rollouts would add calls)."""
    changes.setdefault("serverless_waitForRollout", "false")
    return running_stack_config(**changes).serverless


def video_pod_settings(**changes: str | None) -> VideoPodSettings:
    """`cfg.video_pod` of the running stack."""
    return running_stack_config(**changes).video_pod


def worker_wiring(*, outputs: bool = True, **overrides: Any) -> WorkerWiring:
    """A worker wired to a fake bucket and pull token; credentials are secret Outputs unless
    `outputs` is false (an Output made outside a mocked run is never awaited)."""
    secret = pulumi.Output.secret if outputs else str
    values: dict[str, Any] = {
        "image": IMAGE,
        "r2_endpoint": "https://acct.r2.cloudflarestorage.com",
        "r2_bucket": "comfyui-runpod-staging",
        "r2_prefix": "outputs/",
        "r2_access_key_id": secret("fake-r2-key-id"),
        "r2_secret_access_key": secret("fake-r2-secret"),
        "registry_username": "acme-bot",
        "registry_token": secret("fake-ghcr-pull-token"),
    }
    values.update(overrides)
    return WorkerWiring(**values)
