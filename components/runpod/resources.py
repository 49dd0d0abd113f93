"""Dynamic resources for RunPod objects, with keyword-only typed constructors.

Type tokens are `pulumi-python:dynamic/runpod:<Kind>`. Each constructor turns typed
Python arguments into the provider's property bag (see `providers.py` for semantics);
output-only attributes are declared in the bag as None so that they exist on the
resource. Credential values (secret values, registry passwords) are always wrapped in
`Output.secret`, so their inputs are encrypted in state; no output echoes them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
from pulumi.dynamic import Resource

from components.runpod.providers import (
    EndpointProvider,
    EndpointRolloutProvider,
    NetworkVolumeProvider,
    RegistryProvider,
    SecretProvider,
    TemplateProvider,
    release_fingerprint,
)

__all__ = [
    "Endpoint",
    "EndpointRollout",
    "NetworkVolume",
    "Registry",
    "Secret",
    "Template",
    "runpod_name_prefix",
]


def runpod_name_prefix(project: str, stack: str) -> str:
    """Prefix for account-unique RunPod names (secrets, registries, templates).

    `comfyui-runpod` + `staging` gives `comfyui_runpod_staging`. RunPod reserves names
    starting with `RUNPOD` (any case), so such a project name gets an `x_` in front.
    """
    prefix = re.sub(r"[^a-z0-9_]+", "_", f"{project}_{stack}".lower()).strip("_")
    if not prefix or prefix[0].isdigit() or prefix.startswith("runpod"):
        prefix = f"x_{prefix}"
    return prefix


def _props(inputs: Mapping[str, Any], *outputs: str) -> dict[str, Any]:
    """The provider's property bag: the inputs, then each output-only attribute as None so
    that it exists on the resource."""
    return {**inputs, **dict.fromkeys(outputs)}


def _container(
    image: pulumi.Input[str],
    args: str,
    container_disk_gb: int,
    ports: Sequence[str],
    *,
    env: Mapping[str, pulumi.Input[str]] | None,
    registry_id: pulumi.Input[str] | None,
) -> dict[str, Any]:
    """What templates and endpoints share (the providers' `CONTAINER_KEYS`)."""
    return {
        "image": image,
        "args": args,
        "container_disk_gb": container_disk_gb,
        "ports": list(ports),
        "env": dict(env or {}),
        "registry_id": registry_id,
    }


class Secret(Resource, module="runpod", name="Secret"):
    """A RunPod account secret; reference it from env as `{{ RUNPOD_SECRET_<name> }}`."""

    name: pulumi.Output[str]
    """Account-unique secret name (immutable: a new name replaces the secret)."""
    description: pulumi.Output[str]
    """Free-text description shown in the console."""
    secret_id: pulumi.Output[str]
    """RunPod's id of the secret."""
    value_hash: pulumi.Output[str]
    """Salted SHA-256 of the value: changes when the value rotates, reveals nothing."""
    value_last_updated_at: pulumi.Output[str]
    """When RunPod last stored a value (out-of-band rotation shows on refresh)."""

    def __init__(
        self,
        resource_name: str,
        *,
        name: pulumi.Input[str],
        value: pulumi.Input[str],
        description: pulumi.Input[str] = "",
        adopt_existing: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        inputs = {
            "name": name,
            "value": pulumi.Output.secret(value),
            "description": description,
            "adopt_existing": adopt_existing,
        }
        props = _props(inputs, "secret_id", "salt", "value_hash", "value_last_updated_at")
        super().__init__(SecretProvider(), resource_name, props, opts)


class Registry(Resource, module="runpod", name="Registry"):
    """A container registry credential (e.g. GHCR pull token); any change replaces it, the
    new credential created before the old one is deleted."""

    name: pulumi.Output[str]
    """Base name; the RunPod name adds a generation suffix (`registry_name`)."""
    registry_name: pulumi.Output[str]
    """The credential's RunPod name, `<name>-<8 hex>`, unique per generation."""
    username: pulumi.Output[str]
    """Registry user name (for GHCR: the GitHub user owning the token)."""
    password_hash: pulumi.Output[str]
    """Salted SHA-256 of the password: rotation shows as a diff, the password never does."""

    def __init__(
        self,
        resource_name: str,
        *,
        name: pulumi.Input[str],
        username: pulumi.Input[str],
        password: pulumi.Input[str],
        adopt_existing: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        inputs = {
            "name": name,
            "username": username,
            "password": pulumi.Output.secret(password),
            "adopt_existing": adopt_existing,
        }
        props = _props(inputs, "registry_name", "salt", "password_hash")
        super().__init__(RegistryProvider(), resource_name, props, opts)


class NetworkVolume(Resource, module="runpod", name="NetworkVolume"):
    """A network volume: grows in place, a new data center replaces it."""

    name: pulumi.Output[str]
    """Human-readable name (RunPod does not require it to be unique; keep it so)."""
    size_gb: pulumi.Output[int]
    """Size in GB, 10..4096; it can only grow."""
    data_center_id: pulumi.Output[str]
    """Data center, e.g. EU-RO-1; immutable."""
    volume_type: pulumi.Output[str | None]
    """Storage tier as declared (None: the data center's default)."""
    actual_volume_type: pulumi.Output[str]
    """Storage tier RunPod provisioned."""

    def __init__(
        self,
        resource_name: str,
        *,
        name: pulumi.Input[str],
        size_gb: int,
        data_center_id: str,
        volume_type: str | None = None,
        adopt_existing: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        inputs = {
            "name": name,
            "size_gb": size_gb,
            "data_center_id": data_center_id,
            "volume_type": volume_type,
            "adopt_existing": adopt_existing,
        }
        props = _props(inputs, "actual_volume_type")
        super().__init__(NetworkVolumeProvider(), resource_name, props, opts)


class Template(Resource, module="runpod", name="Template"):
    """A pod (or serverless) template: image, ports, env, disk, registry credential."""

    name: pulumi.Output[str]
    """Account-unique template name."""
    image: pulumi.Output[str]
    """Image reference pinned by digest."""
    env: pulumi.Output[dict[str, str]]
    """Environment (credentials only as RunPod secret references)."""
    ports: pulumi.Output[list[str]]
    """Exposed ports such as 8188/http."""
    registry_id: pulumi.Output[str | None]
    """Registry credential used to pull the image."""

    def __init__(
        self,
        resource_name: str,
        *,
        name: pulumi.Input[str],
        image: pulumi.Input[str],
        env: Mapping[str, pulumi.Input[str]] | None = None,
        ports: Sequence[str] = (),
        container_disk_gb: int = 20,
        args: str = "",
        registry_id: pulumi.Input[str] | None = None,
        serverless: bool = False,
        category: str = "NVIDIA",
        start_ssh: bool = True,
        start_jupyter: bool = True,
        allowed_cuda_versions: Sequence[str] = (),
        adopt_existing: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "name": name,
            **_container(image, args, container_disk_gb, ports, env=env, registry_id=registry_id),
            "serverless": serverless,
            "category": category,
            "start_ssh": start_ssh,
            "start_jupyter": start_jupyter,
            "allowed_cuda_versions": list(allowed_cuda_versions),
            "adopt_existing": adopt_existing,
        }
        super().__init__(TemplateProvider(), resource_name, props, opts)


class Endpoint(Resource, module="runpod", name="Endpoint"):
    """A serverless endpoint carrying its container config inline (v2 keeps no template
    link), plus GPU pools, worker bounds, scaling, FlashBoot and timeouts."""

    name: pulumi.Output[str]
    """Endpoint name (not unique on RunPod; keep it unique per account anyway)."""
    type: pulumi.Output[str]
    """QUEUE or LOAD_BALANCER; changing it replaces the endpoint."""
    image: pulumi.Output[str]
    """Image reference pinned by digest; a new digest starts a new release."""
    env: pulumi.Output[dict[str, str]]
    """Worker environment (credentials only as RunPod secret references)."""
    gpu: pulumi.Output[dict[str, Any]]
    """`{pools, count, ...}` as RunPod's API spells it."""
    workers: pulumi.Output[dict[str, int]]
    """`{min, max, idleTimeout}`."""
    scaling: pulumi.Output[dict[str, Any]]
    """`{type: QUEUE_DELAY, queueDelay}` or `{type: REQUEST_COUNT, requestCount}`."""
    registry_id: pulumi.Output[str | None]
    """Registry credential the workers pull the image with."""
    args: pulumi.Output[str]
    """Container arguments."""
    container_disk_gb: pulumi.Output[int]
    """Container disk per worker in GB."""
    ports: pulumi.Output[list[str]]
    """Exposed ports."""
    cpu: pulumi.Output[list[dict[str, Any]] | None]
    """CPU flavors of a CPU endpoint."""
    data_center_ids: pulumi.Output[list[str]]
    """Data centers workers may run in (a set: RunPod keeps its own order)."""
    network_volume_ids: pulumi.Output[list[str]]
    """Network volumes mounted at /runpod-volume."""
    created_at: pulumi.Output[str]
    """When RunPod created the endpoint."""

    def __init__(
        self,
        resource_name: str,
        *,
        name: pulumi.Input[str],
        image: pulumi.Input[str],
        gpu_pools: Sequence[str] = (),
        workers_min: int,
        workers_max: int,
        env: Mapping[str, pulumi.Input[str]] | None = None,
        endpoint_type: str = "QUEUE",
        gpu_count: int = 1,
        excluded_gpu_types: Sequence[str] = (),
        allowed_cuda_versions: Sequence[str] = (),
        min_cuda_version: str | None = None,
        cpu_flavors: Sequence[tuple[str, int]] = (),
        idle_timeout_s: int = 5,
        scaling_type: str = "QUEUE_DELAY",
        scaling_value: float = 4,
        container_disk_gb: int = 20,
        args: str = "",
        ports: Sequence[str] = (),
        registry_id: pulumi.Input[str] | None = None,
        data_center_ids: Sequence[str] = (),
        network_volume_ids: Sequence[pulumi.Input[str]] = (),
        timeout_ms: int = 300_000,
        flashboot: str = "OFF",
        adopt_existing: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        if bool(cpu_flavors) == bool(gpu_pools):
            raise ValueError(f"Endpoint {resource_name}: give gpu_pools or cpu_flavors (one)")
        gpu = _gpu_selection(
            gpu_pools, gpu_count, excluded_gpu_types, allowed_cuda_versions, min_cuda_version
        )
        cpu = [{"id": flavor, "vcpuCount": vcpus} for flavor, vcpus in cpu_flavors]
        workers, scaling = _workers_and_scaling(
            endpoint_type, (workers_min, workers_max, idle_timeout_s), scaling_type, scaling_value
        )
        inputs = {
            "name": name,
            "type": endpoint_type,
            **_container(image, args, container_disk_gb, ports, env=env, registry_id=registry_id),
            "gpu": None if cpu else gpu,
            "cpu": cpu or None,
            "workers": workers,
            "scaling": scaling,
            "data_center_ids": list(data_center_ids),
            "network_volume_ids": list(network_volume_ids),
            "timeout_ms": timeout_ms,
            "flashboot": flashboot,
            "adopt_existing": adopt_existing,
        }
        super().__init__(EndpointProvider(), resource_name, _props(inputs, "created_at"), opts)


def _gpu_selection(
    pools: Sequence[str],
    count: int,
    excluded_types: Sequence[str],
    allowed_cuda_versions: Sequence[str],
    min_cuda_version: str | None,
) -> dict[str, Any]:
    """`gpu` as RunPod spells it; the optional constraints only when set."""
    gpu: dict[str, Any] = {"pools": list(pools), "count": count}
    if excluded_types:
        gpu["excludedTypes"] = list(excluded_types)
    if allowed_cuda_versions:
        gpu["allowedCudaVersions"] = list(allowed_cuda_versions)
    if min_cuda_version:
        gpu["minCudaVersion"] = min_cuda_version
    return gpu


def _workers_and_scaling(
    endpoint_type: str,
    workers_bounds: tuple[int, int, int],
    scaling_type: str,
    scaling_value: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`workers` (from min, max and idle timeout) and `scaling`: the idle timeout goes with
    queue-delay scaling, and with request-count scaling only on a load-balancer endpoint
    (RunPod refuses it on a queue)."""
    workers_min, workers_max, idle_timeout_s = workers_bounds
    workers: dict[str, Any] = {"min": workers_min, "max": workers_max}
    if scaling_type == "REQUEST_COUNT":
        scaling: dict[str, Any] = {"type": scaling_type, "requestCount": int(scaling_value)}
        if endpoint_type != "QUEUE":
            workers["idleTimeout"] = idle_timeout_s
    else:
        scaling = {"type": scaling_type, "queueDelay": scaling_value}
        workers["idleTimeout"] = idle_timeout_s
    return workers, scaling


class EndpointRollout(Resource, module="runpod", name="EndpointRollout"):
    """Waits, during `pulumi up`, until an endpoint's newest release runs on every worker.

    Apart from the `Endpoint` so that a wait that times out fails only this resource: the
    endpoint stays in state with its id, and the next `up` waits again instead of creating
    a second endpoint. It waits again whenever the endpoint's release settings (image,
    env, registry, GPU/CPU, volumes, data centers) change.
    """

    endpoint_id: pulumi.Output[str]
    """The endpoint waited for."""
    release: pulumi.Output[str]
    """Digest of the endpoint's release settings this wait covered."""
    endpoint_version: pulumi.Output[int]
    """RunPod's configuration version of the endpoint once every worker ran it."""

    def __init__(
        self,
        resource_name: str,
        *,
        endpoint: Endpoint,
        timeout_s: int,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        settings = {
            "image": endpoint.image,
            "args": endpoint.args,
            "container_disk_gb": endpoint.container_disk_gb,
            "ports": endpoint.ports,
            "env": endpoint.env,
            "registry_id": endpoint.registry_id,
            "gpu": endpoint.gpu,
            "cpu": endpoint.cpu,
            "network_volume_ids": endpoint.network_volume_ids,
            "data_center_ids": endpoint.data_center_ids,
        }
        inputs = {
            "endpoint_id": endpoint.id,
            "release": pulumi.Output.all(**settings).apply(release_fingerprint),
            "timeout_s": timeout_s,
        }
        props = _props(inputs, "endpoint_version")
        super().__init__(EndpointRolloutProvider(), resource_name, props, opts)
