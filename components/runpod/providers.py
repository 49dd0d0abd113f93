"""Dynamic providers for RunPod objects over REST v2: Secret, Registry, NetworkVolume,
Template, Endpoint.

Each provider is stateless when pickled: Pulumi stores a pickle of the instance in every
resource's `__provider` input and this module is importable, so dill pickles it *by
reference* (`components.runpod.providers.EndpointProvider` plus an empty state). Never
rename or move this module while stacks exist: delete and refresh run the provider the
state names. The API key and the HTTP session only ever live in the provider process:
`configure()` reads the key, the first API call builds the client, and `__getstate__`
keeps both out of any pickle.

Semantics shared by every kind:
- `check` validates offline (no network) and returns one `CheckFailure` per bad property;
  values still unknown in preview are skipped.
- `diff` compares the declared input keys only (old *outputs* against new *inputs*),
  never calls the network, treats unknown values as changes, and lists `replaces`.
- `create` recovers from a lost response by looking the object up by name (see
  `RunPodClient.create`). Template, secret and registry names are unique, so whatever
  carries the name is ours. Endpoint and network-volume names are not (`unique_names =
  False`): create lists the ids already carrying the name *before* its POST (one extra
  GET) and the lookup ignores them, so only an object that appeared after our POST is
  adopted; several new ones fail with their ids rather than a guess. With
  `adopt_existing=True` it takes over an existing object of that name instead of
  failing on 409 (dynamic resources cannot be `pulumi import`ed).
- `read` returns an empty id when the object is gone (refresh drops it) and rebuilds the
  inputs from the live object, so drift shows in the next diff. `env` is kept whole, not
  projected onto the declared keys, so a key added in the console is drift too; values
  that may be credentials are withheld from state (`ENV_WITHHELD`).
- `update` PATCHes only what changed and returns full outputs (pulumi#7809).
- `delete` of an object that is already gone succeeds.
- Secret values and registry passwords never appear in outputs: a salted SHA-256 marker
  stands in for them so that rotation still shows as a diff.

RunPod's own idle scale-down (`workers.max` lowered to 2 after 3 idle days, 0 after 7)
is drift like any other: refresh records the lowered value and the next `pulumi up`
PATCHes the declared maximum back, because the stack file is the source of truth for
capacity.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Final

from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    ConfigureRequest,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)
from pulumi.output import Unknown

from components.runpod.api import MissingApiKeyError, RunPodApiError, RunPodClient

__all__ = [
    "ENV_WITHHELD",
    "GPU_POOLS",
    "EndpointProvider",
    "NetworkVolumeProvider",
    "RegistryProvider",
    "SecretProvider",
    "TemplateProvider",
    "is_secret_reference",
    "secret_reference",
]

LOG = logging.getLogger("components.runpod.providers")

UNKNOWN: Final = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
"""`pulumi.runtime.rpc.UNKNOWN`, the wire form of a value not known yet."""

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
FLASHBOOT_MODES: Final = ("OFF", "FLASHBOOT", "PRIORITY_FLASHBOOT")
ENDPOINT_TYPES: Final = ("QUEUE", "LOAD_BALANCER")
SECRET_NAME: Final = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.\-/]*$")
SECRET_REFERENCE: Final = re.compile(r"^\{\{\s*RUNPOD_SECRET_([a-zA-Z_][a-zA-Z0-9_.\-/]*)\s*\}\}$")
ENV_KEY: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_LOOKING_KEY: Final = re.compile(
    r"(SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL)", re.IGNORECASE
)
PORT: Final = re.compile(r"^\d{1,5}/(http|tcp|udp)$")
DIGEST_PINNED: Final = re.compile(r"^[a-z0-9.\-]+(:\d+)?/[^@\s]+@sha256:[0-9a-f]{64}$")
CUDA_VERSION: Final = re.compile(r"^\d+\.\d+$")
CONTAINER_KEYS: Final = ("image", "args", "container_disk_gb", "ports", "env", "registry_id")


def secret_reference(name: str) -> str:
    """The env value RunPod replaces with the secret `name` when a worker or pod boots."""
    return "{{ RUNPOD_SECRET_" + name + " }}"


def is_secret_reference(value: str) -> bool:
    """True if `value` is exactly one `{{ RUNPOD_SECRET_<name> }}` reference."""
    return bool(SECRET_REFERENCE.match(value))


# -- helpers ------------------------------------------------------------------------------


def _unknown(value: Any) -> bool:
    # Check and Diff deserialize with keep_unknowns, so an unknown arrives as a
    # `pulumi.output.Unknown` instance; other paths may still see the wire string.
    if isinstance(value, Unknown):
        return True
    if isinstance(value, str):
        return value == UNKNOWN
    if isinstance(value, Mapping):
        return any(_unknown(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_unknown(v) for v in value)
    return False


def _plain(value: Any) -> Any:
    """JSON-shaped copy with integral floats back to ints (gRPC carries numbers as doubles;
    RunPod's Go handlers reject `300000.0` for an integer) and None members dropped."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _project(live: Any, declared: Any) -> Any:
    """The live value seen through the shape of the declared one (sub-keys RunPod adds
    with defaults, such as `gpu.minCudaVersion: null`, are not drift)."""
    if isinstance(declared, Mapping) and isinstance(live, Mapping):
        return {k: _project(live.get(k), v) for k, v in declared.items()}
    if isinstance(declared, list | tuple) and isinstance(live, list) and len(declared) == len(live):
        return [_project(item, want) for item, want in zip(live, declared, strict=True)]
    return _plain(live)


ENV_WITHHELD: Final = "<set outside Pulumi; value withheld>"
"""Stands in, in state, for an env value the stack does not declare (it may be a
credential pasted in the console) and for a literal under a credential-looking key."""


def _live_env(live: Any, declared: Any) -> dict[str, str] | None:
    """The whole live env, not projected onto the declared keys: a key added outside
    Pulumi stays visible, so the next diff shows it and `up` PATCHes the declared env
    back. Values are compared as the strings RunPod returns (a secret reference is its
    literal `{{ RUNPOD_SECRET_<name> }}` text, never resolved). Values that may be
    credentials never reach state: an undeclared key's value and a literal under a
    credential-looking key are replaced by `ENV_WITHHELD` (the key alone is the drift)."""
    if not isinstance(live, Mapping):
        return None if live is None else {}
    wanted = declared if isinstance(declared, Mapping) else {}
    env: dict[str, str] = {}
    for key, raw in live.items():
        name, value = str(key), "" if raw is None else str(raw)
        if is_secret_reference(value):
            env[name] = value
        elif name not in wanted or SECRET_LOOKING_KEY.search(name):
            env[name] = ENV_WITHHELD
        else:
            env[name] = value
    return env


def _salted_hash(salt: str, value: str) -> str:
    return hashlib.sha256(f"{salt}:{value}".encode()).hexdigest()


class _Failures:
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
        if _unknown(value):
            return
        if not isinstance(value, str) or not value:
            self.add(key, f"{key} is required and must be a non-empty string")
        elif pattern is not None and not pattern.match(value):
            self.add(key, f"{key} {value!r} is invalid{': ' + hint if hint else ''}")

    def int_range(self, value: Any, prop: str, low: int, high: int | None = None) -> None:
        if value is None or _unknown(value):
            return
        number = _plain(value)
        if isinstance(number, bool) or not isinstance(number, int):
            self.add(prop, f"{prop} must be an integer, got {value!r}")
        elif number < low or (high is not None and number > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            self.add(prop, f"{prop} must be {bound}, got {number}")


def _check_env(failures: _Failures, env: Any) -> None:
    if env is None or (_unknown(env) and not isinstance(env, Mapping)):
        return
    if not isinstance(env, Mapping):
        failures.add("env", "env must be a mapping of names to strings")
        return
    for key, value in env.items():
        if not ENV_KEY.match(str(key)):
            failures.add("env", f"env key {key!r} is not a valid variable name")
        if _unknown(value):
            continue
        if not isinstance(value, str):
            failures.add("env", f"env {key} must be a string, got {type(value).__name__}")
        elif SECRET_LOOKING_KEY.search(str(key)) and not is_secret_reference(value):
            failures.add(
                "env",
                f"env {key} looks like a credential: set it to a RunPod secret reference "
                f"such as {secret_reference(str(key).lower())!r}, never a literal value",
            )


def _check_container(failures: _Failures, news: Mapping[str, Any]) -> None:
    failures.require_str(
        news,
        "image",
        pattern=DIGEST_PINNED,
        hint="use a fully qualified reference pinned by digest, "
        "e.g. ghcr.io/<owner>/<image>@sha256:<64 hex>",
    )
    failures.int_range(news.get("container_disk_gb"), "container_disk_gb", 1, 4096)
    ports = news.get("ports")
    if ports is not None and not _unknown(ports):
        for port in ports:
            if not isinstance(port, str) or not PORT.match(port):
                failures.add("ports", f"port {port!r} must look like 8188/http or 22/tcp")
    _check_env(failures, news.get("env"))


# -- base provider --------------------------------------------------------------------------


class _RunPodProvider(ResourceProvider):
    """What every RunPod kind shares: key from configure(), a lazy client, the diff."""

    collection: ClassVar[str]
    list_key: ClassVar[str]
    input_keys: ClassVar[tuple[str, ...]]
    """Declared inputs compared by diff, in order."""
    replace_keys: ClassVar[frozenset[str]] = frozenset()
    delete_before_replace: ClassVar[bool] = False
    unique_names: ClassVar[bool] = True

    # Class-level defaults: instances get these attributes only inside the provider
    # process (configure / first call), never in __init__, so the pickle stays empty.
    _api_key: str | None = None
    _client_instance: RunPodClient | None = None
    _client_lock: ClassVar[threading.Lock] = threading.Lock()
    client_options: ClassVar[dict[str, Any]] = {}
    """Keyword arguments for `RunPodClient` (timeouts, retry budget); tests shorten them."""

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Nothing to restore: the key and the session are per process."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def configure(self, req: ConfigureRequest) -> None:
        key = req.config.get("runpod:apiKey")
        self._api_key = str(key) if key else os.environ.get("RUNPOD_API_KEY") or None

    def _client(self) -> RunPodClient:
        if self._client_instance is None:
            with self._client_lock:
                if self._client_instance is None:
                    key = self._api_key or os.environ.get("RUNPOD_API_KEY")
                    if not key:
                        raise MissingApiKeyError
                    self._client_instance = RunPodClient(key, **self.client_options)
        return self._client_instance

    def _path(self, object_id: str) -> str:
        return f"{self.collection}/{object_id}"

    # -- diff -------------------------------------------------------------------------

    def _changed_keys(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
        changed = []
        for key in self.input_keys:
            new = news.get(key)
            if _unknown(new) or _plain(olds.get(key)) != _plain(new):
                changed.append(key)
        return changed

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = self._changed_keys(olds, news)
        replaces = [key for key in changed if key in self.replace_keys]
        return DiffResult(
            changes=bool(changed),
            replaces=replaces,
            delete_before_replace=self.delete_before_replace if replaces else None,
        )

    # -- lookup -----------------------------------------------------------------------

    def _named(self, name: str) -> list[dict[str, Any]]:
        """Every object of this kind named `name` (one list call)."""
        return [
            item
            for item in self._client().list(self.collection, self.list_key)
            if item.get("name") == name
        ]

    def _find_by_name(self, name: str) -> dict[str, Any] | None:
        matches = self._named(name)
        return self._only(name, matches) if matches else None

    def _only(self, name: str, matches: list[dict[str, Any]]) -> dict[str, Any]:
        if len(matches) > 1:
            ids = ", ".join(str(m.get("id")) for m in matches)
            raise RuntimeError(
                f"RunPod has {len(matches)} objects named {name!r} under {self.collection} "
                f"({ids}); delete the strays in the console so the name is unambiguous"
            )
        return matches[0]

    def _find_new(self, name: str, preexisting: frozenset[str]) -> dict[str, Any] | None:
        """After a POST with no answer: the object named `name` that appeared since the
        POST, ignoring `preexisting` ids (someone else's objects of the same name)."""
        fresh = [item for item in self._named(name) if str(item.get("id")) not in preexisting]
        if len(fresh) > 1:
            ids = ", ".join(str(item.get("id")) for item in fresh)
            raise RuntimeError(
                f"RunPod POST {self.collection} lost its answer and {len(fresh)} new objects "
                f"named {name!r} appeared since ({ids}); names are not unique here, so the "
                "provider cannot tell which one it created. Delete the ones that are not "
                "yours in the RunPod console (or all of them) and run `pulumi up` again"
            )
        return fresh[0] if fresh else None

    def _create(
        self, props: Mapping[str, Any], body: dict[str, Any], *, redact: Iterable[str] = ()
    ) -> dict[str, Any]:
        name = str(props["name"])
        client = self._client()
        find_existing: Callable[[], dict[str, Any] | None]
        if self.unique_names:
            if props.get("adopt_existing"):
                existing = self._find_by_name(name)
                if existing is not None:
                    LOG.info(
                        "adopting existing RunPod object %s named %s", existing.get("id"), name
                    )
                    return self._adopt(existing, props, body)
            # The name identifies the object: after a lost answer, whatever carries it is
            # ours (a 409 would have stopped anyone else's create with this name).
            find_existing = functools.partial(self._find_by_name, name)
        else:
            # Names are not unique: list who already carries the name *before* the POST,
            # so a lost answer never adopts someone else's object. One list call, which
            # adopt_existing shares.
            same_named = self._named(name)
            if props.get("adopt_existing") and same_named:
                existing = self._only(name, same_named)
                LOG.info("adopting existing RunPod object %s named %s", existing.get("id"), name)
                return self._adopt(existing, props, body)
            preexisting = frozenset(str(item.get("id")) for item in same_named)
            find_existing = functools.partial(self._find_new, name, preexisting)
        try:
            return client.create(self.collection, body, find_existing=find_existing, redact=redact)
        except RunPodApiError as exc:
            if exc.conflict:
                raise RuntimeError(
                    f"{exc}. An object named {name!r} already exists; set adopt_existing=True "
                    "on the resource to take it over, or delete it"
                ) from None
            raise

    def _adopt(
        self, existing: dict[str, Any], props: Mapping[str, Any], body: dict[str, Any]
    ) -> dict[str, Any]:
        """Bring an adopted object to the declared state; kinds override as needed."""
        patch = {k: v for k, v in body.items() if k != "name"}
        if not patch:
            return existing
        return self._client().patch(self._path(str(existing["id"])), patch)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        if not self._client().delete(self._path(_id)):
            LOG.info("RunPod %s %s was already gone", self.collection, _id)

    def _read_inputs(self, outs: Mapping[str, Any]) -> dict[str, Any]:
        return {key: outs[key] for key in (*self.input_keys, "adopt_existing") if key in outs}


# -- Secret ----------------------------------------------------------------------------------


class SecretProvider(_RunPodProvider):
    """A RunPod account secret (`/v2/account/secrets`), referenced from env values as
    `{{ RUNPOD_SECRET_<name> }}`. The value is write-only: outputs keep a salted hash."""

    collection = "/v2/account/secrets"
    list_key = "secrets"
    input_keys = ("name", "description", "value")
    replace_keys = frozenset({"name"})

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = _Failures()
        failures.require_str(
            news, "name", pattern=SECRET_NAME, hint=f"must match {SECRET_NAME.pattern}"
        )
        name = news.get("name")
        if isinstance(name, str) and not _unknown(name):
            if len(name) > 191:
                failures.add("name", f"secret name must be at most 191 characters, got {len(name)}")
            if name.upper().startswith("RUNPOD"):
                failures.add("name", f"secret name {name!r} must not start with RUNPOD (reserved)")
        value = news.get("value")
        if not _unknown(value) and (not isinstance(value, str) or not value):
            failures.add("value", "value is required and must be a non-empty string")
        description = news.get("description")
        if (
            description is not None
            and not _unknown(description)
            and not isinstance(description, str)
        ):
            failures.add("description", "description must be a string")
        return CheckResult(news, failures.items)

    def _changed_keys(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
        changed = [k for k in super()._changed_keys(olds, news) if k != "value"]
        value = news.get("value")
        salt = olds.get("salt")
        if (
            _unknown(value)
            or not isinstance(salt, str)
            or not isinstance(value, str)
            or _salted_hash(salt, value) != olds.get("value_hash")
        ):
            changed.append("value")
        return changed

    def _outputs(
        self, news: Mapping[str, Any], live: Mapping[str, Any], salt: str
    ) -> dict[str, Any]:
        return {
            "name": live.get("name", news.get("name")),
            "description": live.get("description") or news.get("description") or "",
            "adopt_existing": bool(news.get("adopt_existing")),
            "salt": salt,
            "value_hash": _salted_hash(salt, str(news["value"])),
            "secret_id": live.get("id"),
            "value_last_updated_at": live.get("valueLastUpdatedAt"),
        }

    def _body(self, news: Mapping[str, Any]) -> dict[str, Any]:
        body = {"name": news["name"], "value": news["value"]}
        if news.get("description"):
            body["description"] = news["description"]
        return body

    def _adopt(
        self, existing: dict[str, Any], props: Mapping[str, Any], body: dict[str, Any]
    ) -> dict[str, Any]:
        patch = {k: v for k, v in body.items() if k != "name"}
        return self._client().patch(
            self._path(str(existing["id"])), patch, redact=[str(props["value"])]
        )

    def _find_by_name(self, name: str) -> dict[str, Any] | None:
        found = self._client().list(self.collection, self.list_key, params={"name": name})
        return next((s for s in found if s.get("name") == name), None)

    def create(self, props: dict[str, Any]) -> CreateResult:
        value = str(props["value"])
        live = self._create(props, self._body(props), redact=[value])
        return CreateResult(str(live["id"]), self._outputs(props, live, secrets.token_hex(16)))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        changed = self._changed_keys(olds, news)
        patch: dict[str, Any] = {}
        if "value" in changed:
            patch["value"] = news["value"]
        if "description" in changed:
            patch["description"] = news.get("description") or ""
        live = {
            "id": _id,
            "name": olds.get("name"),
            "description": olds.get("description"),
            "valueLastUpdatedAt": olds.get("value_last_updated_at"),
        }
        if patch:
            live |= self._client().patch(self._path(_id), patch, redact=[str(news["value"])])
        salt = olds.get("salt")
        return UpdateResult(
            self._outputs(news, live, salt if isinstance(salt, str) else secrets.token_hex(16))
        )

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        live = self._client().get(self._path(id_))
        if live is None:
            return ReadResult("", {})
        outs = dict(props)
        outs["name"] = live.get("name")
        outs["description"] = live.get("description") or ""
        outs["secret_id"] = live.get("id")
        if live.get("valueLastUpdatedAt") != props.get("value_last_updated_at"):
            # Rotated outside Pulumi: the stored marker no longer describes the value,
            # so the next diff shows `value` and `up` writes the declared one back.
            outs["value_hash"] = "changed-outside-pulumi"
        outs["value_last_updated_at"] = live.get("valueLastUpdatedAt")
        inputs: dict[str, Any] = {
            k: outs[k] for k in ("name", "description", "adopt_existing") if k in outs
        }
        return ReadResult(id_, outs, inputs)


# -- Registry --------------------------------------------------------------------------------


class RegistryProvider(_RunPodProvider):
    """A container registry credential (`/v2/registries`). v2 cannot update one, so every
    change replaces it, deleting first because names are unique."""

    collection = "/v2/registries"
    list_key = "registries"
    input_keys = ("name", "username", "password")
    replace_keys = frozenset(input_keys)
    delete_before_replace = True

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = _Failures()
        for key in ("name", "username", "password"):
            failures.require_str(news, key)
        return CheckResult(news, failures.items)

    def _changed_keys(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
        changed = [k for k in super()._changed_keys(olds, news) if k != "password"]
        password, salt = news.get("password"), olds.get("salt")
        if (
            _unknown(password)
            or not isinstance(salt, str)
            or _salted_hash(salt, str(password)) != olds.get("password_hash")
        ):
            changed.append("password")
        return changed

    def _outputs(self, news: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
        salt = secrets.token_hex(16)
        return {
            "name": live.get("name", news["name"]),
            "username": news["username"],
            "adopt_existing": bool(news.get("adopt_existing")),
            "salt": salt,
            "password_hash": _salted_hash(salt, str(news["password"])),
        }

    def _adopt(
        self, existing: dict[str, Any], props: Mapping[str, Any], body: dict[str, Any]
    ) -> dict[str, Any]:
        # The stored password cannot be read or updated: recreate it with the declared one.
        self._client().delete(self._path(str(existing["id"])))
        return self._client().create(
            self.collection,
            body,
            find_existing=lambda: self._find_by_name(str(props["name"])),
            redact=[str(props["password"])],
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        body = {k: props[k] for k in ("name", "username", "password")}
        live = self._create(props, body, redact=[str(props["password"])])
        return CreateResult(str(live["id"]), self._outputs(props, live))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        # Every declared key replaces; only adopt_existing can change in place.
        outs = dict(olds)
        outs["adopt_existing"] = bool(news.get("adopt_existing"))
        return UpdateResult(outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        live = self._client().get(self._path(id_))
        if live is None:
            return ReadResult("", {})
        outs = {**props, "name": live.get("name")}
        inputs: dict[str, Any] = {
            k: outs[k] for k in ("name", "username", "adopt_existing") if k in outs
        }
        return ReadResult(id_, outs, inputs)


# -- NetworkVolume ---------------------------------------------------------------------------


class NetworkVolumeProvider(_RunPodProvider):
    """A network volume (`/v2/network-volumes`): grows in place, moves by replacement."""

    collection = "/v2/network-volumes"
    list_key = "networkVolumes"
    input_keys = ("name", "size_gb", "data_center_id", "volume_type")
    replace_keys = frozenset({"data_center_id", "volume_type"})
    unique_names = False
    _api_names: ClassVar[dict[str, str]] = {
        "name": "name",
        "size_gb": "size",
        "data_center_id": "dataCenter",
        "volume_type": "type",
    }

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = _Failures()
        failures.require_str(news, "name")
        failures.require_str(news, "data_center_id")
        failures.int_range(news.get("size_gb"), "size_gb", 10, 4096)
        volume_type = news.get("volume_type")
        if (
            volume_type is not None
            and not _unknown(volume_type)
            and volume_type not in ("STANDARD", "HIGH_PERFORMANCE")
        ):
            failures.add(
                "volume_type",
                f"volume_type must be STANDARD or HIGH_PERFORMANCE, got {volume_type!r}",
            )
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
        return CheckResult(news, failures.items)

    def _body(self, news: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
        return {self._api_names[k]: _plain(news[k]) for k in keys if news.get(k) is not None}

    def _outputs(self, news: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
        outs = {key: _plain(live.get(api)) for key, api in self._api_names.items()}
        if news.get("volume_type") is None:
            outs["volume_type"] = None
        outs["adopt_existing"] = bool(news.get("adopt_existing"))
        outs["actual_volume_type"] = live.get("type")
        return outs

    def _adopt(
        self, existing: dict[str, Any], props: Mapping[str, Any], body: dict[str, Any]
    ) -> dict[str, Any]:
        if existing.get("dataCenter") != props.get("data_center_id"):
            raise RuntimeError(
                f"cannot adopt network volume {existing.get('id')}: it lives in "
                f"{existing.get('dataCenter')}, not {props.get('data_center_id')}"
            )
        if int(existing.get("size", 0)) < int(props["size_gb"]):
            return self._client().patch(
                self._path(str(existing["id"])), {"size": int(props["size_gb"])}
            )
        return existing

    def create(self, props: dict[str, Any]) -> CreateResult:
        live = self._create(props, self._body(props, self.input_keys))
        return CreateResult(str(live["id"]), self._outputs(props, live))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        changed = [k for k in self._changed_keys(olds, news) if k in ("name", "size_gb")]
        body = self._body(news, changed)
        live = (
            self._client().patch(self._path(_id), body)
            if body
            else self._client().get(self._path(_id)) or {}
        )
        return UpdateResult(self._outputs(news, live))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        live = self._client().get(self._path(id_))
        if live is None:
            return ReadResult("", {})
        outs = self._outputs(props, live)
        return ReadResult(id_, outs, self._read_inputs(outs))


# -- container-config kinds: Template and Endpoint --------------------------------------------

_CONTAINER_API: Final = {
    "name": "name",
    "image": "image",
    "args": "args",
    "container_disk_gb": "disk",
    "ports": "ports",
    "env": "env",
    "registry_id": "registry",
}


class _ContainerProvider(_RunPodProvider):
    api_names: ClassVar[dict[str, str]]

    def _body(self, news: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for key in keys:
            api = self.api_names.get(key)
            if api is None:
                continue
            value = news.get(key)
            if value is None:
                if key == "registry_id":
                    body["registry"] = None  # detach a credential explicitly
                continue
            body[api] = _plain(value)
        return body

    def _outputs(self, news: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
        outs: dict[str, Any] = {}
        for key in self.input_keys:
            api = self.api_names.get(key)
            declared = news.get(key)
            if api is None:
                outs[key] = _plain(declared)
            elif declared is None:
                outs[key] = None
            elif key == "env":
                outs[key] = _live_env(live.get(api), declared)
            else:
                outs[key] = _project(live.get(api), _plain(declared))
        outs["adopt_existing"] = bool(news.get("adopt_existing"))
        return outs

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        live = self._client().get(self._path(id_))
        if live is None:
            return ReadResult("", {})
        outs = {**props, **self._outputs(props, live), **self._extra_outputs(live)}
        # Keys the stack leaves unset but RunPod now holds (e.g. a registry attached in
        # the console) show as drift too.
        for key in self.input_keys:
            api = self.api_names.get(key)
            if (
                props.get(key) is None
                and api is not None
                and live.get(api) not in (None, "", [], {})
            ):
                value = live.get(api)
                outs[key] = _live_env(value, None) if key == "env" else _plain(value)
        return ReadResult(id_, outs, self._read_inputs(outs))

    def _extra_outputs(self, live: Mapping[str, Any]) -> dict[str, Any]:
        return {}


class TemplateProvider(_ContainerProvider):
    """A pod or serverless template (`/v2/templates`); every field updates in place."""

    collection = "/v2/templates"
    list_key = "templates"
    input_keys = (
        "name",
        *CONTAINER_KEYS,
        "serverless",
        "category",
        "start_ssh",
        "start_jupyter",
        "allowed_cuda_versions",
    )
    api_names: ClassVar[dict[str, str]] = {
        **_CONTAINER_API,
        "serverless": "serverless",
        "category": "category",
        "start_ssh": "startSsh",
        "start_jupyter": "startJupyter",
        "allowed_cuda_versions": "allowedCudaVersions",
    }
    in_use_budget_s: ClassVar[float] = 150.0
    """RunPod keeps a template 'in use' for up to 2 minutes after its last use."""
    in_use_poll_s: ClassVar[float] = 5.0

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = _Failures()
        failures.require_str(news, "name")
        _check_container(failures, news)
        category = news.get("category")
        if (
            category is not None
            and not _unknown(category)
            and category not in ("NVIDIA", "AMD", "CPU")
        ):
            failures.add("category", f"category must be NVIDIA, AMD or CPU, got {category!r}")
        for version in news.get("allowed_cuda_versions") or ():
            if not _unknown(version) and not CUDA_VERSION.match(str(version)):
                failures.add(
                    "allowed_cuda_versions", f"CUDA version {version!r} must look like 12.8"
                )
        return CheckResult(news, failures.items)

    def create(self, props: dict[str, Any]) -> CreateResult:
        live = self._create(props, self._body(props, self.input_keys))
        return CreateResult(str(live["id"]), self._outputs(props, live))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        body = self._body(news, self._changed_keys(olds, news))
        live = (
            self._client().patch(self._path(_id), body)
            if body
            else self._client().get(self._path(_id)) or {}
        )
        return UpdateResult(self._outputs(news, live))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        deadline = time.monotonic() + self.in_use_budget_s
        while True:
            try:
                super().delete(_id, _props)
            except RunPodApiError as exc:
                in_use = exc.status == 400 and "in use" in str(exc).lower()
                if not in_use or time.monotonic() + self.in_use_poll_s > deadline:
                    raise
                LOG.info("template %s still in use; retrying the delete", _id)
                time.sleep(self.in_use_poll_s)
            else:
                return


class EndpointProvider(_ContainerProvider):
    """A serverless endpoint (`/v2/serverless`) with its container config inline.

    Replaced when `type` or the compute family (gpu vs cpu) changes; everything else is
    PATCHed. With `wait_for_rollout_s > 0`, create and container-affecting updates return
    only once the new release runs on every worker (or fail after that many seconds), so
    `pulumi up` ends when the new image serves.
    """

    collection = "/v2/serverless"
    list_key = "endpoints"
    unique_names = False
    input_keys = (
        "name",
        "type",
        *CONTAINER_KEYS,
        "gpu",
        "cpu",
        "workers",
        "scaling",
        "data_center_ids",
        "network_volume_ids",
        "timeout_ms",
        "flashboot",
        "wait_for_rollout_s",
    )
    api_names: ClassVar[dict[str, str]] = {
        **_CONTAINER_API,
        "type": "type",
        "gpu": "gpu",
        "cpu": "cpu",
        "workers": "workers",
        "scaling": "scaling",
        "data_center_ids": "dataCenterIds",
        "network_volume_ids": "networkVolumes",
        "timeout_ms": "timeout",
        "flashboot": "flashboot",
    }
    rollout_keys: ClassVar[frozenset[str]] = frozenset(
        {*CONTAINER_KEYS, "gpu", "cpu", "network_volume_ids", "data_center_ids"}
    )
    rollout_poll_s: ClassVar[float] = 5.0

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = _Failures()
        failures.require_str(news, "name")
        endpoint_type = news.get("type")
        if not _unknown(endpoint_type) and endpoint_type not in ENDPOINT_TYPES:
            failures.add("type", f"type must be QUEUE or LOAD_BALANCER, got {endpoint_type!r}")
        _check_container(failures, news)
        self._check_compute(failures, news.get("gpu"), news.get("cpu"))
        self._check_scaling(failures, news)
        failures.int_range(news.get("timeout_ms"), "timeout_ms", 1_000, 24 * 3_600_000)
        failures.int_range(news.get("wait_for_rollout_s"), "wait_for_rollout_s", 0, 7_200)
        flashboot = news.get("flashboot")
        if flashboot is not None and not _unknown(flashboot) and flashboot not in FLASHBOOT_MODES:
            failures.add(
                "flashboot",
                f"flashboot must be one of {', '.join(FLASHBOOT_MODES)}, got {flashboot!r}",
            )
        return CheckResult(news, failures.items)

    @staticmethod
    def _check_compute(failures: _Failures, gpu: Any, cpu: Any) -> None:
        if (gpu is None) == (cpu is None):
            failures.add("gpu", "set exactly one of gpu or cpu")
            return
        if gpu is None:
            EndpointProvider._check_cpu(failures, cpu)
            return
        if _unknown(gpu) and not isinstance(gpu, Mapping):
            return
        pools = gpu.get("pools")
        if not _unknown(pools):
            if not pools:
                failures.add("gpu", "gpu.pools needs at least one pool, e.g. ['ADA_24']")
            for pool in pools or ():
                if not _unknown(pool) and pool not in GPU_POOLS:
                    failures.add(
                        "gpu",
                        f"gpu pool {pool!r} is unknown; choose from {', '.join(sorted(GPU_POOLS))}",
                    )
        failures.int_range(gpu.get("count"), "gpu.count", 1, 8)
        allowed, minimum = gpu.get("allowedCudaVersions"), gpu.get("minCudaVersion")
        if allowed and minimum:
            failures.add(
                "gpu", "gpu.allowedCudaVersions and gpu.minCudaVersion are mutually exclusive"
            )

    @staticmethod
    def _check_cpu(failures: _Failures, cpu: Any) -> None:
        if _unknown(cpu) and not isinstance(cpu, list | tuple):
            return
        if not isinstance(cpu, list | tuple) or not cpu:
            failures.add("cpu", "cpu needs at least one {id, vcpuCount} flavor, e.g. cpu5c x 4")
            return
        for flavor in cpu:
            if not isinstance(flavor, Mapping) or not flavor.get("id"):
                failures.add("cpu", f"cpu flavor {flavor!r} needs an id such as 'cpu5c'")
                continue
            count = _plain(flavor.get("vcpuCount"))
            if not _unknown(count) and (
                not isinstance(count, int) or count < 2 or count & (count - 1)
            ):
                failures.add("cpu", f"cpu vcpuCount must be a power of two >= 2, got {count!r}")

    @staticmethod
    def _check_scaling(failures: _Failures, news: Mapping[str, Any]) -> None:
        workers = news.get("workers")
        if isinstance(workers, Mapping):
            failures.int_range(workers.get("min"), "workers.min", 0)
            failures.int_range(workers.get("max"), "workers.max", 0)
            failures.int_range(workers.get("idleTimeout"), "workers.idleTimeout", 1, 3600)
            low, high = workers.get("min"), workers.get("max")
            if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
                failures.add(
                    "workers", f"workers.min ({int(low)}) must not exceed workers.max ({int(high)})"
                )
        scaling = news.get("scaling")
        if scaling is None:
            failures.add(
                "scaling",
                "scaling is required: {type: QUEUE_DELAY, queueDelay} or "
                "{type: REQUEST_COUNT, requestCount}",
            )
            return
        if _unknown(scaling) and not isinstance(scaling, Mapping):
            return
        kind = scaling.get("type")
        if kind == "QUEUE_DELAY":
            delay = scaling.get("queueDelay")
            if not _unknown(delay) and (not isinstance(delay, int | float) or delay < 0.5):
                failures.add("scaling", f"scaling.queueDelay must be >= 0.5 seconds, got {delay!r}")
            if news.get("type") == "LOAD_BALANCER":
                failures.add("scaling", "LOAD_BALANCER endpoints scale on REQUEST_COUNT only")
            extra = set(scaling) - {"type", "queueDelay"}
        elif kind == "REQUEST_COUNT":
            failures.int_range(scaling.get("requestCount"), "scaling.requestCount", 1)
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
            extra = set(scaling) - {"type", "requestCount"}
        else:
            failures.add(
                "scaling", f"scaling.type must be QUEUE_DELAY or REQUEST_COUNT, got {kind!r}"
            )
            return
        if extra:
            failures.add("scaling", f"scaling has fields of the other variant: {sorted(extra)}")

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = self._changed_keys(olds, news)
        replaces = [k for k in changed if k == "type"]
        old_family = "gpu" if olds.get("gpu") is not None else "cpu"
        new_gpu = news.get("gpu")
        new_family = "gpu" if new_gpu is not None else "cpu"
        if not _unknown(new_gpu) and old_family != new_family:
            replaces.append(new_family)
        return DiffResult(changes=bool(changed), replaces=replaces)

    def _extra_outputs(self, live: Mapping[str, Any]) -> dict[str, Any]:
        return {"created_at": live.get("createdAt")}

    def _adopt(
        self, existing: dict[str, Any], props: Mapping[str, Any], body: dict[str, Any]
    ) -> dict[str, Any]:
        if existing.get("type") != props.get("type"):
            raise RuntimeError(
                f"cannot adopt endpoint {existing.get('id')}: its type is {existing.get('type')}, "
                f"the stack declares {props.get('type')}"
            )
        patch = {k: v for k, v in body.items() if k not in ("name", "type")}
        return self._client().patch(self._path(str(existing["id"])), patch)

    def create(self, props: dict[str, Any]) -> CreateResult:
        live = self._create(props, self._body(props, self.input_keys))
        outs = {**self._outputs(props, live), **self._extra_outputs(live)}
        self._wait_for_rollout(str(live["id"]), props)
        return CreateResult(str(live["id"]), outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        changed = self._changed_keys(olds, news)
        body = self._body(news, changed)
        if "gpu" in body:
            body["gpu"] = self._gpu_patch(olds.get("gpu"), body["gpu"])
        if body:
            live = self._client().patch(self._path(_id), body)
        else:
            live = self._client().get(self._path(_id)) or {}
        outs = {**self._outputs(news, live), **self._extra_outputs(live)}
        if self.rollout_keys & set(changed):
            self._wait_for_rollout(_id, news)
        return UpdateResult(outs)

    @staticmethod
    def _gpu_patch(old: Any, new: dict[str, Any]) -> dict[str, Any]:
        """RunPod's gpu PATCH is partial: restate pools with their exclusions and clear
        CUDA constraints the stack dropped."""
        patch = dict(new)
        patch.setdefault("allowedCudaVersions", [])
        if isinstance(old, Mapping) and old.get("minCudaVersion") and "minCudaVersion" not in new:
            patch["minCudaVersion"] = ""
        return patch

    def _wait_for_rollout(self, endpoint_id: str, news: Mapping[str, Any]) -> None:
        budget = int(_plain(news.get("wait_for_rollout_s") or 0))
        if budget <= 0:
            return
        deadline = time.monotonic() + budget
        path = f"{self._path(endpoint_id)}/releases"
        while True:
            body = self._client().request("GET", path) or {}
            rollout = body.get("rollout") or {}
            done = not rollout.get("inProgress") and rollout.get(
                "workersOnLatest", 0
            ) >= rollout.get("workersTotal", 0)
            if done:
                return
            if time.monotonic() + self.rollout_poll_s > deadline:
                raise RuntimeError(
                    f"endpoint {endpoint_id}: the new release reached "
                    f"{rollout.get('workersOnLatest')}/{rollout.get('workersTotal')} workers "
                    f"within {budget} s; the change is applied and will finish rolling out. "
                    "Check the endpoint's workers in the RunPod console, then run `pulumi up` again"
                )
            time.sleep(self.rollout_poll_s)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # Scale to zero first so no worker is mid-job when the endpoint disappears.
        try:
            self._client().patch(self._path(_id), {"workers": {"min": 0, "max": 0}})
        except RunPodApiError as exc:
            if not exc.not_found:
                raise
            return
        super().delete(_id, _props)
