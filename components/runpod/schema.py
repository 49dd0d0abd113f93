"""The project's own typed description of the RunPod REST v2 bodies the provider exchanges.

Owns: the request and response bodies of the management calls this project makes or its
emulator serves (templates, serverless endpoints with their releases and workers, network
volumes, registry credentials, pods, account secrets), written from RunPod's published v2
OpenAPI spec: every field with its type, enum, bounds and pattern, which fields are
required, and whether unknown fields are refused (request bodies: yes, RunPod answers 422).
`OPERATIONS` maps each call to its bodies, its success status and the error statuses the
spec documents.

It is data, not a copy of the spec: descriptions, examples and defaults are left out, and
`allOf` compositions are flattened into one object. `tests/provider/test_schema_conformance.py`
holds it against `../shared/reference/runpod-openapi-v2.json` whenever that file is
present. The account-secrets calls are newer than that spec snapshot; they are described
from RunPod's docs (`../shared/reference/runpod-api.md` section 2) and listed in
`NOT_IN_SPEC`.

Users: the emulator (`tests/fakes/runpod_api.py`) validates every request and response
against it (`to_json_schema`), and the providers take their enums and bounds from it, so
`check` refuses offline what RunPod would refuse. Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "NOT_IN_SPEC",
    "OPERATIONS",
    "SCHEMAS",
    "AnyJson",
    "Array",
    "Boolean",
    "Integer",
    "Number",
    "Object",
    "OneOf",
    "Operation",
    "Schema",
    "String",
    "StringMap",
    "When",
    "enum_of",
    "to_json_schema",
]

# -- the vocabulary ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class String:
    """A JSON string, optionally one of `enum`, matching `pattern`, within length bounds."""

    enum: tuple[str, ...] | None = None
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    nullable: bool = False


@dataclass(frozen=True, kw_only=True)
class Integer:
    """A JSON integer (RunPod refuses `300000.0` where an integer is due)."""

    minimum: int | None = None
    maximum: int | None = None
    nullable: bool = False


@dataclass(frozen=True, kw_only=True)
class Number:
    """A JSON number, integral or not."""

    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False


@dataclass(frozen=True, kw_only=True)
class Boolean:
    """true or false."""

    nullable: bool = False


@dataclass(frozen=True, kw_only=True)
class AnyJson:
    """Any JSON value (e.g. the old and new values of a release diff)."""


@dataclass(frozen=True, kw_only=True)
class Array:
    """A JSON array of `items`."""

    items: Schema
    min_items: int | None = None
    max_items: int | None = None
    unique_items: bool = False
    nullable: bool = False


@dataclass(frozen=True, kw_only=True)
class StringMap:
    """A JSON object used as a map from any key to `values` (e.g. `env`)."""

    values: Schema
    nullable: bool = False


@dataclass(frozen=True, kw_only=True)
class When:
    """While `field` equals `equals`, the listed properties take these narrower types."""

    field: str
    equals: str
    then: Mapping[str, Schema]


@dataclass(frozen=True, kw_only=True)
class Object:
    """A JSON object with named properties.

    `closed`: unknown properties are refused. `required_unless`: property -> another
    property whose presence waives the requirement (`image` unless `templateId`).
    `dependent_required`: a present property needs these others too.
    """

    properties: Mapping[str, Schema]
    required: frozenset[str] = frozenset()
    closed: bool = False
    min_properties: int | None = None
    required_unless: Mapping[str, str] = field(default_factory=dict)
    dependent_required: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    when: tuple[When, ...] = ()
    nullable: bool = False


@dataclass(frozen=True, kw_only=True)
class OneOf:
    """Exactly one of `variants` (a tagged union when `discriminator` names the tag)."""

    variants: tuple[Schema, ...]
    discriminator: str | None = None
    nullable: bool = False


Schema = String | Integer | Number | Boolean | AnyJson | Array | StringMap | Object | OneOf


def _obj(
    properties: Mapping[str, Schema],
    *,
    required: tuple[str, ...] = (),
    closed: bool = False,
    **options: Any,
) -> Object:
    return Object(
        properties=dict(properties), required=frozenset(required), closed=closed, **options
    )


def enum_of(schema: Schema) -> tuple[str, ...]:
    """The allowed values of an enum string."""
    if not isinstance(schema, String) or schema.enum is None:
        raise TypeError(f"{schema!r} is not an enum")
    return schema.enum


# -- shared pieces -----------------------------------------------------------------------

CUDA_VERSION_PATTERN: Final = r"^\d+\.\d+$"
"""`major.minor`, as the CUDA constraints of create and update bodies take them."""

SECRET_NAME_PATTERN: Final = r"^[a-zA-Z_][a-zA-Z0-9_.\-/]*$"  # noqa: S105 - a name pattern, not a credential
"""Secret names (RunPod's secrets docs); names starting with RUNPOD are reserved too."""
SECRET_NAME: Final = String(min_length=1, max_length=191, pattern=SECRET_NAME_PATTERN)
VOLUME_SIZE: Final = Integer(minimum=10, maximum=4096)
"""Network volume size in GB; RunPod refuses a smaller size on update (grow only)."""
IDLE_TIMEOUT: Final = Integer(minimum=1, maximum=3600)
CONTAINER_DISK: Final = Integer(minimum=1)

FLASHBOOT: Final = String(enum=("OFF", "FLASHBOOT", "PRIORITY_FLASHBOOT"))
ENDPOINT_TYPE: Final = String(enum=("QUEUE", "LOAD_BALANCER"))
TEMPLATE_CATEGORY: Final = String(enum=("CPU", "NVIDIA", "AMD"))
VOLUME_TYPE: Final = String(enum=("STANDARD", "HIGH_PERFORMANCE"))
POD_STATUS: Final = String(
    enum=("PROVISIONING", "STARTING", "RUNNING", "EXITED", "ERROR", "TERMINATED")
)
POD_ACTION: Final = String(enum=("start", "stop", "restart", "terminate"))
CLOUD: Final = String(enum=("SECURE", "COMMUNITY"))

_STRINGS: Final = Array(items=String())
_CUDA_VERSIONS: Final = Array(items=String(pattern=CUDA_VERSION_PATTERN))

# ContainerConfig: what templates, pods and endpoints share (every field optional).
_CONTAINER: Final[dict[str, Schema]] = {
    "args": String(),
    "disk": CONTAINER_DISK,
    "env": StringMap(values=String()),
    "image": String(),
    "ports": _STRINGS,
    "registry": String(nullable=True),
}

_CONTAINER_READ: Final = ("image", "args", "disk", "mounts", "ports", "env", "registry")
"""The container fields a template and a pod always read back."""

_PERSISTENT_MOUNT: Final = _obj(
    {"size": Integer(minimum=10), "path": String()}, required=("size", "path"), closed=True
)
_NETWORK_MOUNT: Final = _obj(
    {"volumeId": String(), "path": String()}, required=("volumeId", "path"), closed=True
)
_TEMPLATE_MOUNTS: Final = _obj({"persistent": _PERSISTENT_MOUNT}, closed=True)
_POD_MOUNTS: Final = _obj(
    {"persistent": _PERSISTENT_MOUNT, "network": Array(items=_NETWORK_MOUNT, max_items=1)},
    closed=True,
)

QUEUE_DELAY: Final = Number(minimum=0.5)
"""`scaling.queueDelay` in seconds."""
REQUEST_COUNT: Final = Integer(minimum=1)
"""`scaling.requestCount`: requests per worker."""
_QUEUE_DELAY_SCALING: Final = _obj(
    {"type": String(enum=("QUEUE_DELAY",)), "queueDelay": QUEUE_DELAY},
    required=("type", "queueDelay"),
    closed=True,
)
_REQUEST_COUNT_SCALING: Final = _obj(
    {"type": String(enum=("REQUEST_COUNT",)), "requestCount": REQUEST_COUNT},
    required=("type", "requestCount"),
    closed=True,
)
SCALING: Final = OneOf(
    variants=(_QUEUE_DELAY_SCALING, _REQUEST_COUNT_SCALING), discriminator="type"
)
"""`scaling`: one variant per scaler type, told apart by `type`."""
_WORKERS: Final[dict[str, Schema]] = {
    "min": Integer(minimum=0),
    "max": Integer(minimum=0),
    "idleTimeout": IDLE_TIMEOUT,
}

# BaseEndpointGpuConfig
_ENDPOINT_GPU_BASE: Final[dict[str, Schema]] = {
    "pools": Array(items=String(), min_items=1),
    "excludedTypes": Array(items=String(pattern=r"^\s*[^-\s]"), unique_items=True),
    "count": Integer(minimum=1),
}
_CREATE_CPU: Final = _obj(
    {"id": String(min_length=1), "vcpuCount": Integer(minimum=2)},
    required=("id", "vcpuCount"),
    closed=True,
)
_CPU: Final = _obj(
    {"id": String(min_length=1), "vcpuCount": Integer(minimum=2), "memory": Integer(minimum=1)},
    required=("id", "vcpuCount", "memory"),
)
_CPU_SELECTION: Final = Array(items=_CREATE_CPU, min_items=1, unique_items=True)

_REQUEST_URL: Final = String()
_QUEUE_URL_KEYS: Final = (
    "run",
    "runSync",
    "status",
    "stream",
    "cancel",
    "retry",
    "purgeQueue",
    "health",
)
_QUEUE_URLS: Final = _obj(
    dict.fromkeys(_QUEUE_URL_KEYS, _REQUEST_URL), required=_QUEUE_URL_KEYS, closed=True
)
_LOAD_BALANCER_URLS: Final = _obj(
    {"base": _REQUEST_URL, "health": _REQUEST_URL}, required=("base", "health"), closed=True
)

_GPU_CONFIG: Final[dict[str, Schema]] = {"id": String(), "count": Integer(minimum=1)}

_SSH_ENDPOINT: Final = _obj(
    {"host": String(), "port": Integer(), "username": String(), "command": String()},
    required=("host", "port", "username", "command"),
    nullable=True,
)
_UTILIZATION: Final = _obj({"util": Integer()})
_POD_RUNTIME: Final = _obj(
    {
        "uptime": Integer(),
        "gpus": Array(items=_obj({"util": Integer(), "memoryUtil": Integer()})),
        "cpu": _UTILIZATION,
        "memory": _UTILIZATION,
        "ports": Array(
            items=_obj(
                {
                    "private": Integer(),
                    "public": Integer(nullable=True),
                    "type": String(),
                    "ip": String(nullable=True),
                }
            )
        ),
    },
    nullable=True,
)

# -- the bodies --------------------------------------------------------------------------

SCHEMAS: Final[dict[str, Schema]] = {
    # templates
    "Template": _obj(
        {
            **_CONTAINER,
            "id": String(),
            "name": String(),
            "mounts": _TEMPLATE_MOUNTS,
            "serverless": Boolean(),
            "public": Boolean(),
            "category": TEMPLATE_CATEGORY,
            "startSsh": Boolean(),
            "startJupyter": Boolean(),
            "allowedCudaVersions": _STRINGS,
        },
        required=(
            "id",
            "name",
            *_CONTAINER_READ,
            "serverless",
            "public",
            "category",
            "startSsh",
            "startJupyter",
            "allowedCudaVersions",
        ),
    ),
    "CreateTemplateRequest": _obj(
        {
            **_CONTAINER,
            "name": String(min_length=1),
            "allowedCudaVersions": _CUDA_VERSIONS,
            "category": TEMPLATE_CATEGORY,
            "mounts": _TEMPLATE_MOUNTS,
            "public": Boolean(),
            "serverless": Boolean(),
            "startJupyter": Boolean(),
            "startSsh": Boolean(),
        },
        required=("name", "image"),
        closed=True,
    ),
    "UpdateTemplateRequest": _obj(
        {
            **_CONTAINER,
            "allowedCudaVersions": _CUDA_VERSIONS,
            "category": TEMPLATE_CATEGORY,
            "mounts": _TEMPLATE_MOUNTS,
            "name": String(min_length=1),
            "public": Boolean(),
            "serverless": Boolean(),
            "startJupyter": Boolean(),
            "startSsh": Boolean(),
        },
        closed=True,
    ),
    # serverless endpoints
    "Endpoint": _obj(
        {
            **_CONTAINER,
            "id": String(),
            "name": String(),
            "type": ENDPOINT_TYPE,
            "requestUrls": OneOf(variants=(_QUEUE_URLS, _LOAD_BALANCER_URLS)),
            "gpu": _obj(
                {
                    **_ENDPOINT_GPU_BASE,
                    "allowedCudaVersions": _STRINGS,
                    "minCudaVersion": String(nullable=True),
                },
                required=("pools", "allowedCudaVersions", "minCudaVersion"),
                nullable=True,
            ),
            "cpu": Array(items=_CPU, min_items=1),
            "workers": _obj(_WORKERS, required=("min", "max"), closed=True),
            "scaling": SCALING,
            "dataCenterIds": _STRINGS,
            "networkVolumes": _STRINGS,
            "timeout": Integer(),
            "flashboot": FLASHBOOT,
            "createdAt": String(),
        },
        required=(
            "id",
            "name",
            "workers",
            "scaling",
            "dataCenterIds",
            "networkVolumes",
            "timeout",
            "flashboot",
            "createdAt",
        ),
    ),
    "CreateEndpointRequest": _obj(
        {
            **_CONTAINER,
            "gpu": _obj(
                {
                    **_ENDPOINT_GPU_BASE,
                    "allowedCudaVersions": _CUDA_VERSIONS,
                    "minCudaVersion": String(pattern=CUDA_VERSION_PATTERN),
                },
                required=("pools",),
                closed=True,
            ),
            "name": String(min_length=1),
            "scaling": SCALING,
            "type": ENDPOINT_TYPE,
            "cpu": _CPU_SELECTION,
            "dataCenterIds": _STRINGS,
            "flashboot": FLASHBOOT,
            "networkVolumes": _STRINGS,
            "templateId": String(min_length=1),
            "timeout": Integer(),
            "workers": _obj(_WORKERS, closed=True),
        },
        required=("name", "type", "scaling"),
        closed=True,
        required_unless={"image": "templateId"},
        when=(
            When(field="type", equals="LOAD_BALANCER", then={"scaling": _REQUEST_COUNT_SCALING}),
        ),
    ),
    "UpdateEndpointRequest": _obj(
        {
            **_CONTAINER,
            "cpu": _CPU_SELECTION,
            "dataCenterIds": _STRINGS,
            "flashboot": FLASHBOOT,
            "gpu": _obj(
                {
                    **_ENDPOINT_GPU_BASE,
                    "allowedCudaVersions": _CUDA_VERSIONS,
                    "minCudaVersion": String(pattern=r"^$|^\d+\.\d+$"),
                },
                closed=True,
                dependent_required={"excludedTypes": ("pools",)},
            ),
            "name": String(min_length=1),
            "networkVolumes": _STRINGS,
            "scaling": SCALING,
            "templateId": String(),
            "timeout": Integer(),
            "workers": _obj(_WORKERS, closed=True),
        },
        closed=True,
    ),
    "ListEndpointReleasesResponse": _obj(
        {
            "endpointVersion": Integer(nullable=True),
            "rollout": _obj(
                {
                    "inProgress": Boolean(),
                    "workersOnLatest": Integer(minimum=0),
                    "workersTotal": Integer(minimum=0),
                    "percentOnLatest": Integer(minimum=0, maximum=100),
                },
                required=("inProgress", "workersOnLatest", "workersTotal", "percentOnLatest"),
            ),
            "releases": Array(
                items=_obj(
                    {
                        "id": String(),
                        "version": Integer(nullable=True),
                        "source": String(enum=("GIT_BUILD", "MANUAL")),
                        "buildId": String(nullable=True),
                        "createdByUserId": String(nullable=True),
                        "workerCount": Integer(minimum=0),
                        "createdAt": String(),
                        "diff": Array(
                            items=_obj(
                                {"field": String(), "old": AnyJson(), "new": AnyJson()},
                                required=("field", "old", "new"),
                            )
                        ),
                    },
                    required=("id", "source", "createdAt", "workerCount", "diff"),
                )
            ),
        },
        required=("rollout", "releases"),
    ),
    "ListEndpointWorkersResponse": _obj(
        {
            "workers": Array(
                items=_obj(
                    {
                        "id": String(),
                        "status": String(
                            enum=("RUNNING", "IDLE", "INITIALIZING", "THROTTLED", "UNHEALTHY")
                        ),
                        "isStale": Boolean(),
                        "version": Integer(nullable=True),
                        "gpuCount": Integer(minimum=0),
                        "image": String(nullable=True),
                        "uptimeSeconds": Integer(minimum=0, nullable=True),
                        "gpuTypeId": String(nullable=True),
                        "dataCenterId": String(nullable=True),
                        "startedAt": String(nullable=True),
                    },
                    required=("id", "status", "gpuCount", "isStale"),
                )
            ),
            "summary": _obj(
                {
                    key: Integer(minimum=0)
                    for key in (
                        "running",
                        "idle",
                        "initializing",
                        "throttled",
                        "unhealthy",
                        "total",
                    )
                },
                required=("running", "idle", "initializing", "throttled", "unhealthy", "total"),
            ),
            "endpointVersion": Integer(nullable=True),
        },
        required=("workers", "summary"),
    ),
    # network volumes
    "NetworkVolume": _obj(
        {
            "id": String(),
            "name": String(),
            "size": VOLUME_SIZE,
            "dataCenter": String(),
            "type": VOLUME_TYPE,
        },
        required=("id", "name", "size", "dataCenter", "type"),
    ),
    "CreateNetworkVolumeRequest": _obj(
        {
            "dataCenter": String(min_length=1),
            "name": String(min_length=1),
            "size": VOLUME_SIZE,
            "type": VOLUME_TYPE,
        },
        required=("name", "size", "dataCenter"),
        closed=True,
    ),
    "UpdateNetworkVolumeRequest": _obj(
        {"name": String(min_length=1), "size": VOLUME_SIZE},
        closed=True,
        min_properties=1,
    ),
    # registry credentials
    "Registry": _obj({"id": String(), "name": String()}, required=("id", "name")),
    "CreateRegistryRequest": _obj(
        {
            "name": String(min_length=1),
            "password": String(min_length=1),
            "username": String(min_length=1),
        },
        required=("name", "username", "password"),
        closed=True,
    ),
    # pods (started by people from the video pod template; the emulator needs them to
    # reproduce "credential in use by a pod" and "secrets resolve at boot")
    "Pod": _obj(
        {
            **_CONTAINER,
            "id": String(),
            "name": String(),
            "status": POD_STATUS,
            "actions": Array(items=POD_ACTION),
            "mounts": _POD_MOUNTS,
            "gpu": _obj(_GPU_CONFIG, required=("id",)),
            "cpu": _CPU,
            "cloud": CLOUD,
            "dataCenterId": String(nullable=True),
            "cudaVersion": String(nullable=True),
            "ssh": _obj(
                {"proxy": _SSH_ENDPOINT, "direct": _SSH_ENDPOINT}, required=("proxy", "direct")
            ),
            "cluster": _obj(
                {
                    "id": String(),
                    "rank": Integer(nullable=True),
                    "role": String(
                        enum=("SLURM_CONTROLLER", "SLURM_COMPUTE", "RAY_HEAD", "RAY_WORKER")
                    ),
                    "ip": String(),
                },
                required=("id", "rank"),
                closed=True,
            ),
            "template": String(nullable=True),
            "cost": Number(),
            "locked": Boolean(),
            "globalNetworking": _obj(
                {"enabled": Boolean(), "ip": String(), "internalDns": String()},
                required=("enabled",),
            ),
            "runtime": _POD_RUNTIME,
            "createdAt": String(),
            "startedAt": String(nullable=True),
        },
        required=(
            "id",
            "name",
            "status",
            "actions",
            *_CONTAINER_READ,
            "cloud",
            "dataCenterId",
            "cudaVersion",
            "ssh",
            "template",
            "cost",
            "locked",
            "runtime",
            "createdAt",
            "startedAt",
            "globalNetworking",
        ),
    ),
    "CreatePodRequest": _obj(
        {
            **_CONTAINER,
            "name": String(min_length=1),
            "cloud": CLOUD,
            "cpu": _CREATE_CPU,
            "dataCenterIds": _STRINGS,
            "globalNetworking": Boolean(),
            "gpu": _obj(
                {
                    **_GPU_CONFIG,
                    "allowedCudaVersions": _CUDA_VERSIONS,
                    "minCudaVersion": String(pattern=CUDA_VERSION_PATTERN),
                },
                required=("id",),
                closed=True,
            ),
            "mounts": _POD_MOUNTS,
            "startJupyter": Boolean(),
            "startSsh": Boolean(),
            "templateId": String(min_length=1),
        },
        required=("name",),
        closed=True,
        required_unless={"image": "templateId"},
    ),
    "PodActionRequest": _obj({"action": POD_ACTION}, required=("action",), closed=True),
    # errors
    "ErrorResponse": _obj(
        {"title": String(), "status": Integer(), "detail": String(), "errors": _STRINGS},
        required=("title", "status", "detail"),
    ),
    # account secrets: newer than the spec snapshot (see NOT_IN_SPEC)
    "Secret": _obj(
        {
            "id": String(),
            "name": String(),
            "description": String(),
            "createdAt": String(),
            "valueLastUpdatedAt": String(),
        },
        required=("id", "name", "description", "createdAt", "valueLastUpdatedAt"),
    ),
    "CreateSecretRequest": _obj(
        {
            "name": SECRET_NAME,
            "value": String(min_length=1),
            "description": String(),
        },
        required=("name", "value"),
        closed=True,
    ),
    "UpdateSecretRequest": _obj(
        {"value": String(min_length=1), "description": String()}, closed=True, min_properties=1
    ),
}

for _kind, _key, _item in (
    ("Templates", "templates", "Template"),
    ("Endpoints", "endpoints", "Endpoint"),
    ("NetworkVolumes", "networkVolumes", "NetworkVolume"),
    ("Registries", "registries", "Registry"),
    ("Pods", "pods", "Pod"),
    ("Secrets", "secrets", "Secret"),
):
    SCHEMAS[f"List{_kind}Response"] = _obj({_key: Array(items=SCHEMAS[_item])}, required=(_key,))

NOT_IN_SPEC: Final = frozenset(
    {"Secret", "CreateSecretRequest", "UpdateSecretRequest", "ListSecretsResponse"}
)
"""Described from RunPod's secrets docs: the spec snapshot predates these calls."""


# -- the calls ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Operation:
    """One management call: its bodies (schema names), success status, documented refusals."""

    success: int
    also_success: frozenset[int] = frozenset()
    """Other success statuses (a pod's `terminate` action answers 204 without a body)."""
    request: str | None = None
    response: str | None = None
    errors: frozenset[int] = frozenset()
    """Error statuses the spec documents for this call (401/403/429 apply to all)."""


def _op(
    success: int, request: str | None = None, response: str | None = None, *errors: int
) -> Operation:
    return Operation(success=success, request=request, response=response, errors=frozenset(errors))


OPERATIONS: Final[dict[tuple[str, str], Operation]] = {
    ("GET", "/v2/templates"): _op(200, None, "ListTemplatesResponse"),
    ("POST", "/v2/templates"): _op(201, "CreateTemplateRequest", "Template", 400, 422),
    ("GET", "/v2/templates/{id}"): _op(200, None, "Template", 404),
    ("PATCH", "/v2/templates/{id}"): _op(200, "UpdateTemplateRequest", "Template", 400, 404, 422),
    ("DELETE", "/v2/templates/{id}"): _op(204, None, None, 400, 404),
    ("GET", "/v2/serverless"): _op(200, None, "ListEndpointsResponse"),
    ("POST", "/v2/serverless"): _op(201, "CreateEndpointRequest", "Endpoint", 400, 404, 422),
    ("GET", "/v2/serverless/{id}"): _op(200, None, "Endpoint", 404),
    ("PATCH", "/v2/serverless/{id}"): _op(200, "UpdateEndpointRequest", "Endpoint", 400, 404, 422),
    ("DELETE", "/v2/serverless/{id}"): _op(204, None, None, 404),
    ("GET", "/v2/serverless/{id}/releases"): _op(200, None, "ListEndpointReleasesResponse", 404),
    ("GET", "/v2/serverless/{id}/workers"): _op(200, None, "ListEndpointWorkersResponse", 404),
    ("GET", "/v2/network-volumes"): _op(200, None, "ListNetworkVolumesResponse"),
    ("POST", "/v2/network-volumes"): _op(
        201, "CreateNetworkVolumeRequest", "NetworkVolume", 400, 422
    ),
    ("GET", "/v2/network-volumes/{id}"): _op(200, None, "NetworkVolume", 404),
    ("PATCH", "/v2/network-volumes/{id}"): _op(
        200, "UpdateNetworkVolumeRequest", "NetworkVolume", 400, 404, 422
    ),
    ("DELETE", "/v2/network-volumes/{id}"): _op(204, None, None, 404),
    ("GET", "/v2/registries"): _op(200, None, "ListRegistriesResponse"),
    ("POST", "/v2/registries"): _op(201, "CreateRegistryRequest", "Registry", 400, 422),
    ("GET", "/v2/registries/{id}"): _op(200, None, "Registry", 404),
    ("DELETE", "/v2/registries/{id}"): _op(204, None, None, 400, 404),
    ("GET", "/v2/pods"): _op(200, None, "ListPodsResponse"),
    ("POST", "/v2/pods"): _op(201, "CreatePodRequest", "Pod", 400, 404, 422),
    ("GET", "/v2/pods/{id}"): _op(200, None, "Pod", 404),
    ("DELETE", "/v2/pods/{id}"): _op(204, None, None, 404, 409),
    ("POST", "/v2/pods/{id}/action"): dataclasses.replace(
        _op(200, "PodActionRequest", "Pod", 400, 404, 409, 422), also_success=frozenset({204})
    ),
    # from the secrets docs (NOT_IN_SPEC): 409 for a taken name, values never returned
    ("GET", "/v2/account/secrets"): _op(200, None, "ListSecretsResponse"),
    ("POST", "/v2/account/secrets"): _op(201, "CreateSecretRequest", "Secret", 409, 422),
    ("GET", "/v2/account/secrets/{id}"): _op(200, None, "Secret", 404),
    ("PATCH", "/v2/account/secrets/{id}"): _op(200, "UpdateSecretRequest", "Secret", 404, 422),
    ("DELETE", "/v2/account/secrets/{id}"): _op(204, None, None, 404),
}
"""(method, path template) -> the call. Paths under `/v2/account/secrets` are NOT_IN_SPEC."""


# -- as JSON Schema ----------------------------------------------------------------------


def _typed(name: str, nullable: bool, **keywords: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": [name, "null"] if nullable else name}
    out.update({key: value for key, value in keywords.items() if value is not None})
    return out


def _string_schema(schema: String) -> dict[str, Any]:
    enum = None if schema.enum is None else [*schema.enum, *([None] if schema.nullable else [])]
    return _typed(
        "string",
        schema.nullable,
        enum=enum,
        pattern=schema.pattern,
        minLength=schema.min_length,
        maxLength=schema.max_length,
    )


def _number_schema(schema: Integer | Number) -> dict[str, Any]:
    kind = "integer" if isinstance(schema, Integer) else "number"
    return _typed(kind, schema.nullable, minimum=schema.minimum, maximum=schema.maximum)


def _array_schema(schema: Array) -> dict[str, Any]:
    return _typed(
        "array",
        schema.nullable,
        items=to_json_schema(schema.items),
        minItems=schema.min_items,
        maxItems=schema.max_items,
        uniqueItems=True if schema.unique_items else None,
    )


def _one_of_schema(schema: OneOf) -> dict[str, Any]:
    variants = [to_json_schema(v) for v in schema.variants]
    return {"oneOf": [*variants, {"type": "null"}] if schema.nullable else variants}


def _object_schema(schema: Object) -> dict[str, Any]:
    rules: list[dict[str, Any]] = [
        {"if": {"not": {"required": [waiver]}}, "then": {"required": [name]}}
        for name, waiver in schema.required_unless.items()
    ]
    rules += [
        {
            "if": {"required": [rule.field], "properties": {rule.field: {"const": rule.equals}}},
            "then": {"properties": {k: to_json_schema(v) for k, v in rule.then.items()}},
        }
        for rule in schema.when
    ]
    return _typed(
        "object",
        schema.nullable,
        properties={name: to_json_schema(sub) for name, sub in schema.properties.items()},
        required=sorted(schema.required) or None,
        additionalProperties=False if schema.closed else None,
        minProperties=schema.min_properties,
        dependentRequired={k: list(v) for k, v in schema.dependent_required.items()} or None,
        allOf=rules or None,
    )


def to_json_schema(schema: Schema) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12 keywords) that accepts exactly what `schema` describes."""
    return _CONVERTERS[type(schema)](schema)


_CONVERTERS: Final[dict[type, Callable[[Any], dict[str, Any]]]] = {
    AnyJson: lambda _schema: {},
    String: _string_schema,
    Integer: _number_schema,
    Number: _number_schema,
    Boolean: lambda schema: _typed("boolean", schema.nullable),
    Array: _array_schema,
    StringMap: lambda schema: _typed(
        "object", schema.nullable, additionalProperties=to_json_schema(schema.values)
    ),
    OneOf: _one_of_schema,
    Object: _object_schema,
}
