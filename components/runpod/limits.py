"""RunPod's limits and enumerations, each defined once.

Owns: every bound and allowed set of a RunPod value that more than one layer checks. The
stack config (`components/config.py`) checks them first, with the operator's message and
the `pulumi config set` fix; the providers' `check` (`components/runpod/checks.py`) checks
them again as the last line of defence before a request. Values RunPod's v2 spec states
are taken from `schema.py` (held against the spec by a conformance test); the others are
recorded here with where they come from.

Deliberately does not own: the project's own policy bounds on config values (a job
timeout of at most a day, at most 100 workers), which only the config reader checks.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from components.runpod import schema

__all__ = [
    "CONTAINER_DISK_GB",
    "ENDPOINT_TYPES",
    "EXECUTION_TIMEOUT_MS",
    "FLASHBOOT_MODES",
    "GPU_COUNT",
    "GPU_POOLS",
    "IDLE_TIMEOUT_S",
    "QUEUE_DELAY_MIN_S",
    "REQUEST_COUNT_MIN",
    "SCALER_TYPES",
    "TEMPLATE_CATEGORIES",
    "VOLUME_GB",
    "VOLUME_TYPES",
    "Bounds",
    "choices",
]


class Bounds(NamedTuple):
    """An inclusive integer range, `low..high`."""

    low: int
    high: int

    def __str__(self) -> str:
        return f"{self.low}..{self.high}"


def _bounds(spec: schema.Integer) -> Bounds:
    if spec.minimum is None or spec.maximum is None:
        raise ValueError(f"{spec!r} has no upper and lower bound")
    return Bounds(spec.minimum, spec.maximum)


def choices(allowed: tuple[str, ...] | frozenset[str]) -> str:
    """`A, B or C`: an allowed set as messages name it (a frozenset sorted)."""
    names = list(allowed) if isinstance(allowed, tuple) else sorted(allowed)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


GPU_POOLS: Final = frozenset(
    {
        "AMPERE_16",
        "AMPERE_24",
        "ADA_24",
        "ADA_32_PRO",
        "AMPERE_48",
        "ADA_48_PRO",
        "AMPERE_80",
        "ADA_80_PRO",
        "HOPPER_141",
        "BLACKWELL_96",
        "BLACKWELL_180",
    }
)
"""Serverless GPU pools (`gpu.pools`; `pool` in RunPod's GPU catalog). The spec types them
as plain strings; the set is RunPod's documented pools and the newer ones seen since
(shared/reference/runpod-api.md section 5)."""
GPU_COUNT: Final = Bounds(1, 8)
"""GPUs per serverless worker (`gpu.count`): the spec's floor, the project's cap."""
IDLE_TIMEOUT_S: Final = _bounds(schema.IDLE_TIMEOUT)
"""Seconds an idle worker stays up (`workers.idleTimeout`)."""
VOLUME_GB: Final = _bounds(schema.VOLUME_SIZE)
"""Network volume size in GB (`size`); a volume only grows."""
FLASHBOOT_MODES: Final = schema.enum_of(schema.FLASHBOOT)
"""`flashboot` of an endpoint."""
SCALER_TYPES: Final = tuple(
    schema.enum_of(variant.properties["type"])[0]
    for variant in schema.SCALING.variants
    if isinstance(variant, schema.Object)
)
"""`scaling.type`: `QUEUE_DELAY` (seconds waited) or `REQUEST_COUNT` (requests per worker)."""
QUEUE_DELAY_MIN_S: Final = schema.QUEUE_DELAY.minimum or 0.0
"""The shortest `scaling.queueDelay`, in seconds."""
REQUEST_COUNT_MIN: Final = schema.REQUEST_COUNT.minimum or 1
"""The smallest `scaling.requestCount`."""
CONTAINER_DISK_GB: Final = Bounds(schema.CONTAINER_DISK.minimum or 1, 4096)
"""Container disk of a worker or pod in GB (`disk`): the spec's floor, the project's cap."""
EXECUTION_TIMEOUT_MS: Final = Bounds(1_000, 24 * 3_600_000)
"""An endpoint's per-job `timeout` in ms: a second to a day (the spec gives no bounds)."""
ENDPOINT_TYPES: Final = schema.enum_of(schema.ENDPOINT_TYPE)
"""`type` of an endpoint (immutable: a change replaces it)."""
TEMPLATE_CATEGORIES: Final = schema.enum_of(schema.TEMPLATE_CATEGORY)
"""`category` of a template."""
VOLUME_TYPES: Final = schema.enum_of(schema.VOLUME_TYPE)
"""`type` (storage tier) of a network volume."""
