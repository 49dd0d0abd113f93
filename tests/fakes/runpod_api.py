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

Behaviours from the reference: unique names for templates, registries and secrets (409);
a template "in use" refuses deletion (400); deleting a registry credential clears the
``registry`` of templates that referenced it; endpoint PATCHes of container settings start
a new release that rolls over the workers; RunPod's idle scale-down of ``workers.max``
(``idle_for_days``); network volumes only grow.

Faults for tests (``inject``): a status code (with ``Retry-After`` for 429), latency, and a
response dropped after the write committed (the connection closes with no answer). Every
request is logged (``requests``, ``calls()``, ``writes()``) so tests and benchmarks count
calls. The serverless *job* API (api.runpod.ai) is a different host with its own double,
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
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
from jsonschema.exceptions import ValidationError

from components.runpod.schema import SCHEMAS, to_json_schema

DEFAULT_API_KEY = "test-runpod-admin-key"  # a local double's credential, not a real one
JOB_API_BASE = "https://api.runpod.ai/v2"
TEMPLATE_IN_USE = "Template is in use by a pod or serverless endpoint and cannot be deleted"
SECRET_REF = re.compile(r"\{\{\s*RUNPOD_SECRET_([a-zA-Z_][a-zA-Z0-9_.\-/]*)\s*\}\}")
_CONTAINER_FIELDS = ("image", "args", "disk", "ports", "env", "registry")
_RELEASE_FIELDS = (*_CONTAINER_FIELDS, "gpu", "cpu", "networkVolumes", "dataCenterIds")
_ID_ALPHABET = string.ascii_lowercase + string.digits
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
class _Endpoint:
    obj: dict[str, Any]
    version: int = 1
    releases: list[dict[str, Any]] = field(default_factory=list)
    workers: list[dict[str, Any]] = field(default_factory=list)
    bound_template: str | None = None
    busy_workers: int = 0


