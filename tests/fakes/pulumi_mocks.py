"""Pulumi mocks that record every registration, and helpers to run programs under them.

The mocks echo inputs and fabricate only what a provider computes (ids, token values, the
pushed image digest, derived from the build inputs, KV namespace ids). Invokes they do not
know fail loudly, and the permission-group lookup answers like Cloudflare's API: only groups
that exist, by exact name.
Secret inputs arrive wrapped in Pulumi's secret signature; :class:`Registered` keeps the
plain value and the paths that were secret, so tests can assert what state would encrypt.
The monitor also records the resource options the engine would act on (``protect``,
``replace_on_changes``, ``retain_on_delete``, ...), which ``MockResourceArgs`` leaves out,
and gives every resource the URN the engine would (whole parent type chain, no root stack).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import runpy
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime.settings
import pytest
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parents[2]

# Pulumi's wire format for secrets: {SIG_KEY: SECRET_SIG, "value": <plain>}.
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"

PERMISSION_GROUPS_TOKEN = (
    "cloudflare:index/getAccountApiTokenPermissionGroupsList:getAccountApiTokenPermissionGroupsList"
)
#: A slice of Cloudflare's real permission groups (ids are per-deployment, fake here).
PERMISSION_GROUPS = {
    "Workers R2 Storage Bucket Item Read": "pg-r2-item-read",
    "Workers R2 Storage Bucket Item Write": "pg-r2-item-write",
    "Workers R2 Storage Read": "pg-r2-account-read",
    "Workers R2 Storage Write": "pg-r2-account-write",
    "Workers KV Storage Write": "pg-kv-write",
}
ITEM_LEVEL_GROUP_IDS = frozenset({"pg-r2-item-read", "pg-r2-item-write"})
ROOT_STACK_TYPE = "pulumi:pulumi:Stack"
#: pulumi-docker-build's Image.
IMAGE_TYPE = "docker-build:index:Image"


@dataclass(frozen=True)
class Options:
    """The resource options of one registration that decide what the engine may do to it."""

    protect: bool = False
    retain_on_delete: bool = False
    delete_before_replace: bool = False
    replace_on_changes: tuple[str, ...] = ()
    ignore_changes: tuple[str, ...] = ()
    additional_secret_outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Registered:
    """One resource registration as the engine would see it."""

    type: str
    name: str
    inputs: dict[str, Any]
    secret_paths: frozenset[str]
    provider: str | None
    options: Options = field(default_factory=Options)
    urn: str = ""
    """The URN the engine would give it (root stack left out of the type chain)."""


def unwrap(value: Any, path: str = "") -> tuple[Any, set[str]]:
    """Strip secret signatures from ``value``; return it plain plus the secret paths."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            plain, inner = unwrap(value.get("value"), path)
            return plain, {path, *inner}
        plain_dict: dict[str, Any] = {}
        secrets: set[str] = set()
        for key, item in value.items():
            plain_dict[key], found = unwrap(item, f"{path}.{key}" if path else key)
            secrets |= found
        return plain_dict, secrets
    if isinstance(value, list):
        plain_list = []
        secrets = set()
        for index, item in enumerate(value):
            plain, found = unwrap(item, f"{path}[{index}]")
            plain_list.append(plain)
            secrets |= found
        return plain_list, secrets
    return value, set()


