"""Dynamic providers for RunPod objects over REST v2: Secret, Registry, NetworkVolume,
Template, Endpoint, and EndpointRollout (the wait for an endpoint's release).

Each provider is stateless when pickled: Pulumi stores a pickle of the instance in every
resource's `__provider` input and this module is importable, so dill pickles it *by
reference* (`components.runpod.providers.EndpointProvider` plus an empty state). Never
rename or move this module or its classes while stacks exist: delete and refresh run the
provider the state names. The API key and the HTTP session only ever live in the
provider process: `configure()` reads the key, the first API call builds the client, and
`__getstate__` keeps both out of any pickle.

Semantics shared by every kind:
- `check` validates offline (no network) and returns one `CheckFailure` per bad property:
  the pure checks live in `checks.py`, with bounds and enums from `limits.py` (shared
  with the stack config); values still unknown in preview are skipped.
- `diff` compares the declared input keys only (old *outputs* against new *inputs*),
  never calls the network, treats unknown values as changes, and lists `replaces`. Lists
  RunPod treats as sets (GPU pools, excluded GPU types, CUDA versions, data centers,
  network volumes) compare as sets: RunPod reads them back in its own order, and a
  reorder is no diff, no PATCH and no new release. What RunPod fills in (a volume's tier)
  is no diff either.
- `create` never takes over an object that existed before its POST. It lists who
  carries the name first (one GET): for kinds with account-unique names (secret,
  template) an existing object fails the `up` with a message naming it and the adopt
  option; with `adopt_existing=True` that object is taken over and the declared state
  written into it (dynamic resources cannot be `pulumi import`ed). A lost answer is
  recovered by looking the name up again, ignoring the ids seen before the POST, so only
  an object that appeared after it is adopted; several new ones fail with their ids
  rather than a guess. Registry credentials carry a generation suffix in their RunPod
  name, so a new one never collides with the one it replaces.
- `read` returns an empty id when the object is gone (refresh drops it) and rebuilds the
  inputs from the live object, so drift shows in the next diff. `env` is kept whole, not
  projected onto the declared keys, so a key added in the console is drift too; values
  that may be credentials are withheld from state (`ENV_WITHHELD`).
- `update` PATCHes only what changed and returns full outputs (pulumi#7809).
- `delete` of an object that is already gone succeeds. A delete RunPod refuses because
  the object is still in use is retried within a bound (`in_use_budget_s`); then a
  template or a volume fails naming its users, and a registry credential is left in
  place with a warning naming the pods (a rotation never fails the `up`). That retry and
  the rollout wait are one policy, `_polling` (tenacity); the HTTP-level retries are
  the client's (`api.py` says why those differ).
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
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Final

import tenacity
from pulumi.dynamic import (
    CheckResult,
    ConfigureRequest,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from components.runpod import checks
from components.runpod.api import MissingApiKeyError, RunPodApiError, RunPodClient
from components.runpod.checks import SECRET_LOOKING_KEY, is_secret_reference, is_unknown, plain

__all__ = [
    "ENV_WITHHELD",
    "EndpointProvider",
    "EndpointRolloutProvider",
    "NetworkVolumeProvider",
    "ObjectInUseError",
    "RegistryProvider",
    "SecretProvider",
    "TemplateProvider",
]

LOG = logging.getLogger("components.runpod.providers")

CONTAINER_KEYS: Final = ("image", "args", "container_disk_gb", "ports", "env", "registry_id")


# -- helpers ------------------------------------------------------------------------------


def _project(live: Any, declared: Any) -> Any:
    """The live value seen through the shape of the declared one (sub-keys RunPod adds
    with defaults, such as `gpu.minCudaVersion: null`, are not drift)."""
    if isinstance(declared, Mapping) and isinstance(live, Mapping):
        return {k: _project(live.get(k), v) for k, v in declared.items()}
    if isinstance(declared, list | tuple) and isinstance(live, list) and len(declared) == len(live):
        return [_project(item, want) for item, want in zip(live, declared, strict=True)]
    return plain(live)


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


# -- base provider --------------------------------------------------------------------------


class ObjectInUseError(RuntimeError):
    """RunPod kept refusing a delete because the object is still in use."""

    def __init__(self, message: str, *, users: tuple[str, ...]) -> None:
        super().__init__(message)
        self.users = users


def _in_use(exc: BaseException) -> bool:
    """A refusal because something still uses the object (400/409 with that reason)."""
    if not isinstance(exc, RunPodApiError):
        return False
    reason = str(exc).lower()
    return exc.status in (400, 409) and ("in use" in reason or "attached" in reason)


def _polling(poll_s: float, budget_s: float, **policy: Any) -> tenacity.Retrying:
    """The policy of both waits here (a delete refused while in use, a release rolling
    out): attempts `poll_s` apart, and none that would start after `budget_s` from now.
    `policy` says what calls for another attempt. Clock and sleep are this module's `time`,
    read when the wait starts, so one clock drives the wait and its bound (a test's fake
    one included)."""
    deadline = time.monotonic() + budget_s
    return tenacity.Retrying(
        wait=tenacity.wait_fixed(poll_s),
        stop=lambda _state: time.monotonic() + poll_s > deadline,
        sleep=time.sleep,
        reraise=True,
        **policy,
    )


ADOPT_HINT: Final = (
    "set adopt_existing=True on the resource to take it over (stack config: "
    "`pulumi config set runpod.adoptExisting true --stack <stack>`); Pulumi then writes "
    "the declared value into it. Or delete or rename it in the RunPod console"
)


class _RunPodProvider(ResourceProvider):
    """What every RunPod kind shares: key from configure(), a lazy client, the diff."""

    collection: ClassVar[str]
    list_key: ClassVar[str]
    kind: ClassVar[str]
    """What messages call one object of this kind."""
    input_keys: ClassVar[tuple[str, ...]]
    """Declared inputs compared by diff, in order."""
    set_keys: ClassVar[frozenset[str]] = frozenset()
    """Inputs holding lists RunPod treats as sets (and reads back in its own order)."""
    replace_keys: ClassVar[frozenset[str]] = frozenset()
    """Inputs whose change replaces the object (every other change is PATCHed)."""
    delete_before_replace: ClassVar[bool] = False
    hashed_key: ClassVar[str | None] = None
    """The write-only input (a secret's value, a password): state keeps only `salt` and
    `<key>_hash`, a salted SHA-256 that still shows a new value as a change."""
    unique_names: ClassVar[bool] = True
    fresh_names: ClassVar[bool] = False
    """The RunPod name is new at every create (a random generation suffix): nothing can
    carry it before the POST, so the list that guards against adoption is skipped."""
    in_use_budget_s: ClassVar[float] = 150.0
    """How long a delete refused as "in use" is retried (RunPod keeps a template in use
    for up to 2 minutes after its last use)."""
    in_use_poll_s: ClassVar[float] = 5.0

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

    def _comparable(self, key: str, value: Any) -> Any:
        """The value as RunPod compares it: lists it treats as sets are sorted."""
        value = plain(value)
        if key in self.set_keys and isinstance(value, list):
            return sorted(value, key=repr)
        return value

    def _changed_keys(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
        """Declared inputs whose new value differs from the stored output (an unknown one
        always does; the hashed key is compared through its salted hash)."""
        changed = []
        for key in self.input_keys:
            new = news.get(key)
            if key == self.hashed_key:
                same = self._hash_matches(olds, new)
            else:
                old = olds.get(key)
                same = not is_unknown(new) and self._comparable(key, old) == self._comparable(
                    key, new
                )
            if not same:
                changed.append(key)
        return changed

    def _replaces(
        self, olds: Mapping[str, Any], news: Mapping[str, Any], changed: list[str]
    ) -> list[str]:
        """The changes that replace the object: `replace_keys`; kinds add their own."""
        return [key for key in changed if key in self.replace_keys]

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = self._changed_keys(olds, news)
        replaces = self._replaces(olds, news, changed)
        return DiffResult(
            changes=bool(changed),
            replaces=replaces,
            delete_before_replace=self.delete_before_replace if replaces else None,
        )

    # -- the hashed input ----------------------------------------------------------------

    def _hash_matches(self, olds: Mapping[str, Any], value: Any) -> bool:
        salt = olds.get("salt")
        return (
            not is_unknown(value)
            and isinstance(salt, str)
            and isinstance(value, str)
            and _salted_hash(salt, value) == olds.get(f"{self.hashed_key}_hash")
        )

    def _hash_outputs(self, news: Mapping[str, Any], olds: Mapping[str, Any]) -> dict[str, Any]:
        """`salt` (kept from `olds`, else new) and the hash of the declared value."""
        key, salt = str(self.hashed_key), olds.get("salt")
        if not isinstance(salt, str):
            salt = secrets.token_hex(16)
        return {"salt": salt, f"{key}_hash": _salted_hash(salt, str(news[key]))}

    def _redacted(self, news: Mapping[str, Any]) -> list[str]:
        """Values no error message may show: the hashed input's."""
        return [str(news[self.hashed_key])] if self.hashed_key else []

    # -- bodies and state ----------------------------------------------------------------

    def _body(self, news: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
        """The API body writing `keys` of `news`: every input key to create, the changed
        ones to update."""
        raise NotImplementedError

    def _update_body(
        self, olds: Mapping[str, Any], news: Mapping[str, Any], keys: Iterable[str]
    ) -> dict[str, Any]:
        """The PATCH body for the changed `keys`; kinds restate what a partial update needs."""
        return self._body(news, keys)

    def _outputs(
        self, news: Mapping[str, Any], live: Mapping[str, Any], olds: Mapping[str, Any]
    ) -> dict[str, Any]:
        """State after a write: the declared inputs as `live` (RunPod's object) holds them
        and the computed outputs; `olds` is the state before (`{}` on create)."""
        raise NotImplementedError

    def create(self, props: dict[str, Any]) -> CreateResult:
        body = self._body(props, self.input_keys)
        live = self._create(props, body, redact=self._redacted(props))
        return CreateResult(str(live["id"]), self._outputs(props, live, {}))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """PATCH what changed (replacing changes never reach an update), else read back."""
        changed = [k for k in self._changed_keys(olds, news) if k not in self.replace_keys]
        body = self._update_body(olds, news, changed)
        if body:
            live = self._client().patch(self._path(_id), body, redact=self._redacted(news))
        else:
            live = self._client().get(self._path(_id)) or {}
        return UpdateResult(self._outputs(news, live, olds))

    # -- lookup -----------------------------------------------------------------------

    def _named(self, name: str) -> list[dict[str, Any]]:
        """Every object of this kind named exactly `name` (one list call)."""
        return [
            item
            for item in self._client().list(self.collection, self.list_key)
            if item.get("name") == name
        ]

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
        POST, ignoring `preexisting` ids (objects that carried the name before it)."""
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

    def _taken(self, name: str, existing: Iterable[Mapping[str, Any]]) -> RuntimeError:
        ids = ", ".join(str(item.get("id")) for item in existing)
        return RuntimeError(
            f"RunPod already has a {self.kind} named {name!r} (id {ids}) that this stack did "
            f"not create, so the provider will not take it over silently: {ADOPT_HINT}"
        )

    def _create(
        self, props: Mapping[str, Any], body: dict[str, Any], *, redact: Iterable[str] = ()
    ) -> dict[str, Any]:
        """POST `body` without adopting anything that existed before the POST.

        One list call first: who carries the name already. With `adopt_existing` that
        object is taken over (`_adopt` writes the declared state into it). Otherwise a
        unique-named kind fails naming it, and for every kind a lost answer adopts only
        an object that appeared after the POST.
        """
        name = str(body.get("name", props["name"]))
        same_named = [] if self.fresh_names else self._named(name)
        if same_named and props.get("adopt_existing"):
            existing = self._only(name, same_named)
            LOG.info("adopting existing RunPod %s %s named %s", self.kind, existing["id"], name)
            return self._adopt(existing, props, body)
        if same_named and self.unique_names:
            raise self._taken(name, same_named)
        preexisting = frozenset(str(item.get("id")) for item in same_named)
        find_existing = functools.partial(self._find_new, name, preexisting)
        try:
            return self._client().create(
                self.collection, body, find_existing=find_existing, redact=redact
            )
        except RunPodApiError as exc:
            # Someone took the name between our list and our POST (409, or the 400 some
            # kinds answer for a duplicate name: which one is unconfirmed).
            if self.unique_names and (exc.conflict or exc.status == 400):
                raced = [item for item in self._named(name) if item["id"] not in preexisting]
                if raced:
                    raise self._taken(name, raced) from None
            raise

    def _adoptable(self, existing: Mapping[str, Any], what: str, live: Any, declared: Any) -> None:
        """Refuse to adopt an object whose `what` (a field no update can change) differs."""
        if live != declared:
            raise RuntimeError(
                f"cannot adopt {self.kind} {existing.get('id')}: its {what} is {live}, "
                f"the stack declares {declared}"
            )

    def _adopt(
        self, existing: dict[str, Any], props: Mapping[str, Any], body: dict[str, Any]
    ) -> dict[str, Any]:
        """Bring an adopted object to the declared state; kinds override as needed."""
        patch = {k: v for k, v in body.items() if k != "name"}
        if not patch:
            return existing
        return self._client().patch(self._path(str(existing["id"])), patch)

    # -- delete -----------------------------------------------------------------------

    def _users(self, object_id: str) -> tuple[str, ...]:
        """Who still uses an object, as `endpoint <id> (<name>)` / `pod <id> (<name>)`."""
        return ()

    def _delete_when_free(self, object_id: str) -> None:
        """DELETE, retried while RunPod refuses it as in use, within `in_use_budget_s`.

        Raises `ObjectInUseError` naming the users (when they can be listed) and RunPod's
        reason once the bound is spent.
        """
        retrying = _polling(
            self.in_use_poll_s,
            self.in_use_budget_s,
            retry=tenacity.retry_if_exception(_in_use),
            before_sleep=lambda _state: LOG.info(
                "RunPod %s %s still in use; retrying the delete", self.kind, object_id
            ),
        )
        try:
            deleted = retrying(self._client().delete, self._path(object_id))
        except RunPodApiError as exc:
            if not _in_use(exc):
                raise
            users = self._users(object_id)
            held = f" by {', '.join(users)}" if users else ""
            raise ObjectInUseError(
                f"RunPod {self.kind} {object_id} is still in use{held} after "
                f"{self.in_use_budget_s:g} s of retries ({exc})",
                users=users,
            ) from None
        if not deleted:
            LOG.info("RunPod %s %s was already gone", self.kind, object_id)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        self._delete_when_free(_id)

    def _read_inputs(self, outs: Mapping[str, Any]) -> dict[str, Any]:
        return {key: outs[key] for key in (*self.input_keys, "adopt_existing") if key in outs}

    # -- who uses what (for in-use messages) -------------------------------------------

    def _endpoints_using(self, predicate: Callable[[Mapping[str, Any]], bool]) -> list[str]:
        endpoints = self._client().list("/v2/serverless", "endpoints")
        return [f"endpoint {e.get('id')} ({e.get('name')})" for e in endpoints if predicate(e)]

    def _pods_using(self, predicate: Callable[[Mapping[str, Any]], bool]) -> list[str]:
        pods = self._client().list("/v2/pods", "pods")
        return [f"pod {p.get('id')} ({p.get('name')})" for p in pods if predicate(p)]


# -- Secret ----------------------------------------------------------------------------------


class SecretProvider(_RunPodProvider):
    """A RunPod account secret (`/v2/account/secrets`), referenced from env values as
    `{{ RUNPOD_SECRET_<name> }}`. The value is write-only: outputs keep a salted hash."""

    collection = "/v2/account/secrets"
    list_key = "secrets"
    kind = "secret"
    input_keys = ("name", "description", "value")
    replace_keys = frozenset({"name"})
    hashed_key = "value"

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, checks.secret(news))

    def _outputs(
        self, news: Mapping[str, Any], live: Mapping[str, Any], olds: Mapping[str, Any]
    ) -> dict[str, Any]:
        return {
            "name": live.get("name", news.get("name")),
            "description": live.get("description") or news.get("description") or "",
            "adopt_existing": bool(news.get("adopt_existing")),
            **self._hash_outputs(news, olds),
            "secret_id": live.get("id"),
            "value_last_updated_at": live.get("valueLastUpdatedAt"),
        }

    def _body(self, news: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
        wanted = set(keys)
        body: dict[str, Any] = {key: news[key] for key in ("name", "value") if key in wanted}
        if "description" in wanted and news.get("description"):
            body["description"] = news["description"]
        return body

    def _update_body(
        self, olds: Mapping[str, Any], news: Mapping[str, Any], keys: Iterable[str]
    ) -> dict[str, Any]:
        body = self._body(news, keys)
        if "description" in keys:
            body["description"] = news.get("description") or ""  # an empty one clears it
        return body

    def _adopt(
        self, existing: dict[str, Any], props: Mapping[str, Any], body: dict[str, Any]
    ) -> dict[str, Any]:
        patch = {k: v for k, v in body.items() if k != "name"}
        return self._client().patch(
            self._path(str(existing["id"])), patch, redact=self._redacted(props)
        )

    def _named(self, name: str) -> list[dict[str, Any]]:
        # `?name=` ignores case, so it may return `R2_KEY` for `r2_key`: compare exactly.
        found = self._client().list(self.collection, self.list_key, params={"name": name})
        return [item for item in found if item.get("name") == name]

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        # The answer of a PATCH is the secret; without one, state needs no GET: the
        # stored outputs still describe it.
        changed = [k for k in self._changed_keys(olds, news) if k not in self.replace_keys]
        patch = self._update_body(olds, news, changed)
        live = {
            "id": _id,
            "name": olds.get("name"),
            "description": olds.get("description"),
            "valueLastUpdatedAt": olds.get("value_last_updated_at"),
        }
        if patch:
            live |= self._client().patch(self._path(_id), patch, redact=self._redacted(news))
        return UpdateResult(self._outputs(news, live, olds))

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
    """A container registry credential (`/v2/registries`).

    v2 cannot update a credential, so a new token (or user, or name) replaces it, and the
    replacement is created *before* the old one is deleted: the engine points the
    endpoint and the template at the new id in between, so nothing ever references a
    credential that does not exist. Names are unique per account, so the RunPod name
    carries a generation suffix (`<name>-<8 hex>`, output `registry_name`) and the new
    credential never collides with the one it replaces. Deleting the old one while a pod
    still pulls with it is refused by RunPod; the delete is retried for a short bound
    and then left in place with a warning naming the pods (it never fails the `up`).
    """

    collection = "/v2/registries"
    list_key = "registries"
    kind = "registry credential"
    input_keys = ("name", "username", "password")
    replace_keys = frozenset(input_keys)
    hashed_key = "password"
    delete_before_replace = False
    fresh_names = True
    in_use_budget_s: ClassVar[float] = 30.0
    """A pod holds a credential for as long as it runs: retry briefly, then leave it."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, checks.registry(news))

    def _body(self, news: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
        body = {key: news[key] for key in keys}
        if "name" in body:
            body["name"] = f"{body['name']}-{secrets.token_hex(4)}"  # a new generation
        return body

    def _outputs(
        self, news: Mapping[str, Any], live: Mapping[str, Any], olds: Mapping[str, Any]
    ) -> dict[str, Any]:
        return {
            "name": news["name"],
            "registry_name": live.get("name"),
            "username": news["username"],
            "adopt_existing": bool(news.get("adopt_existing")),
            **self._hash_outputs(news, olds),
        }

    def _family(self, name: str) -> list[dict[str, Any]]:
        """Credentials named `name` or `name-<8 hex>`: earlier generations of it."""
        generation = re.compile(rf"^{re.escape(name)}(-[0-9a-f]{{8}})?$")
        return [
            item
            for item in self._client().list(self.collection, self.list_key)
            if generation.match(str(item.get("name")))
        ]

    def create(self, props: dict[str, Any]) -> CreateResult:
        name = str(props["name"])
        earlier = self._family(name) if props.get("adopt_existing") else []
        created = super().create(props)
        # Adopting: ours now holds the declared token, so the older generations go, except
        # one something still references. That is the credential this create replaces
        # (with adopt left on, every rotation passes here): the engine repoints the
        # endpoint and the template to ours first and deletes it afterwards.
        for item in earlier:
            referrers = self._referrers(str(item["id"]))
            if referrers:
                LOG.warning(
                    "registry credential %s (%s) is an older generation of %s but %s still "
                    "use it: left in RunPod (Pulumi deletes it once they use the new one if it "
                    "is in this stack's state; otherwise delete it in the console then)",
                    item["id"],
                    item.get("name"),
                    name,
                    ", ".join(referrers),
                )
                continue
            LOG.info("replacing adopted registry credential %s (%s)", item["id"], item["name"])
            self.delete(str(item["id"]), {})
        return created

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        # Every declared key replaces; only adopt_existing can change in place.
        outs = dict(olds)
        outs["adopt_existing"] = bool(news.get("adopt_existing"))
        return UpdateResult(outs)

    def _users(self, object_id: str) -> tuple[str, ...]:
        def uses(obj: Mapping[str, Any]) -> bool:
            return obj.get("registry") == object_id

        return (*self._pods_using(uses), *self._endpoints_using(uses))

    def _referrers(self, object_id: str) -> tuple[str, ...]:
        """Everything that references the credential: pods, endpoints and templates
        (RunPod lets a template's reference vanish silently, so they count here)."""
        templates = self._client().list("/v2/templates", "templates")
        return (
            *self._users(object_id),
            *(
                f"template {t.get('id')} ({t.get('name')})"
                for t in templates
                if t.get("registry") == object_id
            ),
        )

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        try:
            self._delete_when_free(_id)
        except ObjectInUseError as held:
            LOG.warning(
                "%s. It is left in RunPod (nothing in this stack references it any more): "
                "delete it in the console once %s stopped",
                held,
                "those have" if held.users else "the pods using it have",
            )

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        live = self._client().get(self._path(id_))
        if live is None:
            return ReadResult("", {})
        outs = {**props, "registry_name": live.get("name")}
        inputs: dict[str, Any] = {
            k: outs[k] for k in ("name", "username", "adopt_existing") if k in outs
        }
        return ReadResult(id_, outs, inputs)


# -- NetworkVolume ---------------------------------------------------------------------------


class NetworkVolumeProvider(_RunPodProvider):
    """A network volume (`/v2/network-volumes`): grows in place, moves by replacement.

    What RunPod fills in is never a diff: a volume declared without a tier gets the data
    center's primary tier (`actual_volume_type`), and declaring that same tier later
    changes nothing. A delete refused while an endpoint or a pod uses the volume is
    retried within `in_use_budget_s`, then fails naming them. (Whether a volume may be
    deleted at all is the stack's decision: `protect` and `data.allowDeletion`.)
    """

    collection = "/v2/network-volumes"
    list_key = "networkVolumes"
    kind = "network volume"
    input_keys = ("name", "size_gb", "data_center_id", "volume_type")
    replace_keys = frozenset({"data_center_id", "volume_type"})
    unique_names = False
    in_use_budget_s: ClassVar[float] = 60.0
    _api_names: ClassVar[dict[str, str]] = {
        "name": "name",
        "size_gb": "size",
        "data_center_id": "dataCenter",
        "volume_type": "type",
    }

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, checks.network_volume(olds, news))

    def _body(self, news: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
        return {self._api_names[k]: plain(news[k]) for k in keys if news.get(k) is not None}

    def _changed_keys(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
        changed = [k for k in super()._changed_keys(olds, news) if k != "volume_type"]
        declared = news.get("volume_type")
        provisioned = olds.get("actual_volume_type") or olds.get("volume_type")
        # No tier declared accepts whatever RunPod provisioned; a declared tier is a change
        # (a replacement) only when it differs from the tier the volume really has.
        if is_unknown(declared) or (declared is not None and declared != provisioned):
            changed.append("volume_type")
        return changed

    def _users(self, object_id: str) -> tuple[str, ...]:
        def mounts(pod: Mapping[str, Any]) -> bool:
            network = (pod.get("mounts") or {}).get("network") or []
            return any(m.get("volumeId") == object_id for m in network)

        attached = self._endpoints_using(lambda e: object_id in (e.get("networkVolumes") or []))
        return (*attached, *self._pods_using(mounts))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        try:
            self._delete_when_free(_id)
        except ObjectInUseError as held:
            raise ObjectInUseError(
                f"{held}. Terminate those pods (or detach the volume from those endpoints) "
                "and run `pulumi up` again",
                users=held.users,
            ) from None

    def _outputs(
        self, news: Mapping[str, Any], live: Mapping[str, Any], olds: Mapping[str, Any]
    ) -> dict[str, Any]:
        outs = {key: plain(live.get(api)) for key, api in self._api_names.items()}
        if news.get("volume_type") is None:
            outs["volume_type"] = None
        outs["adopt_existing"] = bool(news.get("adopt_existing"))
        outs["actual_volume_type"] = live.get("type")
        return outs

    def _adopt(
        self, existing: dict[str, Any], props: Mapping[str, Any], body: dict[str, Any]
    ) -> dict[str, Any]:
        self._adoptable(
            existing, "data center", existing.get("dataCenter"), props.get("data_center_id")
        )
        if int(existing.get("size", 0)) < int(props["size_gb"]):
            return self._client().patch(
                self._path(str(existing["id"])), {"size": int(props["size_gb"])}
            )
        return existing

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        live = self._client().get(self._path(id_))
        if live is None:
            return ReadResult("", {})
        outs = self._outputs(props, live, props)
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
            body[api] = plain(value)
        return body

    def _outputs(
        self, news: Mapping[str, Any], live: Mapping[str, Any], olds: Mapping[str, Any]
    ) -> dict[str, Any]:
        outs: dict[str, Any] = {}
        for key in self.input_keys:
            api = self.api_names.get(key)
            declared = news.get(key)
            if api is None:
                outs[key] = plain(declared)
            elif declared is None:
                outs[key] = None
            elif key == "env":
                outs[key] = _live_env(live.get(api), declared)
            else:
                projected = _project(live.get(api), plain(declared))
                # A list RunPod reads back in its own order is stored in the declared one.
                same = self._comparable(key, projected) == self._comparable(key, declared)
                outs[key] = plain(declared) if same else projected
        outs["adopt_existing"] = bool(news.get("adopt_existing"))
        return outs

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        live = self._client().get(self._path(id_))
        if live is None:
            return ReadResult("", {})
        outs = {**props, **self._outputs(props, live, props)}
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
                outs[key] = _live_env(value, None) if key == "env" else plain(value)
        return ReadResult(id_, outs, self._read_inputs(outs))


class TemplateProvider(_ContainerProvider):
    """A pod or serverless template (`/v2/templates`); every field updates in place."""

    collection = "/v2/templates"
    list_key = "templates"
    kind = "template"
    set_keys = frozenset({"allowed_cuda_versions"})
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

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, checks.template(news))


class EndpointProvider(_ContainerProvider):
    """A serverless endpoint (`/v2/serverless`) with its container config inline.

    Replaced when `type` or the compute family (gpu vs cpu) changes; everything else is
    PATCHed. GPU pools, excluded types, CUDA versions, data centers and network volumes
    compare as sets: RunPod reads them back in its own order, and a reorder is no change.
    Waiting for a release to reach the workers is `EndpointRolloutProvider`'s job, so a
    failed wait never loses a new endpoint's id. Delete is one DELETE, as v2 documents it:
    RunPod terminates the workers and cancels the queued and running jobs itself (the
    scale-to-zero PATCH first was a GraphQL-era rule).
    """

    collection = "/v2/serverless"
    list_key = "endpoints"
    kind = "endpoint"
    set_keys = frozenset({"data_center_ids", "network_volume_ids"})
    replace_keys = frozenset({"type"})
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
    """Inputs whose change makes RunPod start a new release (workers roll over)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, checks.endpoint(news))

    def _replaces(
        self, olds: Mapping[str, Any], news: Mapping[str, Any], changed: list[str]
    ) -> list[str]:
        """`type`, and a move between the compute families (gpu and cpu)."""
        replaces = super()._replaces(olds, news, changed)
        old_family = "gpu" if olds.get("gpu") is not None else "cpu"
        new_gpu = news.get("gpu")
        new_family = "gpu" if new_gpu is not None else "cpu"
        if not is_unknown(new_gpu) and old_family != new_family:
            replaces.append(new_family)
        return replaces

    def _comparable(self, key: str, value: Any) -> Any:
        value = super()._comparable(key, value)
        if key == "gpu" and isinstance(value, dict):
            # Pools and exclusions are one selection RunPod stores as a string and reads
            # back in its own order; CUDA versions are a set as well.
            return {
                sub: sorted(item, key=repr)
                if sub in _GPU_SET_KEYS and isinstance(item, list)
                else item
                for sub, item in value.items()
            }
        return value

    def _outputs(
        self, news: Mapping[str, Any], live: Mapping[str, Any], olds: Mapping[str, Any]
    ) -> dict[str, Any]:
        return {**super()._outputs(news, live, olds), "created_at": live.get("createdAt")}

    def _adopt(
        self, existing: dict[str, Any], props: Mapping[str, Any], body: dict[str, Any]
    ) -> dict[str, Any]:
        self._adoptable(existing, "type", existing.get("type"), props.get("type"))
        patch = {k: v for k, v in body.items() if k not in ("name", "type")}
        if "gpu" in patch:
            # Clear a CUDA constraint of the other kind the adopted endpoint carries (RunPod
            # refuses a set and a floor together and a PATCH clears neither by itself).
            patch["gpu"] = self._gpu_patch(existing.get("gpu"), patch["gpu"])
        return self._client().patch(self._path(str(existing["id"])), patch)

    def _update_body(
        self, olds: Mapping[str, Any], news: Mapping[str, Any], keys: Iterable[str]
    ) -> dict[str, Any]:
        body = super()._update_body(olds, news, keys)
        if "gpu" in body:
            body["gpu"] = self._gpu_patch(olds.get("gpu"), body["gpu"])
        return body

    @staticmethod
    def _gpu_patch(old: Any, new: dict[str, Any]) -> dict[str, Any]:
        """RunPod's gpu PATCH is partial: restate pools with their exclusions and clear
        CUDA constraints the stack dropped."""
        patch = dict(new)
        patch.setdefault("allowedCudaVersions", [])
        if isinstance(old, Mapping) and old.get("minCudaVersion") and "minCudaVersion" not in new:
            patch["minCudaVersion"] = ""
        return patch


_GPU_SET_KEYS: Final = frozenset({"pools", "excludedTypes", "allowedCudaVersions"})


# -- EndpointRollout ---------------------------------------------------------------------------


def _rolled_out(body: Mapping[str, Any]) -> bool:
    """Whether a `/releases` answer shows the newest release on every worker."""
    rollout = body.get("rollout") or {}
    on_latest, total = rollout.get("workersOnLatest", 0), rollout.get("workersTotal", 0)
    return not rollout.get("inProgress") and on_latest >= total


def release_fingerprint(settings: Mapping[str, Any]) -> str:
    """A digest of the endpoint settings whose change starts a new release.

    `settings` maps endpoint input keys (image, env, gpu, ...) to their values; lists
    RunPod treats as sets are sorted first, so a reorder is no new release to wait for.
    """
    canonical = {
        key: EndpointProvider()._comparable(key, value)
        for key, value in settings.items()
        if key in EndpointProvider.rollout_keys
    }
    text = json.dumps(canonical, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class EndpointRolloutProvider(_RunPodProvider):
    """Waits until an endpoint's newest release runs on every worker (`EndpointRollout`).

    A resource apart from the endpoint on purpose: when the wait times out or fails, only
    this resource fails. The endpoint was created or updated before it and stays in state
    with its id, so the next `up` finds it, creates no second endpoint, and simply waits
    again. There is no RunPod object behind this resource: delete and read touch nothing.
    """

    collection = "/v2/serverless"
    list_key = "endpoints"
    kind = "endpoint rollout"
    input_keys = ("endpoint_id", "release", "timeout_s")
    poll_s: ClassVar[float] = 5.0

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, checks.endpoint_rollout(news))

    def create(self, props: dict[str, Any]) -> CreateResult:
        endpoint_id = str(props["endpoint_id"])
        return CreateResult(f"{endpoint_id}-rollout", self._wait(props))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._wait(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props, self._read_inputs(props))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to delete: the endpoint is its own resource."""

    def _wait(self, props: Mapping[str, Any]) -> dict[str, Any]:
        endpoint_id = str(props["endpoint_id"])
        budget = int(plain(props.get("timeout_s") or 0))
        path = f"{self._path(endpoint_id)}/releases"
        retrying = _polling(
            self.poll_s,
            budget,
            retry=tenacity.retry_if_not_result(_rolled_out),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else {},
        )
        body = retrying(lambda: self._client().request("GET", path) or {})
        if not _rolled_out(body):
            raise RuntimeError(self._stuck(endpoint_id, body, budget))
        return {
            "endpoint_id": endpoint_id,
            "release": props.get("release"),
            "timeout_s": budget,
            "endpoint_version": body.get("endpointVersion"),
        }

    def _stuck(self, endpoint_id: str, body: Mapping[str, Any], budget: int) -> str:
        rollout = body.get("rollout") or {}
        releases = body.get("releases") or [{}]
        newest = releases[0] if isinstance(releases[0], Mapping) else {}
        live = self._client().get(self._path(endpoint_id)) or {}
        return (
            f"endpoint {endpoint_id} ({live.get('name', 'name unknown')}): release "
            f"{newest.get('id', '?')} (version {newest.get('version', '?')}) reached "
            f"{rollout.get('workersOnLatest')}/{rollout.get('workersTotal')} workers within "
            f"{budget} s. The endpoint and its new settings are applied and stay in state; "
            "check its workers in the RunPod console (a worker that never gets ready usually "
            "means an image that fails to start, or no capacity in its GPU pools), then run "
            "`pulumi up` again to resume the wait"
        )
