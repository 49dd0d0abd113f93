"""A Pulumi engine simulation for dynamic resources, reusable by any program test.

`EngineSimulation` is a `pulumi.runtime.Mocks` (extending the project's recording mocks, so
cloud resources still echo inputs and fabricate computed fields). For every
`pulumi-python:dynamic/...` registration it does what the engine does with the pickled
provider in `__provider`: unpickle it (once per distinct pickle, like the real provider
server's cache), `configure()` it with stack config, `check` the inputs against the
previous run's, then `create`, or `diff` against the stored outputs and `update` or
replace (delete-then-create when the diff asks; otherwise create-then-delete, where, as
in the engine, the old object is deleted only at the end of the run, after everything
that referenced it was updated to the new one). State persists between runs, so a test
can run a program, change config, and run it again. Resources a run no longer declares
are deleted by `end_run()`, and `refresh()` runs `read` on every stored resource like
`pulumi refresh`.

`protect` is honoured as the engine honours it (pulumi/pulumi
`pkg/resource/deploy/step_generator.go` and `step.go`): a replacement is refused while the
stored resource and the new registration are both protected (unprotecting and replacing
in one `up` is allowed), and a resource the program no longer declares is not deleted
while its stored registration was protected. Either fails the `up` with
`ProtectedResourceError` before the provider is called.

Secretness is stripped before the provider sees inputs, as the engine does.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dill
import pulumi
import pulumi.runtime.settings
from pulumi.dynamic import ConfigureRequest, ResourceProvider
from pulumi.dynamic.config import Config
from pulumi.runtime.mocks import MockMonitor

from tests.fakes.pulumi_mocks import RecordingMocks, current_loop, unwrap

DYNAMIC_PREFIX = "pulumi-python:dynamic/"
TOKEN = "cloudflare:index/accountToken:AccountToken"
PROVIDER_KEY = "__provider"


class CheckFailedError(Exception):
    """The provider's check() refused the inputs, as `pulumi up` would report."""


class ProtectedResourceError(Exception):
    """The engine refused to replace or delete a protected resource (nothing was sent)."""


@dataclass
class StoredResource:
    """One dynamic resource in the simulated state file."""

    type: str
    name: str
    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    provider: str
    protect: bool = False
    """The `protect` option of its last registration, as the state file records it."""