class RecordingMocks(pulumi.runtime.Mocks):
    """Records registrations; fabricates computed outputs; answers known invokes."""

    def __init__(self) -> None:
        self.resources: list[Registered] = []
        self.permission_groups = dict(PERMISSION_GROUPS)
        self.calls: list[tuple[str, dict[str, Any], str | None]] = []
        # Filled by RecordingMonitor just before the engine would call new_resource.
        self.pending: dict[tuple[str, str], tuple[Options, str]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        plain, secrets = unwrap(dict(args.inputs))
        options, urn = self.pending.pop((args.typ, args.name), (Options(), ""))
        self.resources.append(
            Registered(args.typ, args.name, plain, frozenset(secrets), args.provider, options, urn)
        )
        state = dict(args.inputs)
        resource_id = f"{args.name}-id"
        if args.typ == "cloudflare:index/accountToken:AccountToken":
            resource_id = hashlib.sha256(args.name.encode()).hexdigest()[:32]
            state["value"] = f"fake-token-value-{args.name}"
        elif args.typ == IMAGE_TYPE:
            # Same build inputs, same digest: what a content-addressed build would push. The
            # registry password is left out as pulumi-docker-build's Diff leaves it out
            # (v0.0.22 provider/internal/image.go): a new CI job token alone rebuilds nothing.
            built_from = json.loads(json.dumps(plain))
            for registry in built_from.get("registries") or []:
                registry.pop("password", None)
            digest = (
                "sha256:"
                + hashlib.sha256(json.dumps(built_from, sort_keys=True).encode()).hexdigest()
            )
            state["digest"] = digest
            state["ref"] = f"{plain['tags'][0]}@{digest}"
            state["contextHash"] = hashlib.sha256(plain["context"]["location"].encode()).hexdigest()
        elif args.typ == "cloudflare:index/workersKvNamespace:WorkersKvNamespace":
            resource_id = hashlib.sha256(args.name.encode()).hexdigest()[:32]
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        self.calls.append((args.token, dict(args.args), args.provider))
        if args.token != PERMISSION_GROUPS_TOKEN:
            raise NotImplementedError(f"unexpected invoke {args.token}")
        if not args.args.get("accountId"):
            raise ValueError("accountId is required")
        name = args.args.get("name")
        results = [
            {"id": gid, "name": gname, "category": "r2", "isSelectable": True, "scopes": []}
            for gname, gid in self.permission_groups.items()
            if name is None or gname == name
        ]
        return {"accountId": args.args["accountId"], "name": name, "results": results}

    # ----------------------------------------------------------------- queries

    def of_type(self, typ: str) -> list[Registered]:
        """All registrations of ``typ`` (a full type token)."""
        return [r for r in self.resources if r.type == typ]

    def one(self, typ: str) -> Registered:
        """The single registration of ``typ``; fails if there are none or several."""
        found = self.of_type(typ)
        assert len(found) == 1, f"expected one {typ}, got {[r.name for r in found]}"
        return found[0]


class RecordingMonitor(MockMonitor):
    """The mock monitor, plus a record of each registration's options and URN."""

    mocks: RecordingMocks

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        """The URN the engine gives a resource (pulumi/pulumi pkg/resource/deploy/deployment.go,
        ``generateURN``): its type chain is the parent's whole qualified type, minus the root
        stack. Pulumi's MockMonitor keeps the root stack and only the parent's last type, so
        a resource two components deep would get a URN the engine never makes."""
        qualified = parent.split("::")[2] if parent else ""
        chain = f"{qualified}${type_}" if qualified and qualified != ROOT_STACK_TYPE else type_
        return f"urn:pulumi:{pulumi.get_stack()}::{pulumi.get_project()}::{chain}::{name}"

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (the gRPC method name)
        options = Options(
            protect=request.HasField("protect") and request.protect,
            retain_on_delete=request.HasField("retainOnDelete") and request.retainOnDelete,
            delete_before_replace=request.deleteBeforeReplace,
            replace_on_changes=tuple(request.replaceOnChanges),
            ignore_changes=tuple(request.ignoreChanges),
            additional_secret_outputs=tuple(request.additionalSecretOutputs),
        )
        urn = self.make_urn(request.parent, request.type, request.name)
        self.mocks.pending[(request.type, request.name)] = (options, urn)
        return super().RegisterResource(request)


@contextmanager
def current_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A fresh current event loop, the previous one put back afterwards.

    Pulumi makes and awaits Outputs on the thread's current loop; a test elsewhere that
    used ``asyncio.run`` leaves the main thread with none.
    """
    try:
        previous: asyncio.AbstractEventLoop | None = (
            asyncio.get_event_loop_policy().get_event_loop()
        )
    except RuntimeError:
        previous = None
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        # Let Outputs made outside a program run settle, so no coroutine is left unawaited.
        if pending := asyncio.all_tasks(loop):
            loop.run_until_complete(asyncio.wait(pending, timeout=5))
        asyncio.set_event_loop(previous)
        loop.close()
        # Run the finalizers of this run's futures and coroutines now. Left to a random
        # later collection they can fire inside ast.parse (pytest's assertion rewriting),
        # where CPython 3.11 fails with "AST constructor recursion depth mismatch".
        _collect_garbage()


def _collect_garbage() -> None:
    """``gc.collect()``, minus one message that is not this run's: an event loop some other
    test left unclosed, collected after its own self-pipe socket, fails to close it again
    (``ValueError: Invalid file descriptor: -1`` in ``BaseEventLoop.__del__``). Left alone
    that garbage would be finalized silently later; every other unraisable still reports."""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        finalizer = getattr(unraisable.object, "__qualname__", "")
        benign = finalizer == "BaseEventLoop.__del__" and isinstance(
            unraisable.exc_value, ValueError
        )
        if not benign:
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        gc.collect()
    finally:
        sys.unraisablehook = previous


@pytest.fixture
def pulumi_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """For tests that build config (secret Outputs) outside a program run."""
    with current_loop() as loop:
        yield loop


@contextmanager
def mocked(
    *,
    project: str = "comfyui-runpod",
    stack: str = "staging",
    config: Mapping[str, str] | None = None,
    secret_keys: list[str] | None = None,
) -> Iterator[RecordingMocks]:
    """Fresh mocks, stack config, root stack and event loop for one program run."""
    with current_loop():
        mocks = RecordingMocks()
        pulumi.runtime.set_all_config(dict(config or {}), secret_keys or [])
        pulumi.runtime.settings.ROOT.set(None)
        pulumi.runtime.set_mocks(
            mocks, project=project, stack=stack, preview=False, monitor=RecordingMonitor(mocks)
        )
        try:
            yield mocks
        finally:
            pulumi.runtime.set_all_config({}, [])


def run(fn: Callable[[], Any]) -> None:
    """Run ``fn`` under the current mocks and wait for every registration and output."""

    @pulumi.runtime.test
    def go() -> Any:
        return fn()

    go()


def settle(output: pulumi.Output[Any]) -> tuple[Any, bool]:
    """The resolved value of ``output`` (after :func:`run`) and whether it is secret."""
    return _sync_await(output.future()), bool(_sync_await(output.is_secret()))


def run_main(mocks: RecordingMocks) -> dict[str, pulumi.Output[Any]]:
    """Run ``__main__.py`` under ``mocks``; return the stack exports it declared."""
    exports: dict[str, pulumi.Output[Any]] = {}
    original = pulumi.export

    def capture(name: str, value: Any) -> None:
        exports[name] = pulumi.Output.from_input(value)

    pulumi.export = capture
    try:
        run(lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__"))
    finally:
        pulumi.export = original
    assert mocks.resources, "the program registered no resources"
    return exports
