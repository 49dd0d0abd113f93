"""An emulator of RunPod's REST v2 *management* API on loopback, for the dynamic provider.

Owns: the surface of ``https://api.runpod.io/v2`` the provider uses, as described in
``../shared/reference/runpod-api.md`` and ``runpod-openapi-v2.json``: templates,
serverless endpoints (with releases and workers), network volumes, registry credentials
and account secrets, all in memory. Request and response bodies are validated with
jsonschema against the project's own description of the v2 bodies
(``components/runpod/schema.py``, held against the published spec by
``tests/provider/test_schema_conformance.py``), so the emulator needs no file outside
the repository; a rejected body gets a 422
shaped like RunPod's (``application/problem+json`` with ``errors: ["$.workers.max: must be
>= 0"]``). Every authenticated response carries ``RateLimit``/``RateLimit-Policy``
headers; past the minute quota the answer is 429 with ``Retry-After``.

Behaviours from the spec text and the reference (section 7), each with a test in
``tests/provider/test_emulator.py``: unique names for secrets (409) and for templates and
registries (400 by default: the spec documents no 409 there; ``duplicate_name_status``
picks 409); the secrets ``?name=`` filter ignores case; a template "in use" refuses
deletion (400) and binds nothing to endpoints or pods (a ``templateId`` is copied once);
a registry credential in use by a pod refuses deletion (400) and deleting one clears the
``registry`` of templates that referenced it; an endpoint created without ``timeout``
reads back 0 and a volume created without ``type`` reads back its data center's tier;
GPU pools, excluded types and data-center ids read back in RunPod's own order; endpoint
PATCHes of release settings start a new release that rolls the workers over; workers
and pods resolve ``{{ RUNPOD_SECRET_x }}`` when they boot and keep that value; pods
start from a template and take ``stop``/``start``/``restart``/``terminate``; RunPod's
idle scale-down of ``workers.max`` (``idle_for_days``); network volumes only grow and
refuse deletion while attached.

Faults for tests (``inject``): a status code (with ``Retry-After`` for 429), latency, a
response dropped after the write committed (the connection closes with no answer), and
an error status answered although the write committed. Every request is logged
(``requests``, ``calls()``, ``writes()``) so tests and benchmarks count calls; a failure
of the emulator itself answers 500 ``emulator defect: ...`` and fails the test. The
serverless *job* API (api.runpod.ai) is a different host with its own double,
``tests/fakes/runpod_jobs.py``.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import string
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import jsonschema
from jsonschema.exceptions import ValidationError

from components.runpod.schema import OPERATIONS, SCHEMAS, to_json_schema

DEFAULT_API_KEY = "test-runpod-admin-key"  # a local double's credential, not a real one
JOB_API_BASE = "https://api.runpod.ai/v2"
TEMPLATE_IN_USE = "Template is in use by a pod or serverless endpoint and cannot be deleted"
SECRET_REF = re.compile(r"\{\{\s*RUNPOD_SECRET_([a-zA-Z_][a-zA-Z0-9_.\-/]*)\s*\}\}")
_CONTAINER_FIELDS = ("image", "args", "disk", "ports", "env", "registry")
_RELEASE_FIELDS = (*_CONTAINER_FIELDS, "gpu", "cpu", "networkVolumes", "dataCenterIds")
_ID_ALPHABET = string.ascii_lowercase + string.digits
_LIST_KEYS = {
    "/v2/templates": "templates",
    "/v2/serverless": "endpoints",
    "/v2/network-volumes": "networkVolumes",
    "/v2/registries": "registries",
    "/v2/pods": "pods",
    "/v2/account/secrets": "secrets",
}
_INVALID_JSON = object()


# -- schema validation ------------------------------------------------------------------


def _strict_integer(_checker: Any, instance: Any) -> bool:
    # RunPod's Go handlers refuse 300000.0 where an integer is due; so does the emulator.
    return isinstance(instance, int) and not isinstance(instance, bool)


_StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer),
)


@cache
def _validator(schema_name: str) -> Any:
    """A validator for one body of the project's description (components/runpod/schema.py)."""
    root = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **to_json_schema(SCHEMAS[schema_name]),
    }
    return _StrictValidator(root)


def _json_path(parts: Any) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _leaf_errors(error: ValidationError) -> list[ValidationError]:
    """Descend into oneOf/anyOf failures, picking the branch the body meant."""
    if not error.context:
        return [error]
    branches: dict[Any, list[ValidationError]] = defaultdict(list)
    for sub in error.context:
        branches[sub.relative_schema_path[0] if sub.relative_schema_path else 0].append(sub)

    def off_discriminator(errors: list[ValidationError]) -> bool:
        return any(
            sub.validator in {"enum", "const"} and list(sub.absolute_path)[-1:] == ["type"]
            for sub in errors
        )

    ranked = sorted(branches.values(), key=lambda errs: (off_discriminator(errs), len(errs)))
    leaves: list[ValidationError] = []
    for sub in ranked[0]:
        leaves.extend(_leaf_errors(sub))
    return leaves


def _describe(error: ValidationError) -> str:
    path = _json_path(error.absolute_path)
    kind, value = error.validator, error.validator_value
    if kind == "required":
        missing = re.search(r"'([^']+)' is a required property", error.message)
        name = missing.group(1) if missing else "?"
        return f"{path}.{name}: is required"
    if kind == "additionalProperties":
        extras = re.findall(r"'([^']+)'", error.message)
        return f"{path}: additional properties {', '.join(repr(e) for e in extras)} not allowed"
    messages = {
        "minimum": f"must be >= {value}",
        "maximum": f"must be <= {value}",
        "exclusiveMinimum": f"must be > {value}",
        "type": f"must be {value}",
        "enum": f"must be one of {value}",
        "const": f"must be {value!r}",
        "pattern": f"must match {value}",
        "minLength": f"length must be >= {value}",
        "maxLength": f"length must be <= {value}",
        "minItems": f"must have at least {value} items",
        "maxItems": f"must have at most {value} items",
        "uniqueItems": "must not contain duplicates",
        "minProperties": f"must have at least {value} properties",
        "dependentRequired": f"requires {value}",
    }
    return f"{path}: {messages.get(str(kind), error.message)}"