class EngineSimulation(RecordingMocks):
    """Mocks that create, update, replace and delete dynamic resources for real.

    `stack_config` is what the engine hands the provider's configure() (full keys, secrets
    decrypted), e.g. `{"runpod:apiKey": "..."}`.
    """

    def __init__(
        self, stack_config: Mapping[str, Any] | None = None, *, project: str = "comfyui-runpod"
    ) -> None:
        super().__init__()
        self.stack_config = dict(stack_config or {})
        self.project = project
        self.state: dict[str, StoredResource] = {}
        self.operations: list[tuple[str, str, str]] = []
        self._seen: set[str] = set()
        self._replaced: list[StoredResource] = []
        self.token_generations: dict[str, int] = {}
        """Cloudflare AccountToken name -> how often its value was rolled (`roll_token`)."""
        self._providers: dict[str, ResourceProvider] = {}
        self._protect: dict[tuple[str, str], bool] = {}
        """(type, name) -> `protect` of the registration the monitor is handing over."""
        self._lock = threading.RLock()

    # -- runs ------------------------------------------------------------------------

    def begin_run(self) -> None:
        """Start a new `pulumi up`: forget the last run's registrations and operations."""
        self.resources.clear()
        self.calls.clear()
        self.operations = []
        self._seen = set()
        self._replaced = []

    def end_run(self) -> None:
        """Delete replaced objects, then what this run no longer declares (newest first).

        A protected resource the run no longer declares fails the run before anything of
        this phase is deleted (it stays in state and in the cloud)."""
        protected = [
            stored for key, stored in self.state.items() if key not in self._seen and stored.protect
        ]
        if protected:
            raise ProtectedResourceError(
                "; ".join(
                    f"resource {_urn(stored)!r} cannot be deleted because it is protected. To "
                    "unprotect the resource, either remove the `protect` flag from the resource "
                    "in your Pulumi program and run `pulumi up`, or use the command: "
                    f"`pulumi state unprotect {_urn(stored)}`"
                    for stored in protected
                )
            )
        while self._replaced:
            old = self._replaced.pop()
            self._provider(old.provider).delete(old.id, old.outputs)
            self.operations.append(("delete-replaced", old.type, old.name))
        for key in reversed(list(self.state)):
            if key not in self._seen:
                stored = self.state.pop(key)
                self._provider(stored.provider).delete(stored.id, stored.outputs)
                self.operations.append(("delete", stored.type, stored.name))

    def refresh(self) -> None:
        """`pulumi refresh`: read every stored resource, drop the vanished ones."""
        for key, stored in list(self.state.items()):
            result = self._provider(stored.provider).read(stored.id, stored.outputs)
            if not result.id:
                del self.state[key]
                self.operations.append(("refresh-delete", stored.type, stored.name))
                continue
            stored.outputs = dict(result.outs or {})
            if result.inputs is not None:
                stored.inputs = dict(result.inputs)
            self.operations.append(("refresh", stored.type, stored.name))

    def changed(self) -> list[tuple[str, str, str]]:
        """Operations of the last run other than `same`."""
        return [op for op in self.operations if op[0] != "same"]

    # -- engine work -----------------------------------------------------------------

    def _provider(self, pickled: str) -> ResourceProvider:
        with self._lock:
            provider = self._providers.get(pickled)
            if provider is None:
                provider = dill.loads(base64.b64decode(pickled))  # noqa: S301  -- our own program's pickle, as the engine loads it
                provider.configure(ConfigureRequest(Config(dict(self.stack_config), self.project)))
                self._providers[pickled] = provider
            return provider

    def roll_token(self, name_suffix: str) -> None:
        """Give the Cloudflare account tokens whose name ends with `name_suffix` a new value
        from the next run on (a rolled token; its id stays), as `pulumi up` would see it."""
        self.token_generations[name_suffix] = self.token_generations.get(name_suffix, 0) + 1

    def registering(self, typ: str, name: str, *, protect: bool) -> None:
        """Called by the monitor just before `new_resource` with what MockResourceArgs
        leaves out: the registration's `protect` option."""
        with self._lock:
            self._protect[(typ, name)] = protect

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if not args.typ.startswith(DYNAMIC_PREFIX):
            resource_id, state = super().new_resource(args)
            for suffix, generation in self.token_generations.items():
                if args.typ == TOKEN and args.name.endswith(suffix):
                    state["value"] = f"{state['value']}-rolled-{generation}"
            return resource_id, state
        super().new_resource(args)  # record the registration like any other
        with self._lock:
            return self._apply(args)

    def _apply(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        plain, _ = unwrap(dict(args.inputs))
        pickled = str(plain.pop(PROVIDER_KEY))
        provider = self._provider(pickled)
        key = f"{args.typ}::{args.name}"
        protect = self._protect.pop((args.typ, args.name), False)
        self._seen.add(key)
        previous = self.state.get(key)
        checked = provider.check(previous.inputs if previous else {}, plain)
        if checked.failures:
            reasons = "; ".join(f"{f.property}: {f.reason}" for f in checked.failures)
            raise CheckFailedError(f"{args.typ} {args.name}: {reasons}")
        inputs = dict(checked.inputs)
        if previous is None:
            created = provider.create(inputs)
            stored = StoredResource(
                args.typ, args.name, created.id, inputs, dict(created.outs or {}), pickled
            )
            operation = "create"
        else:
            stored, operation = self._update(provider, previous, inputs, pickled, protect)
        stored.protect = protect
        self.state[key] = stored
        self.operations.append((operation, args.typ, args.name))
        return stored.id, dict(stored.outputs)

    def _update(
        self,
        provider: ResourceProvider,
        previous: StoredResource,
        inputs: dict[str, Any],
        pickled: str,
        protect: bool,
    ) -> tuple[StoredResource, str]:
        diff = provider.diff(previous.id, previous.outputs, inputs)
        if not diff.changes:
            previous.inputs = inputs
            return previous, "same"
        if diff.replaces:
            # As the engine: both the stored and the new registration protected refuses it
            # (unprotecting and replacing in one up is allowed).
            if previous.protect and protect:
                raise ProtectedResourceError(
                    f"unable to replace resource {_urn(previous)!r} (changes to "
                    f"{', '.join(diff.replaces)}) as it is currently marked for protection. To "
                    "unprotect the resource, remove the `protect` flag from the resource in "
                    "your Pulumi program and run `pulumi up`"
                )
            if diff.delete_before_replace:
                provider.delete(previous.id, previous.outputs)
                created = provider.create(inputs)
            else:
                created = provider.create(inputs)
                self._replaced.append(previous)
            replaced = StoredResource(
                previous.type, previous.name, created.id, inputs, dict(created.outs or {}), pickled
            )
            return replaced, "replace"
        updated = provider.update(previous.id, previous.outputs, inputs)
        return (
            StoredResource(
                previous.type, previous.name, previous.id, inputs, dict(updated.outs or {}), pickled
            ),
            "update",
        )


def _urn(stored: StoredResource) -> str:
    """A readable stand-in for the resource's URN (type and name, as messages need)."""
    return f"{stored.type}::{stored.name}"


class _ProtectRecordingMonitor(MockMonitor):
    """The mock monitor, handing the engine each registration's `protect` option."""

    def __init__(self, engine: EngineSimulation) -> None:
        super().__init__(engine)
        self.engine = engine

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (the gRPC method name)
        protect = request.HasField("protect") and request.protect
        self.engine.registering(request.type, request.name, protect=protect)
        return super().RegisterResource(request)


@contextmanager
def simulated(
    engine: EngineSimulation,
    *,
    stack: str = "staging",
    config: Mapping[str, str] | None = None,
    secret_keys: list[str] | None = None,
) -> Iterator[EngineSimulation]:
    """One `pulumi up` under `engine`: config, a fresh root stack, mocks, then end_run()."""
    with current_loop() as loop:
        pulumi.runtime.set_all_config(dict(config or {}), secret_keys or [])
        pulumi.runtime.settings.ROOT.set(None)
        pulumi.runtime.set_mocks(
            engine,
            project=engine.project,
            stack=stack,
            preview=False,
            monitor=_ProtectRecordingMonitor(engine),
        )
        engine.begin_run()
        try:
            yield engine
            engine.end_run()
        except BaseException as failure:
            loop.set_exception_handler(_ignoring_echoes_of(failure))
            raise
        finally:
            pulumi.runtime.set_all_config({}, [])


def _ignoring_echoes_of(
    failure: BaseException,
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """A loop exception handler for an aborted up.

    Pulumi keeps the failure in every Output that depended on the failed registration; the
    test already asserts that failure, so its unread copies are dropped when garbage
    collected. Anything else still goes to the default handler.
    """

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("exception") is not failure:
            loop.default_exception_handler(context)

    return handle


def run_up(
    engine: EngineSimulation,
    program: Callable[[], Any],
    *,
    stack: str = "staging",
    config: Mapping[str, str] | None = None,
    secret_keys: list[str] | None = None,
) -> None:
    """Run `program` as one `pulumi up` of `stack` against the engine's state."""

    @pulumi.runtime.test
    def go() -> Any:
        return program()

    with simulated(engine, stack=stack, config=config, secret_keys=secret_keys):
        go()
