"""Offline validation of the RunPod providers' property bags: what each provider's `check` runs.

Owns: one function per kind (`secret`, `registry`, `network_volume`, `template`, `endpoint`,
`endpoint_rollout`) that returns one `CheckFailure` per bad property, never touching the
network; the patterns a value must match (a digest-pinned image, an env key, a port, a
secret name and a secret reference); and the two value helpers the providers share with
them: `is_unknown` (a value not known yet in preview, which every check skips) and `plain`
(a value as JSON, after the gRPC round trip turned every number into a double). Bounds and
allowed sets come from `limits.py`, the one definition the stack config uses too.

Deliberately does not own: the providers (`providers.py`, whose classes state pickles by
reference), what a diff or a write does, or the stack config's operator-facing messages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from pulumi.dynamic import CheckFailure
from pulumi.output import Unknown

from components.runpod import limits, schema

__all__ = [
    "CUDA_VERSION",
    "DIGEST_PINNED",
    "ENV_KEY",
    "PORT",
    "SECRET_LOOKING_KEY",
    "SECRET_NAME",
    "SECRET_REFERENCE",
    "UNKNOWN",
    "Failures",
    "endpoint",
    "endpoint_rollout",
    "is_secret_reference",
    "is_unknown",
    "network_volume",
    "plain",
    "registry",
    "secret",
    "secret_reference",
    "template",
]

UNKNOWN: Final = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
"""`pulumi.runtime.rpc.UNKNOWN`, the wire form of a value not known yet."""

SECRET_NAME: Final = re.compile(schema.SECRET_NAME_PATTERN)
SECRET_REFERENCE: Final = re.compile(r"^\{\{\s*RUNPOD_SECRET_([a-zA-Z_][a-zA-Z0-9_.\-/]*)\s*\}\}$")
ENV_KEY: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_LOOKING_KEY: Final = re.compile(
    r"(SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL)", re.IGNORECASE
)
PORT: Final = re.compile(r"^\d{1,5}/(http|tcp|udp)$")
DIGEST_PINNED: Final = re.compile(r"^[a-z0-9.\-]+(:\d+)?/[^@\s]+@sha256:[0-9a-f]{64}$")
CUDA_VERSION: Final = re.compile(schema.CUDA_VERSION_PATTERN)


def secret_reference(name: str) -> str:
    """The env value RunPod replaces with the secret `name` when a worker or pod boots."""
    return "{{ RUNPOD_SECRET_" + name + " }}"


def is_secret_reference(value: str) -> bool:
    """True if `value` is exactly one `{{ RUNPOD_SECRET_<name> }}` reference."""
    return bool(SECRET_REFERENCE.match(value))


def is_unknown(value: Any) -> bool:
    """Whether `value` (or anything inside it) is not known yet (a preview)."""
    # Check and Diff deserialize with keep_unknowns, so an unknown arrives as a
    # `pulumi.output.Unknown` instance; other paths may still see the wire string.
    if isinstance(value, Unknown):
        return True
    if isinstance(value, str):
        return value == UNKNOWN
    if isinstance(value, Mapping):
        return any(is_unknown(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(is_unknown(v) for v in value)
    return False


def plain(value: Any) -> Any:
    """JSON-shaped copy with integral floats back to ints (gRPC carries numbers as doubles;
    RunPod's Go handlers reject `300000.0` for an integer) and None members dropped."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


class Failures:
    """The `CheckFailure`s of one property bag, with the tests every kind shares."""

    def __init__(self) -> None:
        self.items: list[CheckFailure] = []

    def add(self, prop: str, reason: str) -> None:
        self.items.append(CheckFailure(prop, reason))

    def require_str(
        self,
        news: Mapping[str, Any],
        key: str,
        *,
        pattern: re.Pattern[str] | None = None,
        hint: str = "",
    ) -> None:
        value = news.get(key)
        if is_unknown(value):
            return
        if not isinstance(value, str) or not value:
            self.add(key, f"{key} is required and must be a non-empty string")
        elif pattern is not None and not pattern.match(value):
            self.add(key, f"{key} {value!r} is invalid{': ' + hint if hint else ''}")

    def int_range(self, value: Any, prop: str, low: int, high: int | None = None) -> None:
        """An integer `low..high` (no upper bound when `high` is None); None passes."""
        if value is None or is_unknown(value):
            return
        number = plain(value)
        if isinstance(number, bool) or not isinstance(number, int):
            self.add(prop, f"{prop} must be an integer, got {value!r}")
        elif number < low or (high is not None and number > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            self.add(prop, f"{prop} must be {bound}, got {number}")

    def one_of(
        self,
        value: Any,
        prop: str,
        allowed: tuple[str, ...] | frozenset[str],
        *,
        label: str | None = None,
        required: bool = False,
    ) -> None:
        """A value from `allowed`; an unknown value passes, and None unless `required`.
        `label` names the value in the message when it is not `prop` itself (one entry of
        a list)."""
        if (value is None and not required) or is_unknown(value) or value in allowed:
            return
        self.add(
            prop,
            f"{label or prop} {value!r} is unknown: must be {limits.choices(allowed)}",
        )


# -- per kind ---------------------------------------------------------------------------


def secret(news: Mapping[str, Any]) -> list[CheckFailure]:
    """An account secret: a valid, unreserved name, a non-empty value."""
    failures = Failures()
    failures.require_str(
        news, "name", pattern=SECRET_NAME, hint=f"must match {SECRET_NAME.pattern}"
    )
    name = news.get("name")
    if isinstance(name, str) and not is_unknown(name):
        longest = schema.SECRET_NAME.max_length or 0
        if len(name) > longest:
            failures.add(
                "name", f"secret name must be at most {longest} characters, got {len(name)}"
            )
        if name.upper().startswith("RUNPOD"):
            failures.add("name", f"secret name {name!r} must not start with RUNPOD (reserved)")
    value = news.get("value")
    if not is_unknown(value) and (not isinstance(value, str) or not value):
        failures.add("value", "value is required and must be a non-empty string")
    description = news.get("description")
    if description is not None and not is_unknown(description) and not isinstance(description, str):
        failures.add("description", "description must be a string")
    return failures.items


def registry(news: Mapping[str, Any]) -> list[CheckFailure]:
    """A registry credential: name, user and password, all non-empty."""
    failures = Failures()
    for key in ("name", "username", "password"):
        failures.require_str(news, key)
    return failures.items


def network_volume(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[CheckFailure]:
    """A network volume: name, data center, a size in bounds that never shrinks in place."""
    failures = Failures()
    failures.require_str(news, "name")
    failures.require_str(news, "data_center_id")
    failures.int_range(news.get("size_gb"), "size_gb", *limits.VOLUME_GB)
    failures.one_of(news.get("volume_type"), "volume_type", limits.VOLUME_TYPES)
    old_size, new_size = olds.get("size_gb"), news.get("size_gb")
    if (
        isinstance(old_size, int | float)
        and isinstance(new_size, int | float)
        and new_size < old_size
        and olds.get("data_center_id") == news.get("data_center_id")
    ):
        failures.add(
            "size_gb",
            f"network volumes only grow: size_gb {int(new_size)} < current {int(old_size)}; "
            "keep the size, or move to a new volume by changing data_center_id",
        )
    return failures.items


def template(news: Mapping[str, Any]) -> list[CheckFailure]:
    """A template: name, the container config, its category and CUDA versions."""
    failures = Failures()
    failures.require_str(news, "name")
    _container(failures, news)
    failures.one_of(news.get("category"), "category", limits.TEMPLATE_CATEGORIES)
    for version in news.get("allowed_cuda_versions") or ():
        if not is_unknown(version) and not CUDA_VERSION.match(str(version)):
            failures.add("allowed_cuda_versions", f"CUDA version {version!r} must look like 12.8")
    return failures.items


def endpoint(news: Mapping[str, Any]) -> list[CheckFailure]:
    """A serverless endpoint: name, type, the container config, compute, scaling, timeouts."""
    failures = Failures()
    failures.require_str(news, "name")
    failures.one_of(news.get("type"), "type", limits.ENDPOINT_TYPES, required=True)
    _container(failures, news)
    _compute(failures, news.get("gpu"), news.get("cpu"))
    _workers(failures, news)
    _scaling(failures, news)
    failures.int_range(news.get("timeout_ms"), "timeout_ms", *limits.EXECUTION_TIMEOUT_MS)
    failures.one_of(news.get("flashboot"), "flashboot", limits.FLASHBOOT_MODES)
    return failures.items


def endpoint_rollout(news: Mapping[str, Any]) -> list[CheckFailure]:
    """The wait for a release: an endpoint id and a bound of at most two hours."""
    failures = Failures()
    failures.require_str(news, "endpoint_id")
    failures.int_range(news.get("timeout_s"), "timeout_s", 1, 7_200)
    return failures.items


# -- shared pieces ----------------------------------------------------------------------


def _container(failures: Failures, news: Mapping[str, Any]) -> None:
    """What templates and endpoints share: a pinned image, disk, ports, env."""
    failures.require_str(
        news,
        "image",
        pattern=DIGEST_PINNED,
        hint="use a fully qualified reference pinned by digest, "
        "e.g. ghcr.io/<owner>/<image>@sha256:<64 hex>",
    )
    failures.int_range(
        news.get("container_disk_gb"), "container_disk_gb", *limits.CONTAINER_DISK_GB
    )
    ports = news.get("ports")
    if ports is not None and not is_unknown(ports):
        for port in ports:
            if not isinstance(port, str) or not PORT.match(port):
                failures.add("ports", f"port {port!r} must look like 8188/http or 22/tcp")
    _env(failures, news.get("env"))


def _env(failures: Failures, env: Any) -> None:
    """Valid names and string values; a credential-looking key holds only a reference."""
    if env is None or (is_unknown(env) and not isinstance(env, Mapping)):
        return
    if not isinstance(env, Mapping):
        failures.add("env", "env must be a mapping of names to strings")
        return
    for key, value in env.items():
        if not ENV_KEY.match(str(key)):
            failures.add("env", f"env key {key!r} is not a valid variable name")
        if is_unknown(value):
            continue
        if not isinstance(value, str):
            failures.add("env", f"env {key} must be a string, got {type(value).__name__}")
        elif SECRET_LOOKING_KEY.search(str(key)) and not is_secret_reference(value):
            failures.add(
                "env",
                f"env {key} looks like a credential: set it to a RunPod secret reference "
                f"such as {secret_reference(str(key).lower())!r}, never a literal value",
            )


def _compute(failures: Failures, gpu: Any, cpu: Any) -> None:
    """Exactly one of gpu and cpu, each well formed."""
    if (gpu is None) == (cpu is None):
        failures.add("gpu", "set exactly one of gpu or cpu")
    elif gpu is None:
        _cpu(failures, cpu)
    elif not is_unknown(gpu) or isinstance(gpu, Mapping):
        _gpu(failures, gpu)


def _gpu(failures: Failures, gpu: Mapping[str, Any]) -> None:
    pools = gpu.get("pools")
    if not is_unknown(pools):
        if not pools:
            failures.add("gpu", "gpu.pools needs at least one pool, e.g. ['ADA_24']")
        for pool in pools or ():
            failures.one_of(pool, "gpu", limits.GPU_POOLS, label="gpu pool", required=True)
    failures.int_range(gpu.get("count"), "gpu.count", *limits.GPU_COUNT)
    allowed, minimum = gpu.get("allowedCudaVersions"), gpu.get("minCudaVersion")
    if allowed and minimum:
        failures.add("gpu", "gpu.allowedCudaVersions and gpu.minCudaVersion are mutually exclusive")
    for version in [*(allowed or ()), *([minimum] if minimum else [])]:
        if not is_unknown(version) and not CUDA_VERSION.match(str(version)):
            failures.add("gpu", f"CUDA version {version!r} must look like 12.8 (major.minor)")


def _cpu(failures: Failures, cpu: Any) -> None:
    if is_unknown(cpu) and not isinstance(cpu, list | tuple):
        return
    if not isinstance(cpu, list | tuple) or not cpu:
        failures.add("cpu", "cpu needs at least one {id, vcpuCount} flavor, e.g. cpu5c x 4")
        return
    for flavor in cpu:
        if not isinstance(flavor, Mapping) or not flavor.get("id"):
            failures.add("cpu", f"cpu flavor {flavor!r} needs an id such as 'cpu5c'")
            continue
        count = plain(flavor.get("vcpuCount"))
        if not is_unknown(count) and (
            not isinstance(count, int) or count < 2 or count & (count - 1)
        ):
            failures.add("cpu", f"cpu vcpuCount must be a power of two >= 2, got {count!r}")


def _workers(failures: Failures, news: Mapping[str, Any]) -> None:
    workers = news.get("workers")
    if not isinstance(workers, Mapping):
        return
    failures.int_range(workers.get("min"), "workers.min", 0)
    failures.int_range(workers.get("max"), "workers.max", 0)
    failures.int_range(workers.get("idleTimeout"), "workers.idleTimeout", *limits.IDLE_TIMEOUT_S)
    low, high = workers.get("min"), workers.get("max")
    if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
        failures.add(
            "workers", f"workers.min ({int(low)}) must not exceed workers.max ({int(high)})"
        )


def _scaling(failures: Failures, news: Mapping[str, Any]) -> None:
    """One variant of `scaling`, with only its own fields, fitting the endpoint type."""
    scaling = news.get("scaling")
    if scaling is None:
        failures.add(
            "scaling",
            "scaling is required: {type: QUEUE_DELAY, queueDelay} or "
            "{type: REQUEST_COUNT, requestCount}",
        )
        return
    if is_unknown(scaling) and not isinstance(scaling, Mapping):
        return
    kind = scaling.get("type")
    if kind == "QUEUE_DELAY":
        delay, least = scaling.get("queueDelay"), limits.QUEUE_DELAY_MIN_S
        if not is_unknown(delay) and (not isinstance(delay, int | float) or delay < least):
            failures.add(
                "scaling", f"scaling.queueDelay must be >= {least:g} seconds, got {delay!r}"
            )
        if news.get("type") == "LOAD_BALANCER":
            failures.add("scaling", "LOAD_BALANCER endpoints scale on REQUEST_COUNT only")
        field = "queueDelay"
    elif kind == "REQUEST_COUNT":
        failures.int_range(
            scaling.get("requestCount"), "scaling.requestCount", limits.REQUEST_COUNT_MIN
        )
        workers = news.get("workers")
        if (
            news.get("type") == "QUEUE"
            and isinstance(workers, Mapping)
            and "idleTimeout" in workers
        ):
            failures.add(
                "workers",
                "workers.idleTimeout does not apply to a QUEUE endpoint scaling on "
                "REQUEST_COUNT; remove it",
            )
        field = "requestCount"
    else:
        choices = limits.choices(limits.SCALER_TYPES)
        failures.add("scaling", f"scaling.type must be {choices}, got {kind!r}")
        return
    if extra := set(scaling) - {"type", field}:
        failures.add("scaling", f"scaling has fields of the other variant: {sorted(extra)}")