def schema_errors(schema_name: str, body: Any) -> list[str]:
    """RunPod-style messages for every way ``body`` violates ``schema_name``."""
    found: list[str] = []
    for error in _validator(schema_name).iter_errors(body):
        for leaf in _leaf_errors(error):
            message = _describe(leaf)
            if message not in found:
                found.append(message)
    return sorted(found)


# -- HTTP plumbing ----------------------------------------------------------------------


class ProblemError(Exception):
    """An error answer: becomes application/problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    def payload(self) -> dict[str, Any]:
        """The problem+json document."""
        document: dict[str, Any] = {
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            document["errors"] = self.errors
        return document


def _unprocessable(errors: list[str]) -> ProblemError:
    return ProblemError(422, "Request validation failed.", errors=errors)


@dataclass
class Fault:
    """One injected misbehaviour, applied to the next ``times`` matching requests."""

    method: str
    path: re.Pattern[str]
    status: int | None = None
    retry_after: int | None = None
    delay_s: float = 0.0
    drop_after_commit: bool = False
    status_after_commit: int | None = None
    """Answer this status although the request was applied (a proxy's 5xx, say)."""
    times: int = 1
    detail: str = "injected fault"


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the emulator saw it (``status`` None when the answer was dropped)."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int | None
    at: float
    request_bytes: int = 0
    """Size of the request body on the wire."""
    response_bytes: int = 0
    """Size of the response body on the wire (0 when dropped or empty)."""


@dataclass
class _Worker:
    """A serverless worker: it booted with one endpoint version and the env of that moment."""

    id: str
    version: int
    env: dict[str, str]
    """The worker's environment as it booted: secret references resolved then, not later."""


@dataclass
class _Endpoint:
    obj: dict[str, Any]
    version: int = 1
    releases: list[dict[str, Any]] = field(default_factory=list)
    workers: list[_Worker] = field(default_factory=list)
    busy_workers: int = 0


@dataclass
class _Pod:
    obj: dict[str, Any]
    boot_env: dict[str, str]
    """The pod's environment as it last (re)started: secrets resolve at boot."""


POOL_ORDER: Final = (
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
)
"""RunPod's catalog order of serverless GPU pools (runpod-api.md section 5): the order a
stored GPU selection reads back in, whatever order the request used."""

POOL_GPU_TYPES: Final[dict[str, frozenset[str]]] = {
    "AMPERE_16": frozenset(
        {
            "NVIDIA RTX A4000",
            "NVIDIA RTX A4500",
            "NVIDIA RTX 4000 Ada Generation",
            "NVIDIA RTX 2000 Ada Generation",
        }
    ),
    "AMPERE_24": frozenset(
        {"NVIDIA RTX A4500", "NVIDIA RTX A5000", "NVIDIA GeForce RTX 3090", "NVIDIA L4"}
    ),
    "ADA_24": frozenset({"NVIDIA L4", "NVIDIA GeForce RTX 4090"}),
    "ADA_32_PRO": frozenset({"NVIDIA GeForce RTX 5090"}),
    "AMPERE_48": frozenset({"NVIDIA A40", "NVIDIA RTX A6000"}),
    "ADA_48_PRO": frozenset({"NVIDIA L40S", "NVIDIA L40", "NVIDIA RTX 6000 Ada Generation"}),
    "AMPERE_80": frozenset({"NVIDIA A100 80GB PCIe", "NVIDIA A100-SXM4-80GB"}),
}
"""GPU type ids per serverless pool, as RunPod's docs list them (docs.runpod.io: the Flash
"GPU types" page's pool table and the endpoint-configuration page's GPU table; ids as the
"GPU types" reference spells them). The two pages disagree on the 24 GB tiers (L4 in ADA_24
or with A5000/3090; A4500 at 16 or 24 GB): such a type sits in both pools, so the stand-in
never refuses what RunPod may accept. Pools not listed here (ADA_80_PRO, HOPPER_141,
BLACKWELL_*) are not judged: any exclusion passes for them."""

DEFAULT_VOLUME_TIERS: Final = {"EU-RO-1": "HIGH_PERFORMANCE"}
"""Stand-in primary storage tiers: RunPod fills in a data center's primary tier when a
create names none. Which tier is primary where is RunPod's (unconfirmed per data center);
what matters for the provider is that a tier it never declared reads back."""


def _runpod_order(values: list[str], catalog: tuple[str, ...] = ()) -> list[str]:
    """A list as RunPod rebuilds it from its stored string: catalog order, then sorted."""
    rank = {name: index for index, name in enumerate(catalog)}
    return sorted(values, key=lambda v: (rank.get(v, len(rank)), v))


class RunPodEmulator:
    """In-memory RunPod REST v2 management API served over HTTP on 127.0.0.1.

    `duplicate_name_status`: what a second template or registry credential with a taken
    name gets. The spec documents 409 for secrets only and 400/422 for these two kinds;
    which one RunPod sends is unconfirmed, so tests run the provider against both.
    `volume_default_tiers`: data center -> the tier a volume created without `type` gets.
    `list_page_size`: undocumented in v2 and unconfirmed; when set, lists answer pages of
    that size with a `nextCursor` (taken back as `?cursor=`), as some third-party clients
    expect.
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        rate_limit_per_minute: int = 10_000,
        rollout_workers_per_poll: int = 1,
        duplicate_name_status: int = 400,
        volume_default_tiers: Mapping[str, str] | None = None,
        list_page_size: int | None = None,
    ) -> None:
        if duplicate_name_status not in (400, 409):
            raise ValueError("duplicate_name_status must be 400 or 409")
        self.api_key = api_key
        self.rate_limit_per_minute = rate_limit_per_minute
        self.rollout_workers_per_poll = rollout_workers_per_poll
        self.duplicate_name_status = duplicate_name_status
        self.list_page_size = list_page_size
        self.volume_default_tiers = dict(
            DEFAULT_VOLUME_TIERS if volume_default_tiers is None else volume_default_tiers
        )
        self.templates: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, _Endpoint] = {}
        self.volumes: dict[str, dict[str, Any]] = {}
        self.registries: dict[str, dict[str, Any]] = {}
        self.registry_credentials: dict[str, tuple[str, str]] = {}
        self.secrets: dict[str, dict[str, Any]] = {}
        self.secret_values: dict[str, str] = {}
        self.pods: dict[str, _Pod] = {}
        self.requests: list[LoggedRequest] = []
        self.defects: list[str] = []
        """Failures of the emulator itself (answered as 500 "emulator defect: ...")."""
        self.credential_losses: list[str] = []
        """Each moment a registry credential was deleted while an endpoint or a template
        still referenced it (RunPod allows it; a deployment tool must never do it)."""
        self._faults: list[Fault] = []
        self._template_holds: dict[str, int] = {}
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._clock = itertools.count(1)
        self._window_start = time.monotonic()
        self._window_count = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL to put in ``RUNPOD_API_BASE_URL``."""
        if self._server is None:
            raise RuntimeError("emulator not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> str:
        """Serve on an ephemeral loopback port; return the base URL."""
        emulator = self

        class Handler(_Handler):
            owner = emulator

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- test controls ------------------------------------------------------------------

    def inject(
        self,
        method: str,
        path: str,
        *,
        status: int | None = None,
        retry_after: int | None = None,
        delay_s: float = 0.0,
        drop_after_commit: bool = False,
        status_after_commit: int | None = None,
        times: int = 1,
        detail: str = "injected fault",
    ) -> None:
        """Misbehave on the next ``times`` requests whose method and path (regex) match."""
        with self._lock:
            self._faults.append(
                Fault(
                    method=method.upper(),
                    path=re.compile(path),
                    status=status,
                    retry_after=retry_after,
                    delay_s=delay_s,
                    drop_after_commit=drop_after_commit,
                    status_after_commit=status_after_commit,
                    times=times,
                    detail=detail,
                )
            )

    def calls(self, method: str | None = None, path_prefix: str = "") -> list[LoggedRequest]:
        """Logged requests, optionally filtered by method and path prefix."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method.upper()) and r.path.startswith(path_prefix)
            ]

    def writes(self) -> list[LoggedRequest]:
        """Logged POST/PATCH/DELETE requests."""
        return [r for r in self.calls() if r.method != "GET"]

    def record_defect(self, description: str) -> None:
        """Note that the emulator itself failed (the test fixture fails the test with it)."""
        with self._lock:
            self.defects.append(description)

    def reset_log(self) -> None:
        """Forget logged requests (state stays)."""
        with self._lock:
            self.requests.clear()

    def hold_template_in_use(self, template_id: str, deletes: int) -> None:
        """Refuse the next ``deletes`` deletions of a template as 'in use' (the 2 min lag)."""
        with self._lock:
            self._template_holds[template_id] = deletes

    def idle_for_days(self, endpoint_id: str, days: int) -> None:
        """RunPod's own scale-down: ``workers.max`` to 2 after 3 idle days, 0 after 7."""
        with self._lock:
            workers = self.endpoints[endpoint_id].obj["workers"]
            if days >= 7:
                workers["max"] = 0
            elif days >= 3:
                workers["max"] = min(workers["max"], 2)

    def set_busy_workers(self, endpoint_id: str, count: int) -> None:
        """Pretend traffic keeps ``count`` workers up (beyond ``workers.min``)."""
        with self._lock:
            self.endpoints[endpoint_id].busy_workers = count
            self._reconcile_workers(self.endpoints[endpoint_id])

    def finish_rollouts(self) -> None:
        """Let every release roll over all workers (time passing between two `up`s)."""
        with self._lock:
            for record in self.endpoints.values():
                while any(w.version != record.version for w in record.workers):
                    self._advance_rollout(record)

    def resolve_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """Substitute ``{{ RUNPOD_SECRET_x }}`` as a booting worker would; KeyError if absent."""
        with self._lock:
            by_name = {s["name"]: self.secret_values[sid] for sid, s in self.secrets.items()}

        def substitute(match: re.Match[str]) -> str:
            return by_name[match.group(1)]

        return {key: SECRET_REF.sub(substitute, value) for key, value in env.items()}

    def _boot_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """What a process that boots now sees; an unknown secret stays an unresolved reference."""
        try:
            return self.resolve_env(env)
        except KeyError:
            return dict(env)

    def endpoint(self, endpoint_id: str) -> dict[str, Any]:
        """The stored endpoint object (a copy)."""
        with self._lock:
            return json.loads(json.dumps(self.endpoints[endpoint_id].obj))

    def worker_envs(self, endpoint_id: str) -> list[dict[str, str]]:
        """The environment each current worker of an endpoint booted with."""
        with self._lock:
            return [dict(w.env) for w in self.endpoints[endpoint_id].workers]

    def pod_env(self, pod_id: str) -> dict[str, str]:
        """The environment a pod booted with (its last start)."""
        with self._lock:
            return dict(self.pods[pod_id].boot_env)

    # -- dispatch -----------------------------------------------------------------------

    def _new_id(self) -> str:
        number = next(self._ids) * 7_919 + 1_000_003
        chars = []
        while number:
            number, rest = divmod(number, 36)
            chars.append(_ID_ALPHABET[rest])
        return "".join(reversed(chars)).rjust(8, "x")

    def _now(self) -> str:
        # A logical clock keeps timestamps strictly increasing within one test.
        tick = next(self._clock)
        return (
            datetime.fromtimestamp(1_780_000_000 + tick, tz=UTC).isoformat().replace("+00:00", "Z")
        )

    def _rate_headers(self) -> tuple[dict[str, str], bool]:
        now = time.monotonic()
        if now - self._window_start >= 60:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        quota = self.rate_limit_per_minute
        remaining = max(quota - self._window_count, 0)
        reset = max(int(60 - (now - self._window_start)), 1)
        headers = {
            "RateLimit": f'"minute";r={remaining};t={reset}, "hour";r=2800;t=1812, '
            f'"day";r=49500;t=45012',
            "RateLimit-Policy": f'"minute";q={quota};w=60, "hour";q=3000;w=3600, '
            f'"day";q=50000;w=86400',
        }
        return headers, self._window_count > quota

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.method == method and fault.path.search(path) and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def _routes(self) -> list[tuple[str, Any]]:
        return [
            ("/v2/templates", self._templates),
            ("/v2/templates/{id}", self._template),
            ("/v2/serverless", self._endpoints),
            ("/v2/serverless/{id}", self._endpoint),
            ("/v2/serverless/{id}/releases", self._releases),
            ("/v2/serverless/{id}/workers", self._workers),
            ("/v2/network-volumes", self._volumes),
            ("/v2/network-volumes/{id}", self._volume),
            ("/v2/registries", self._registries),
            ("/v2/registries/{id}", self._registry),
            ("/v2/pods", self._pods),
            ("/v2/pods/{id}", self._pod),
            ("/v2/pods/{id}/action", self._pod_action),
            ("/v2/account/secrets", self._secrets),
            ("/v2/account/secrets/{id}", self._secret),
        ]

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        """Route one authenticated, rate-limited request through the described call.

        The request body is validated against the call's request schema before the
        handler runs; a success answer must have the call's status and its body the
        call's response schema (`components/runpod/schema.py`), or the test fails loudly.
        """
        for template, handler in self._routes():
            match = re.fullmatch(template.replace("{id}", "([^/]+)"), path)
            if match is None:
                continue
            operation = OPERATIONS.get((method, template))
            if operation is None:
                allowed = ", ".join(m for (m, t) in OPERATIONS if t == template)
                raise ProblemError(
                    405,
                    "The requested method is not allowed for this path.",
                    headers={"Allow": allowed},
                )
            if operation.request is not None:
                self._validate(operation.request, body)
            with self._lock:
                status, payload = handler(method, body, query, *match.groups())
                if status != operation.success and status not in operation.also_success:
                    raise AssertionError(f"emulator answered {status} to {method} {template}")
                if method == "GET" and template in _LIST_KEYS:
                    payload = self._page(payload, _LIST_KEYS[template], query)
                if payload is not None and operation.response is not None:
                    self._check_response(operation.response, payload)
                payload = json.loads(json.dumps(payload))
            return status, payload
        raise ProblemError(404, "resource not found")

    def _page(self, payload: dict[str, Any], key: str, query: dict[str, list[str]]) -> Any:
        if self.list_page_size is None:
            return payload
        start = int(query.get("cursor", ["0"])[0])
        items = payload[key]
        page = {key: items[start : start + self.list_page_size]}
        if start + self.list_page_size < len(items):
            page["nextCursor"] = str(start + self.list_page_size)
        return page

    @staticmethod
    def _validate(schema: str, body: Any) -> None:
        if not isinstance(body, dict):
            raise ProblemError(400, "request body must be a JSON object")
        errors = schema_errors(schema, body)
        if errors:
            raise _unprocessable(errors)

    @staticmethod
    def _check_response(schema: str, obj: Any) -> None:
        errors = schema_errors(schema, obj)
        if errors:  # the emulator itself drifted from the description: fail the test loudly
            raise AssertionError(f"emulator built an invalid {schema}: {errors}")

    def _find(self, table: dict[str, Any], key: str | None) -> Any:
        if key is None or key not in table:
            raise ProblemError(404, "resource not found")
        return table[key]

    def _registry_exists(self, registry: Any) -> None:
        if registry is not None and registry not in self.registries:
            raise ProblemError(400, f"registry credential {registry} not found")

    def _name_taken(self, kind: str, name: str) -> ProblemError:
        return ProblemError(self.duplicate_name_status, f"a {kind} named {name!r} already exists")

    # -- templates ----------------------------------------------------------------------

    def _templates(self, method: str, body: Any, query: Any) -> tuple[int, Any]:
        if method == "GET":
            return 200, {"templates": list(self.templates.values())}
        if any(t["name"] == body["name"] for t in self.templates.values()):
            raise self._name_taken("template", body["name"])
        self._registry_exists(body.get("registry"))
        template = {
            "id": self._new_id(),
            "name": body["name"],
            "image": body["image"],
            "args": body.get("args", ""),
            "disk": body.get("disk", 20),
            "mounts": body.get("mounts", {}),
            "ports": body.get("ports", []),
            "env": body.get("env", {}),
            "registry": body.get("registry"),
            "serverless": body.get("serverless", False),
            "public": body.get("public", False),
            "category": body.get("category", "NVIDIA"),
            "startSsh": body.get("startSsh", True),
            "startJupyter": body.get("startJupyter", True),
            "allowedCudaVersions": body.get("allowedCudaVersions", []),
        }
        self.templates[template["id"]] = template
        return 201, template

    def _template(self, method: str, body: Any, query: Any, tid: str) -> tuple[int, Any]:
        template = self._find(self.templates, tid)
        if method == "GET":
            return 200, template
        if method == "DELETE":
            # v2 keeps no link from endpoints or pods to a template: only the documented
            # lag after its last use ("in use" for up to 2 minutes) refuses the delete.
            holds = self._template_holds.get(tid, 0)
            if holds > 0:
                self._template_holds[tid] = holds - 1
                raise ProblemError(400, TEMPLATE_IN_USE)
            del self.templates[tid]
            return 204, None
        if "name" in body and any(
            t["name"] == body["name"] and t["id"] != tid for t in self.templates.values()
        ):
            raise self._name_taken("template", body["name"])
        self._registry_exists(body.get("registry"))
        for key, value in body.items():
            if key == "mounts" and value == {}:
                continue
            template[key] = value
        return 200, template

    # -- serverless endpoints -----------------------------------------------------------

    def _endpoints(self, method: str, body: Any, query: Any) -> tuple[int, Any]:
        if method == "GET":
            return 200, {"endpoints": [e.obj for e in self.endpoints.values()]}
        body = dict(body)
        if "templateId" in body:
            # Resolved once into the body: the endpoint keeps no link to the template.
            template = self._find(self.templates, body.pop("templateId"))
            if not template["serverless"]:
                raise _unprocessable(["$.templateId: must be a serverless template"])
            merged_env = {**template["env"], **body.get("env", {})}
            for key in _CONTAINER_FIELDS:
                body.setdefault(key, template[key])
            body["env"] = merged_env
            if "gpu" in body and not {"allowedCudaVersions", "minCudaVersion"} & set(body["gpu"]):
                body["gpu"] = {
                    **body["gpu"],
                    "allowedCudaVersions": template["allowedCudaVersions"],
                }
        if ("gpu" in body) == ("cpu" in body):
            raise ProblemError(400, "exactly one of gpu or cpu must be set")
        self._check_endpoint_rules(body, body.get("type", "QUEUE"))
        self._registry_exists(body.get("registry"))
        self._volumes_exist(body.get("networkVolumes", []))
        eid = self._new_id()
        scaling = body["scaling"]
        workers = {"min": 0, "max": 3, **body.get("workers", {})}
        if not (body["type"] == "QUEUE" and scaling["type"] == "REQUEST_COUNT"):
            workers.setdefault("idleTimeout", 10)
        obj: dict[str, Any] = {
            "id": eid,
            "name": body["name"],
            "type": body["type"],
            "requestUrls": self._request_urls(eid, body["type"]),
            "image": body["image"],
            "args": body.get("args", ""),
            "disk": body.get("disk", 20),
            "ports": body.get("ports", []),
            "env": body.get("env", {}),
            "registry": body.get("registry"),
            "workers": workers,
            "scaling": scaling,
            "dataCenterIds": _runpod_order(body.get("dataCenterIds", [])),
            "networkVolumes": body.get("networkVolumes", []),
            # Documented default 300000; an endpoint created without it reads back 0.
            "timeout": body.get("timeout", 0),
            "flashboot": body.get("flashboot", "OFF"),
            "createdAt": self._now(),
        }
        if "gpu" in body:
            gpu = body["gpu"]
            obj["gpu"] = {
                "pools": gpu["pools"],
                "count": gpu.get("count", 1),
                "allowedCudaVersions": gpu.get("allowedCudaVersions", []),
                "minCudaVersion": gpu.get("minCudaVersion"),
            }
            if "excludedTypes" in gpu:
                obj["gpu"]["excludedTypes"] = gpu["excludedTypes"]
            _reorder_gpu(obj["gpu"])
        else:
            obj["cpu"] = [{**c, "memory": c["vcpuCount"] * 4} for c in body["cpu"]]
        record = _Endpoint(obj=obj)
        record.releases.append(self._release(1, []))
        self._reconcile_workers(record)
        self.endpoints[eid] = record
        return 201, obj

    def _endpoint(self, method: str, body: Any, query: Any, eid: str) -> tuple[int, Any]:
        record: _Endpoint = self._find(self.endpoints, eid)
        if method == "GET":
            return 200, record.obj
        if method == "DELETE":
            # Terminates the workers and cancels queued and running jobs; nothing else
            # (no template is bound to an endpoint in v2).
            del self.endpoints[eid]
            return 204, None
        body = dict(body)
        if "templateId" in body:
            template = self._find(self.templates, body.pop("templateId"))
            for key in _CONTAINER_FIELDS:
                body.setdefault(key, template[key])
        obj = record.obj
        if ("gpu" in body and "cpu" in obj) or ("cpu" in body and "gpu" in obj):
            raise ProblemError(400, "the compute family of an endpoint cannot be changed")
        if "gpu" in body and "cpu" in body:
            raise ProblemError(400, "exactly one of gpu or cpu may be set")
        self._registry_exists(body.get("registry"))
        self._volumes_exist(body.get("networkVolumes", []))
        new = _merge_endpoint_patch(obj, body)
        if new["type"] == "QUEUE" and new["scaling"]["type"] == "REQUEST_COUNT":
            if "idleTimeout" in body.get("workers", {}):
                raise _unprocessable(
                    ["$.workers.idleTimeout: not applicable to REQUEST_COUNT scaling"]
                )
            new["workers"].pop("idleTimeout", None)
        else:
            new["workers"].setdefault("idleTimeout", 10)
        self._check_endpoint_rules(new, new["type"])
        diff = [
            {
                "field": "template.imageName" if key == "image" else key,
                "old": obj.get(key),
                "new": new.get(key),
            }
            for key in _RELEASE_FIELDS
            if obj.get(key) != new.get(key)
        ]
        record.obj = new
        if diff:
            record.version += 1
            record.releases.insert(0, self._release(record.version, diff))
        self._reconcile_workers(record)
        return 200, new

    def _check_endpoint_rules(self, body: dict[str, Any], endpoint_type: str) -> None:
        gpu = body.get("gpu") or {}
        if gpu.get("allowedCudaVersions") and gpu.get("minCudaVersion"):
            raise ProblemError(400, "allowedCudaVersions and minCudaVersion are mutually exclusive")
        workers = body.get("workers", {})
        scaling = body.get("scaling", {})
        if (
            endpoint_type == "QUEUE"
            and scaling.get("type") == "REQUEST_COUNT"
            and "idleTimeout" in workers
            and "id" not in body
        ):
            raise _unprocessable(["$.workers.idleTimeout: not applicable to REQUEST_COUNT scaling"])
        if workers.get("min", 0) > workers.get("max", 3):
            raise ProblemError(400, "workers.min must not exceed workers.max")
        if gpu.get("excludedTypes"):
            _check_exclusions(gpu["pools"], gpu["excludedTypes"])

    def _volumes_exist(self, volume_ids: list[str]) -> None:
        for vid in volume_ids:
            if vid not in self.volumes:
                raise ProblemError(400, f"network volume {vid} not found")

    @staticmethod
    def _request_urls(eid: str, endpoint_type: str) -> dict[str, str]:
        base = f"{JOB_API_BASE}/{eid}"
        if endpoint_type == "LOAD_BALANCER":
            return {
                "base": f"https://{eid}.api.runpod.ai",
                "health": f"https://{eid}.api.runpod.ai/ping",
            }
        return {
            "run": f"{base}/run",
            "runSync": f"{base}/runsync",
            "status": f"{base}/status/{{job_id}}",
            "stream": f"{base}/stream/{{job_id}}",
            "cancel": f"{base}/cancel/{{job_id}}",
            "retry": f"{base}/retry/{{job_id}}",
            "purgeQueue": f"{base}/purge-queue",
            "health": f"{base}/health",
        }

    def _release(self, version: int, diff: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": f"rel{self._new_id()}",
            "version": version,
            "source": "MANUAL",
            "buildId": None,
            "createdByUserId": None,
            "workerCount": 0,
            "createdAt": self._now(),
            "diff": diff,
        }

    def _boot_worker(self, record: _Endpoint) -> _Worker:
        return _Worker(
            id=f"wk{self._new_id()}",
            version=record.version,
            env=self._boot_env(record.obj.get("env", {})),
        )

    def _reconcile_workers(self, record: _Endpoint) -> None:
        wanted = min(
            max(record.obj["workers"]["min"], record.busy_workers), record.obj["workers"]["max"]
        )
        while len(record.workers) > wanted:
            record.workers.pop()
        while len(record.workers) < wanted:
            record.workers.append(self._boot_worker(record))

    def _advance_rollout(self, record: _Endpoint) -> None:
        """Replace up to `rollout_workers_per_poll` stale workers with freshly booted ones."""
        stale = [i for i, w in enumerate(record.workers) if w.version != record.version]
        for index in stale[: self.rollout_workers_per_poll]:
            record.workers[index] = self._boot_worker(record)

    def _releases(self, method: str, body: Any, query: Any, eid: str) -> tuple[int, Any]:
        record: _Endpoint = self._find(self.endpoints, eid)
        on_latest = sum(1 for w in record.workers if w.version == record.version)
        total = len(record.workers)
        for release in record.releases:
            release["workerCount"] = sum(
                1 for w in record.workers if w.version == release["version"]
            )
        payload = {
            "endpointVersion": record.version,
            "rollout": {
                "inProgress": on_latest < total,
                "workersOnLatest": on_latest,
                "workersTotal": total,
                "percentOnLatest": (100 * on_latest // total) if total else 0,
            },
            "releases": json.loads(json.dumps(record.releases)),
        }
        # Workers cycle between polls, as they do while a real release rolls out.
        self._advance_rollout(record)
        return 200, payload

    def _workers(self, method: str, body: Any, query: Any, eid: str) -> tuple[int, Any]:
        record: _Endpoint = self._find(self.endpoints, eid)
        workers = [
            {
                "id": w.id,
                "status": "IDLE",
                "isStale": w.version != record.version,
                "version": w.version,
                "gpuCount": (record.obj.get("gpu") or {}).get("count", 0),
                "image": record.obj["image"],
            }
            for w in record.workers
        ]
        summary = {"running": 0, "idle": len(workers), "initializing": 0, "throttled": 0}
        summary |= {"unhealthy": 0, "total": len(workers)}
        return 200, {"workers": workers, "summary": summary, "endpointVersion": record.version}

    # -- network volumes ----------------------------------------------------------------

    def _volumes(self, method: str, body: Any, query: Any) -> tuple[int, Any]:
        if method == "GET":
            return 200, {"networkVolumes": list(self.volumes.values())}
        data_center = body["dataCenter"]
        volume = {
            "id": self._new_id(),
            "name": body["name"],
            "size": body["size"],
            "dataCenter": data_center,
            "type": body.get("type") or self.volume_default_tiers.get(data_center, "STANDARD"),
        }
        self.volumes[volume["id"]] = volume
        return 201, volume

    def volume_users(self, vid: str) -> list[str]:
        """Endpoints and pods that use a volume, as `endpoint <id>` / `pod <id>`."""
        with self._lock:
            users = [
                f"endpoint {e}" for e, r in self.endpoints.items() if vid in r.obj["networkVolumes"]
            ]
            users += [
                f"pod {p}"
                for p, pod in self.pods.items()
                if any(m.get("volumeId") == vid for m in pod.obj["mounts"].get("network", []))
            ]
            return users

    def _volume(self, method: str, body: Any, query: Any, vid: str) -> tuple[int, Any]:
        volume = self._find(self.volumes, vid)
        if method == "GET":
            return 200, volume
        if method == "DELETE":
            if self.volume_users(vid):
                # The spec documents no refusal here (its `default` error); RunPod refuses
                # to delete a volume that is attached, with a reason like this one.
                raise ProblemError(400, "network volume is in use by a pod or serverless endpoint")
            del self.volumes[vid]
            return 204, None
        if body.get("size", volume["size"]) < volume["size"]:
            raise ProblemError(400, "network volume size cannot be reduced")
        volume.update(body)
        return 200, volume

    # -- registry credentials -----------------------------------------------------------

    def _registries(self, method: str, body: Any, query: Any) -> tuple[int, Any]:
        if method == "GET":
            return 200, {"registries": list(self.registries.values())}
        if any(r["name"] == body["name"] for r in self.registries.values()):
            raise self._name_taken("registry credential", body["name"])
        registry = {"id": self._new_id(), "name": body["name"]}
        self.registries[registry["id"]] = registry
        self.registry_credentials[registry["id"]] = (body["username"], body["password"])
        return 201, registry

    def _registry(self, method: str, body: Any, query: Any, rid: str) -> tuple[int, Any]:
        registry = self._find(self.registries, rid)
        if method == "GET":
            return 200, registry
        if any(pod.obj["registry"] == rid for pod in self.pods.values()):
            raise ProblemError(400, "Registry credential is in use by a pod and cannot be deleted")
        del self.registries[rid]
        del self.registry_credentials[rid]
        # Templates are not part of that check: they silently lose the reference.
        for template in self.templates.values():
            if template["registry"] == rid:
                template["registry"] = None
                self.credential_losses.append(f"template {template['id']} lost {rid}")
        self.credential_losses += [
            f"endpoint {eid} references deleted {rid}"
            for eid, record in self.endpoints.items()
            if record.obj.get("registry") == rid
        ]
        return 204, None

    # -- pods ---------------------------------------------------------------------------

    def _pods(self, method: str, body: Any, query: Any) -> tuple[int, Any]:
        if method == "GET":
            return 200, {"pods": [p.obj for p in self.pods.values()]}
        body = dict(body)
        start_ssh, start_jupyter = body.pop("startSsh", False), body.pop("startJupyter", False)
        if "templateId" in body:
            # Resolved once; the pod keeps no link (`template` stays null).
            template = self._find(self.templates, body.pop("templateId"))
            if template["serverless"]:
                raise _unprocessable(["$.templateId: must not be a serverless template"])
            merged_env = {**template["env"], **body.get("env", {})}
            for key in _CONTAINER_FIELDS:
                body.setdefault(key, template[key])
            body["env"] = merged_env
            if template["mounts"] and "mounts" not in body:
                body["mounts"] = template["mounts"]
        if ("gpu" in body) == ("cpu" in body):
            raise ProblemError(400, "exactly one of gpu or cpu must be set")
        self._registry_exists(body.get("registry"))
        mounts = body.get("mounts", {})
        if "persistent" in mounts and "network" in mounts:
            raise ProblemError(400, "persistent and network mounts are mutually exclusive")
        self._volumes_exist([m["volumeId"] for m in mounts.get("network", [])])
        pid, now = self._new_id(), self._now()
        obj: dict[str, Any] = {
            "id": pid,
            "name": body["name"],
            "status": "RUNNING",
            "actions": ["stop", "restart", "terminate"],
            "image": body["image"],
            "args": body.get("args", ""),
            "disk": body.get("disk", 20),
            "mounts": mounts,
            "ports": body.get("ports", []),
            "env": body.get("env", {}),
            "registry": body.get("registry"),
            "cloud": body.get("cloud", "SECURE"),
            "dataCenterId": (body.get("dataCenterIds") or ["EU-RO-1"])[0],
            "cudaVersion": "12.8",
            "ssh": {
                "proxy": {
                    "host": "ssh.runpod.io",
                    "port": 22,
                    "username": f"{pid}-64411eb2",
                    "command": f"ssh {pid}-64411eb2@ssh.runpod.io",
                },
                "direct": None,
            },
            "template": None,
            "cost": 0.44,
            "locked": False,
            "globalNetworking": {"enabled": False},
            "runtime": {"uptime": 0},
            "createdAt": now,
            "startedAt": now,
        }
        if "gpu" in body:
            obj["gpu"] = {"id": body["gpu"]["id"], "count": body["gpu"].get("count", 1)}
        else:
            obj["cpu"] = {**body["cpu"], "memory": body["cpu"]["vcpuCount"] * 4}
        del start_ssh, start_jupyter  # create-time flags: never part of the readable pod
        self.pods[pid] = _Pod(obj=obj, boot_env=self._boot_env(obj["env"]))
        return 201, obj

    def _pod(self, method: str, body: Any, query: Any, pid: str) -> tuple[int, Any]:
        pod: _Pod = self._find(self.pods, pid)
        if method == "GET":
            return 200, pod.obj
        del self.pods[pid]
        return 204, None

    def _pod_action(self, method: str, body: Any, query: Any, pid: str) -> tuple[int, Any]:
        pod: _Pod = self._find(self.pods, pid)
        action, status = body["action"], pod.obj["status"]
        allowed = {
            "RUNNING": ("stop", "restart", "terminate"),
            "EXITED": ("start", "terminate"),
            "ERROR": ("start", "terminate"),
        }.get(status, ("stop", "terminate"))
        if action not in allowed:
            raise ProblemError(409, f"cannot {action} a pod that is {status}")
        if action == "terminate":
            del self.pods[pid]
            return 204, None
        if action == "stop":
            pod.obj.update(status="EXITED", actions=["start", "terminate"], runtime=None)
            pod.obj.update(cost=0.0)
        else:  # start or restart: the container boots again and resolves secrets now
            pod.obj.update(status="RUNNING", actions=["stop", "restart", "terminate"])
            pod.obj.update(runtime={"uptime": 0}, startedAt=self._now(), cost=0.44)
            pod.boot_env = self._boot_env(pod.obj["env"])
        return 200, pod.obj

    # -- account secrets ----------------------------------------------------------------

    def _secrets(self, method: str, body: Any, query: Any) -> tuple[int, Any]:
        if method == "GET":
            wanted = query.get("name", [None])[0]
            # The name filter ignores case, so it can return a secret whose name differs.
            found = [
                s
                for s in self.secrets.values()
                if wanted is None or s["name"].lower() == wanted.lower()
            ]
            return 200, {"secrets": found}
        if body["name"].upper().startswith("RUNPOD"):
            raise _unprocessable(["$.name: must not start with RUNPOD"])
        if any(s["name"] == body["name"] for s in self.secrets.values()):
            raise ProblemError(409, f"a secret named {body['name']!r} already exists")
        now = self._now()
        secret = {
            "id": self._new_id(),
            "name": body["name"],
            "description": body.get("description", ""),
            "createdAt": now,
            "valueLastUpdatedAt": now,
        }
        self.secrets[secret["id"]] = secret
        # Running pods and workers keep the value they booted with (see _boot_env).
        self.secret_values[secret["id"]] = body["value"]
        return 201, secret

    def _secret(self, method: str, body: Any, query: Any, sid: str) -> tuple[int, Any]:
        secret = self._find(self.secrets, sid)
        if method == "GET":
            return 200, secret
        if method == "DELETE":
            del self.secrets[sid]
            del self.secret_values[sid]
            return 204, None
        if "value" in body:
            self.secret_values[sid] = body["value"]
            secret["valueLastUpdatedAt"] = self._now()
        if "description" in body:
            secret["description"] = body["description"]
        return 200, secret


def _check_exclusions(pools: list[str], excluded: list[str]) -> None:
    """The spec's 400s for ``gpu.excludedTypes``: a type in none of the pools (a typo would
    otherwise filter nothing), and a selection that leaves no type at all."""
    if any(pool not in POOL_GPU_TYPES for pool in pools):
        return
    types = frozenset().union(*(POOL_GPU_TYPES[pool] for pool in pools))
    wanted = [value.strip() for value in excluded]
    strangers = [value for value in wanted if value not in types]
    if strangers:
        raise ProblemError(
            400, f"gpu.excludedTypes: {strangers} are not GPU types in pools {pools}"
        )
    if types <= set(wanted):
        raise ProblemError(400, f"gpu.excludedTypes leaves no GPU type in pools {pools}")


def _reorder_gpu(gpu: dict[str, Any]) -> None:
    """RunPod stores the GPU selection as one string and rebuilds the lists in its order."""
    gpu["pools"] = _runpod_order(gpu["pools"], POOL_ORDER)
    if "excludedTypes" in gpu:
        gpu["excludedTypes"] = _runpod_order([value.strip() for value in gpu["excludedTypes"]])


def _merge_endpoint_patch(obj: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The endpoint after a PATCH: partial workers and gpu, wholesale everything else."""
    new: dict[str, Any] = json.loads(json.dumps(obj))
    for key, value in body.items():
        if key == "workers":
            new["workers"] = {**new["workers"], **value}
        elif key == "gpu":
            gpu = new["gpu"]
            if "pools" in value:
                # pools and exclusions are one selection: pools without exclusions clears them
                gpu["pools"] = value["pools"]
                gpu.pop("excludedTypes", None)
                if "excludedTypes" in value:
                    gpu["excludedTypes"] = value["excludedTypes"]
            for sub in ("count", "allowedCudaVersions"):
                if sub in value:
                    gpu[sub] = value[sub]
            if "minCudaVersion" in value:
                gpu["minCudaVersion"] = value["minCudaVersion"] or None
        elif key == "cpu":
            new["cpu"] = [{**c, "memory": c["vcpuCount"] * 4} for c in value]
        elif key == "dataCenterIds":
            new[key] = _runpod_order(value)
        else:
            new[key] = value
    if "gpu" in new:
        _reorder_gpu(new["gpu"])
    return new


class _Handler(BaseHTTPRequestHandler):
    owner: RunPodEmulator
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the request log is the emulator's record."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def _serve(self, method: str) -> None:
        split = urlsplit(self.path)
        path, query = split.path.rstrip("/") or "/", parse_qs(split.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = _INVALID_JSON
        headers: dict[str, str] = {}
        status: int | None = None
        try:
            headers, fault = self._admit(method, body)
            status, payload = self.owner.handle(method, path, query, body)
        except ProblemError as problem:
            status, payload = problem.status, problem.payload()
            headers = {**headers, **problem.headers}
        except Exception as defect:  # noqa: BLE001 - reported to the test, never a dropped socket
            self.owner.record_defect(f"{method} {path}: {type(defect).__name__}: {defect}")
            problem = ProblemError(500, f"emulator defect: {defect}")
            status, payload = problem.status, problem.payload()
        else:
            if fault is not None and fault.drop_after_commit:
                self._log(method, path, query, body, None, sizes=(len(raw), 0))
                self._drop()
                return
            if fault is not None and fault.status_after_commit is not None:
                problem = ProblemError(fault.status_after_commit, fault.detail)
                status, payload = problem.status, problem.payload()
        response_size = 0 if payload is None else len(json.dumps(payload).encode())
        self._log(method, path, query, body, status, sizes=(len(raw), response_size))
        self._respond(status, payload, headers)

    def _admit(self, method: str, body: Any) -> tuple[dict[str, str], Fault | None]:
        """Authentication, rate limit and injected faults, in RunPod's order."""
        emulator = self.owner
        authorization = self.headers.get("Authorization")
        if authorization != f"Bearer {emulator.api_key}":
            detail = "invalid bearer token" if authorization else "missing bearer token"
            raise ProblemError(401, detail)
        with emulator._lock:
            headers, limited = emulator._rate_headers()
            fault = emulator._take_fault(method, urlsplit(self.path).path.rstrip("/"))
        if limited:
            reset = headers["RateLimit"].split(";t=")[1].split(",")[0]
            raise ProblemError(
                429,
                "rate limit exceeded for the minute window",
                headers={**headers, "Retry-After": reset},
            )
        if fault is not None and fault.delay_s:
            time.sleep(fault.delay_s)
        if fault is not None and fault.status is not None:
            extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            raise ProblemError(fault.status, fault.detail, headers={**headers, **extra})
        if body is _INVALID_JSON:
            raise ProblemError(400, "request body is not valid JSON", headers=headers)
        if method in {"PATCH", "POST"} and body is None:
            raise ProblemError(400, "request body required", headers=headers)
        return headers, fault

    def _log(
        self,
        method: str,
        path: str,
        query: Any,
        body: Any,
        status: int | None,
        *,
        sizes: tuple[int, int] = (0, 0),
    ) -> None:
        with self.owner._lock:
            self.owner.requests.append(
                LoggedRequest(method, path, query, body, status, time.monotonic(), *sizes)
            )

    def _drop(self) -> None:
        self.close_connection = True
        with suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _respond(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        problem = status >= 400
        if data:
            content_type = "application/problem+json" if problem else "application/json"
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        try:
            self.end_headers()
            if data:
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (read timeout): nothing to do


@contextmanager
def running_emulator(**kwargs: Any) -> Iterator[RunPodEmulator]:
    """Start an emulator for the duration of a ``with`` block.

    Leaving the block fails with the emulator's own defects, if it had any, so a bug in
    the double reads as one clear failure instead of connection errors in the client.
    """
    emulator = RunPodEmulator(**kwargs)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()
    if emulator.defects:
        raise AssertionError("the RunPod emulator failed: " + "; ".join(emulator.defects))