class RunPodEmulator:
    """In-memory RunPod REST v2 management API served over HTTP on 127.0.0.1."""

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        rate_limit_per_minute: int = 10_000,
        rollout_workers_per_poll: int = 1,
    ) -> None:
        self.api_key = api_key
        self.rate_limit_per_minute = rate_limit_per_minute
        self.rollout_workers_per_poll = rollout_workers_per_poll
        self.templates: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, _Endpoint] = {}
        self.volumes: dict[str, dict[str, Any]] = {}
        self.registries: dict[str, dict[str, Any]] = {}
        self.registry_credentials: dict[str, tuple[str, str]] = {}
        self.secrets: dict[str, dict[str, Any]] = {}
        self.secret_values: dict[str, str] = {}
        self.requests: list[LoggedRequest] = []
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

    def resolve_env(self, env: dict[str, str]) -> dict[str, str]:
        """Substitute ``{{ RUNPOD_SECRET_x }}`` as a booting worker would; KeyError if absent."""
        by_name = {s["name"]: self.secret_values[sid] for sid, s in self.secrets.items()}

        def substitute(match: re.Match[str]) -> str:
            return by_name[match.group(1)]

        return {key: SECRET_REF.sub(substitute, value) for key, value in env.items()}

    def endpoint(self, endpoint_id: str) -> dict[str, Any]:
        """The stored endpoint object (a copy)."""
        with self._lock:
            return json.loads(json.dumps(self.endpoints[endpoint_id].obj))

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

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        """Route one authenticated, rate-limited request to its handler."""
        routes: list[tuple[str, Any]] = [
            (r"^/v2/templates$", self._templates),
            (r"^/v2/templates/(?P<id>[^/]+)$", self._template),
            (r"^/v2/serverless$", self._endpoints),
            (r"^/v2/serverless/(?P<id>[^/]+)$", self._endpoint),
            (r"^/v2/serverless/(?P<id>[^/]+)/releases$", self._releases),
            (r"^/v2/serverless/(?P<id>[^/]+)/workers$", self._workers),
            (r"^/v2/network-volumes$", self._volumes),
            (r"^/v2/network-volumes/(?P<id>[^/]+)$", self._volume),
            (r"^/v2/registries$", self._registries),
            (r"^/v2/registries/(?P<id>[^/]+)$", self._registry),
            (r"^/v2/account/secrets$", self._secrets),
            (r"^/v2/account/secrets/(?P<id>[^/]+)$", self._secret),
        ]
        for pattern, handler in routes:
            match = re.match(pattern, path)
            if match:
                with self._lock:
                    status, payload = handler(method, body, query, *match.groups())
                return int(status), payload
        raise ProblemError(404, "resource not found")

    @staticmethod
    def _allow(method: str, allowed: str) -> None:
        if method not in allowed.split(", "):
            raise ProblemError(
                405,
                "The requested method is not allowed for this path.",
                headers={"Allow": allowed},
            )

    @staticmethod
    def _validate(schema: str, body: Any) -> None:
        if not isinstance(body, dict):
            raise ProblemError(400, "request body must be a JSON object")
        errors = schema_errors(schema, body)
        if errors:
            raise _unprocessable(errors)

    @staticmethod
    def _check_response(schema: str, obj: dict[str, Any]) -> dict[str, Any]:
        errors = schema_errors(schema, obj)
        if errors:  # the emulator itself drifted from the spec: fail the test loudly
            raise AssertionError(f"emulator built an invalid {schema}: {errors}")
        return json.loads(json.dumps(obj))

    def _find(self, table: dict[str, Any], key: str | None) -> Any:
        if key is None or key not in table:
            raise ProblemError(404, "resource not found")
        return table[key]

    def _registry_exists(self, registry: Any) -> None:
        if registry is not None and registry not in self.registries:
            raise ProblemError(400, f"registry credential {registry} not found")

    # -- templates ----------------------------------------------------------------------

    def _templates(self, method: str, body: Any, query: Any) -> tuple[int, Any]:
        self._allow(method, "GET, POST")
        if method == "GET":
            return 200, {
                "templates": [self._check_response("Template", t) for t in self.templates.values()]
            }
        self._validate("CreateTemplateRequest", body)
        if any(t["name"] == body["name"] for t in self.templates.values()):
            raise ProblemError(409, f"a template named {body['name']!r} already exists")
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
        return 201, self._check_response("Template", template)

    def _template(self, method: str, body: Any, query: Any, tid: str) -> tuple[int, Any]:
        self._allow(method, "GET, PATCH, DELETE")
        template = self._find(self.templates, tid)
        if method == "GET":
            return 200, self._check_response("Template", template)
        if method == "DELETE":
            holds = self._template_holds.get(tid, 0)
            bound = any(e.bound_template == tid for e in self.endpoints.values())
            if holds > 0 or bound:
                self._template_holds[tid] = max(holds - 1, 0)
                raise ProblemError(400, TEMPLATE_IN_USE)
            del self.templates[tid]
            return 204, None
        self._validate("UpdateTemplateRequest", body)
        if "name" in body and any(
            t["name"] == body["name"] and t["id"] != tid for t in self.templates.values()
        ):
            raise ProblemError(409, f"a template named {body['name']!r} already exists")
        self._registry_exists(body.get("registry"))
        for key, value in body.items():
            if key == "mounts" and value == {}:
                continue
            template[key] = value
        return 200, self._check_response("Template", template)

    # -- serverless endpoints -----------------------------------------------------------

    def _endpoints(self, method: str, body: Any, query: Any) -> tuple[int, Any]:
        self._allow(method, "GET, POST")
        if method == "GET":
            return 200, {
                "endpoints": [
                    self._check_response("Endpoint", e.obj) for e in self.endpoints.values()
                ]
            }
        self._validate("CreateEndpointRequest", body)
        body = dict(body)
        bound: str | None = None
        if "templateId" in body:
            template = self._find(self.templates, body.pop("templateId"))
            if not template["serverless"]:
                raise _unprocessable(["$.templateId: must be a serverless template"])
            merged_env = {**template["env"], **body.get("env", {})}
            for key in _CONTAINER_FIELDS:
                body.setdefault(key, template[key])
            body["env"] = merged_env
            bound = template["id"]
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
            "dataCenterIds": body.get("dataCenterIds", []),
            "networkVolumes": body.get("networkVolumes", []),
            "timeout": body.get("timeout", 300_000),
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
        else:
            obj["cpu"] = [{**c, "memory": c["vcpuCount"] * 4} for c in body["cpu"]]
        record = _Endpoint(obj=obj, bound_template=bound)
        record.releases.append(self._release(1, []))
        self._reconcile_workers(record)
        self.endpoints[eid] = record
        return 201, self._check_response("Endpoint", obj)

    def _endpoint(self, method: str, body: Any, query: Any, eid: str) -> tuple[int, Any]:
        self._allow(method, "GET, PATCH, DELETE")
        record: _Endpoint = self._find(self.endpoints, eid)
        if method == "GET":
            return 200, self._check_response("Endpoint", record.obj)
        if method == "DELETE":
            del self.endpoints[eid]
            if record.bound_template:
                self.templates.pop(record.bound_template, None)
            return 204, None
        self._validate("UpdateEndpointRequest", body)
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
        return 200, self._check_response("Endpoint", new)

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

    def _reconcile_workers(self, record: _Endpoint) -> None:
        wanted = min(
            max(record.obj["workers"]["min"], record.busy_workers), record.obj["workers"]["max"]
        )
        while len(record.workers) > wanted:
            record.workers.pop()
        while len(record.workers) < wanted:
            record.workers.append({"id": f"wk{self._new_id()}", "version": record.version})

    def _advance_rollout(self, record: _Endpoint) -> None:
        stale = [w for w in record.workers if w["version"] != record.version]
        for worker in stale[: self.rollout_workers_per_poll]:
            worker["version"] = record.version

    def _releases(self, method: str, body: Any, query: Any, eid: str) -> tuple[int, Any]:
        self._allow(method, "GET")
        record: _Endpoint = self._find(self.endpoints, eid)
        on_latest = sum(1 for w in record.workers if w["version"] == record.version)
        total = len(record.workers)
        for release in record.releases:
            release["workerCount"] = sum(
                1 for w in record.workers if w["version"] == release["version"]
            )
        payload = {
            "endpointVersion": record.version,
            "rollout": {
                "inProgress": on_latest < total,
                "workersOnLatest": on_latest,
                "workersTotal": total,
                "percentOnLatest": (100 * on_latest // total) if total else 0,
            },
            "releases": record.releases,
        }
        # Workers cycle between polls, as they do while a real release rolls out.
        self._advance_rollout(record)
        self._check_response("ListEndpointReleasesResponse", payload)
        return 200, json.loads(json.dumps(payload))

    def _workers(self, method: str, body: Any, query: Any, eid: str) -> tuple[int, Any]:
        self._allow(method, "GET")
        record: _Endpoint = self._find(self.endpoints, eid)
        workers = [
            {
                "id": w["id"],
                "status": "IDLE",
                "isStale": w["version"] != record.version,
                "version": w["version"],
                "gpuCount": (record.obj.get("gpu") or {}).get("count", 0),
                "image": record.obj["image"],
            }
            for w in record.workers
        ]
        summary = {"running": 0, "idle": len(workers), "initializing": 0, "throttled": 0}
        summary |= {"unhealthy": 0, "total": len(workers)}
        payload = {"workers": workers, "summary": summary, "endpointVersion": record.version}
        return 200, self._check_response("ListEndpointWorkersResponse", payload)

    # -- network volumes ----------------------------------------------------------------

    def _volumes(self, method: str, body: Any, query: Any) -> tuple[int, Any]:
        self._allow(method, "GET, POST")
        if method == "GET":
            return 200, {"networkVolumes": list(self.volumes.values())}
        self._validate("CreateNetworkVolumeRequest", body)
        volume = {
            "id": self._new_id(),
            "name": body["name"],
            "size": body["size"],
            "dataCenter": body["dataCenter"],
            "type": body.get("type", "STANDARD"),
        }
        self.volumes[volume["id"]] = volume
        return 201, self._check_response("NetworkVolume", volume)

    def _volume(self, method: str, body: Any, query: Any, vid: str) -> tuple[int, Any]:
        self._allow(method, "GET, PATCH, DELETE")
        volume = self._find(self.volumes, vid)
        if method == "GET":
            return 200, self._check_response("NetworkVolume", volume)
        if method == "DELETE":
            if any(vid in e.obj["networkVolumes"] for e in self.endpoints.values()):
                raise ProblemError(400, "network volume is attached to a serverless endpoint")
            del self.volumes[vid]
            return 204, None
        self._validate("UpdateNetworkVolumeRequest", body)
        if body.get("size", volume["size"]) < volume["size"]:
            raise ProblemError(400, "network volume size cannot be reduced")
        volume.update(body)
        return 200, self._check_response("NetworkVolume", volume)

    # -- registry credentials -----------------------------------------------------------

    def _registries(self, method: str, body: Any, query: Any) -> tuple[int, Any]:
        self._allow(method, "GET, POST")
        if method == "GET":
            return 200, {"registries": list(self.registries.values())}
        self._validate("CreateRegistryRequest", body)
        if any(r["name"] == body["name"] for r in self.registries.values()):
            raise ProblemError(409, f"a registry credential named {body['name']!r} already exists")
        registry = {"id": self._new_id(), "name": body["name"]}
        self.registries[registry["id"]] = registry
        self.registry_credentials[registry["id"]] = (body["username"], body["password"])
        return 201, dict(registry)

    def _registry(self, method: str, body: Any, query: Any, rid: str) -> tuple[int, Any]:
        self._allow(method, "GET, DELETE")
        registry = self._find(self.registries, rid)
        if method == "GET":
            return 200, dict(registry)
        del self.registries[rid]
        del self.registry_credentials[rid]
        for template in self.templates.values():
            if template["registry"] == rid:
                template["registry"] = None
        return 204, None

    # -- account secrets ----------------------------------------------------------------

    def _secret_view(self, secret: dict[str, Any]) -> dict[str, Any]:
        return dict(secret)

    def _secrets(self, method: str, body: Any, query: Any) -> tuple[int, Any]:
        self._allow(method, "GET, POST")
        if method == "GET":
            wanted = query.get("name", [None])[0]
            found = [s for s in self.secrets.values() if wanted is None or s["name"] == wanted]
            return 200, {"secrets": [self._secret_view(s) for s in found]}
        self._validate("CreateSecretRequest", body)
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
        self.secret_values[secret["id"]] = body["value"]
        return 201, self._secret_view(secret)

    def _secret(self, method: str, body: Any, query: Any, sid: str) -> tuple[int, Any]:
        self._allow(method, "GET, PATCH, DELETE")
        secret = self._find(self.secrets, sid)
        if method == "GET":
            return 200, self._secret_view(secret)
        if method == "DELETE":
            del self.secrets[sid]
            del self.secret_values[sid]
            return 204, None
        self._validate("UpdateSecretRequest", body)
        if "value" in body:
            self.secret_values[sid] = body["value"]
            secret["valueLastUpdatedAt"] = self._now()
        if "description" in body:
            secret["description"] = body["description"]
        return 200, self._secret_view(secret)


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
        else:
            new[key] = value
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
        else:
            if fault is not None and fault.drop_after_commit:
                self._log(method, path, query, body, None, sizes=(len(raw), 0))
                self._drop()
                return
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
    """Start an emulator for the duration of a ``with`` block."""
    emulator = RunPodEmulator(**kwargs)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()
