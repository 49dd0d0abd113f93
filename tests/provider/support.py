"""Shared builders for provider tests: configured providers and declared property bags."""

from __future__ import annotations

from typing import Any, TypeVar

from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config

from tests.fakes.runpod_api import DEFAULT_API_KEY

P = TypeVar("P")

IMAGE = "ghcr.io/acme/comfyui-worker@sha256:" + "a" * 64
IMAGE_2 = "ghcr.io/acme/comfyui-worker@sha256:" + "b" * 64


def configured(cls: type[P], api_key: str = DEFAULT_API_KEY) -> P:
    """A provider as the engine leaves it: unpickled, then configure()d with stack config."""
    provider = cls()
    provider.configure(  # type: ignore[attr-defined]
        ConfigureRequest(Config({"runpod:apiKey": api_key}, "comfyui-runpod"))
    )
    return provider


def as_wire(value: Any) -> Any:
    """What a value looks like after the gRPC round trip: every number a double."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {k: as_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_wire(v) for v in value]
    return value


def endpoint_inputs(**overrides: Any) -> dict[str, Any]:
    """Declared inputs of a typical ComfyUI endpoint, as resources.Endpoint builds them."""
    props: dict[str, Any] = {
        "name": "comfyui-runpod-staging-comfyui",
        "type": "QUEUE",
        "image": IMAGE,
        "args": "",
        "container_disk_gb": 40,
        "ports": [],
        "env": {
            "MODE": "serverless",
            "R2_BUCKET": "outputs",
            "R2_SECRET_ACCESS_KEY": "{{ RUNPOD_SECRET_comfyui_runpod_staging_r2_secret }}",
        },
        "gpu": {"pools": ["ADA_24", "AMPERE_24"], "count": 1},
        "workers": {"min": 0, "max": 3, "idleTimeout": 5},
        "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
        "data_center_ids": [],
        "network_volume_ids": [],
        "timeout_ms": 660_000,
        "flashboot": "FLASHBOOT",
        "adopt_existing": False,
    }
    props.update(overrides)
    return props


def secret_inputs(**overrides: Any) -> dict[str, Any]:
    """Declared inputs of a RunPod secret."""
    props: dict[str, Any] = {
        "name": "comfyui_runpod_staging_r2_secret",
        "value": "r2-secret-value-1",
        "description": "R2 secret of the staging workers",
        "adopt_existing": False,
    }
    props.update(overrides)
    return props


def template_inputs(**overrides: Any) -> dict[str, Any]:
    """Declared inputs of the video pod template."""
    props: dict[str, Any] = {
        "name": "comfyui-runpod-staging-video-pod",
        "image": IMAGE,
        "args": "",
        "container_disk_gb": 50,
        "ports": ["8188/http", "8888/http", "22/tcp"],
        "env": {"MODE": "pod", "ENABLE_R2_SYNC": "true"},
        "serverless": False,
        "category": "NVIDIA",
        "start_ssh": True,
        "start_jupyter": True,
        "allowed_cuda_versions": [],
        "adopt_existing": False,
    }
    props.update(overrides)
    return props


def volume_inputs(**overrides: object) -> dict[str, object]:
    """Declared inputs of a NetworkVolume, with overrides."""
    props: dict[str, object] = {
        "name": "video-workspace",
        "size_gb": 200,
        "data_center_id": "EU-RO-1",
        "adopt_existing": False,
    }
    props.update(overrides)
    return props
