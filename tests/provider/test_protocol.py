"""The real protocol: `python -m pulumi.dynamic` driven over gRPC, as `pulumi up` drives it.

The provider travels as the engine sends it (the pickle in `__provider`), the key arrives
only through Configure (the subprocess has no RUNPOD_API_KEY), numbers arrive as doubles.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import selectors
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc
from pulumi.runtime.proto.provider_pb2_grpc import ResourceProviderStub

from components.runpod.providers import EndpointProvider, EndpointRolloutProvider, SecretProvider
from tests.fakes.runpod_api import DEFAULT_API_KEY, RunPodEmulator
from tests.provider.support import IMAGE_2, endpoint_inputs, secret_inputs

REPO = Path(__file__).resolve().parents[2]
ENDPOINT_URN = "urn:pulumi:staging::comfyui-runpod::pulumi-python:dynamic/runpod:Endpoint::ep"
SECRET_URN = "urn:pulumi:staging::comfyui-runpod::pulumi-python:dynamic/runpod:Secret::s"


def struct(props: dict[str, Any]) -> Any:
    # A private loop: asyncio.run() would leave the main thread without a current loop,
    # which breaks Pulumi mocks in tests that run later in the session.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(rpc.serialize_properties(props, {}))
    finally:
        loop.close()


def plain(message: Any) -> dict[str, Any]:
    return dict(rpc.deserialize_properties(message))


def start_server(emulator: RunPodEmulator) -> tuple[subprocess.Popen[bytes], int]:
    env = {**os.environ, "RUNPOD_API_BASE_URL": emulator.url, "PYTHONPATH": str(REPO)}
    env.pop("RUNPOD_API_KEY", None)
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.dynamic"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=30):
            process.kill()
            pytest.fail("python -m pulumi.dynamic printed no port within 30 s")
    return process, int(process.stdout.readline())


@pytest.fixture
def connect(emulator: RunPodEmulator) -> Iterator[Any]:
    """Start provider servers on demand; each is configured with the given stack config."""
    started: list[tuple[subprocess.Popen[bytes], grpc.Channel]] = []

    def open_stub(config: dict[str, str]) -> ResourceProviderStub:
        process, port = start_server(emulator)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        started.append((process, channel))
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = provider_pb2_grpc.ResourceProviderStub(channel)
        response = stub.Configure(
            provider_pb2.ConfigureRequest(args=struct(config), acceptSecrets=True)
        )
        assert response.acceptSecrets is False  # the engine must strip secretness
        return stub

    yield open_stub
    for process, channel in started:
        channel.close()
        process.terminate()
        process.wait(timeout=10)


def with_provider(props: dict[str, Any], provider: Any) -> dict[str, Any]:
    return {**props, "__provider": serialize_provider(provider)}


def test_provider_pickles_by_reference() -> None:
    """The pickle names the importable class and carries no state, key or session."""
    raw = base64.b64decode(serialize_provider(EndpointProvider()))
    assert b"components.runpod.providers" in raw
    assert b"EndpointProvider" in raw
    assert len(raw) < 120


def test_endpoint_lifecycle_over_grpc(connect: Any, emulator: RunPodEmulator) -> None:
    """Check, Create, Diff, Update, Read, Delete an endpoint through the real server."""
    stub = connect({"runpod:apiKey": DEFAULT_API_KEY})
    declared = with_provider(endpoint_inputs(), EndpointProvider())

    checked = stub.Check(
        provider_pb2.CheckRequest(urn=ENDPOINT_URN, olds=struct({}), news=struct(declared))
    )
    assert list(checked.failures) == []

    created = stub.Create(provider_pb2.CreateRequest(urn=ENDPOINT_URN, properties=checked.inputs))
    outs = plain(created.properties)
    assert created.id in emulator.endpoints
    assert outs["workers"] == {"min": 0, "max": 3, "idleTimeout": 5}
    assert emulator.calls("POST")[0].body["timeout"] == 660_000  # an int again, not 660000.0

    same = stub.Diff(
        provider_pb2.DiffRequest(
            id=created.id, urn=ENDPOINT_URN, olds=created.properties, news=checked.inputs
        )
    )
    assert same.changes == provider_pb2.DiffResponse.DIFF_NONE

    rolled = struct({**declared, "image": IMAGE_2})
    diff = stub.Diff(
        provider_pb2.DiffRequest(
            id=created.id, urn=ENDPOINT_URN, olds=created.properties, news=rolled
        )
    )
    assert diff.changes == provider_pb2.DiffResponse.DIFF_SOME
    assert list(diff.replaces) == []
    retyped = struct(
        {
            **declared,
            "type": "LOAD_BALANCER",
            "scaling": {"type": "REQUEST_COUNT", "requestCount": 1},
        }
    )
    replace = stub.Diff(
        provider_pb2.DiffRequest(
            id=created.id, urn=ENDPOINT_URN, olds=created.properties, news=retyped
        )
    )
    assert "type" in list(replace.replaces)

    emulator.reset_log()
    updated = stub.Update(
        provider_pb2.UpdateRequest(
            id=created.id, urn=ENDPOINT_URN, olds=created.properties, news=rolled
        )
    )
    assert [(r.method, r.body) for r in emulator.writes()] == [("PATCH", {"image": IMAGE_2})]
    updated_outs = plain(updated.properties)
    assert updated_outs["image"] == IMAGE_2
    assert updated_outs["gpu"] == {"pools": ["ADA_24", "AMPERE_24"], "count": 1}

    emulator.idle_for_days(created.id, 7)
    read = stub.Read(
        provider_pb2.ReadRequest(
            id=created.id, urn=ENDPOINT_URN, properties=updated.properties, inputs=rolled
        )
    )
    assert read.id == created.id
    assert plain(read.inputs)["workers"]["max"] == 0

    stub.Delete(
        provider_pb2.DeleteRequest(id=created.id, urn=ENDPOINT_URN, properties=read.properties)
    )
    assert emulator.endpoints == {}
    gone = stub.Read(
        provider_pb2.ReadRequest(id=created.id, urn=ENDPOINT_URN, properties=read.properties)
    )
    assert gone.id == ""


def test_check_failures_travel_over_grpc(connect: Any) -> None:
    """A literal credential in env comes back as a CheckFailure on `env`."""
    stub = connect({"runpod:apiKey": DEFAULT_API_KEY})
    bad = with_provider(endpoint_inputs(env={"HF_TOKEN": "hf_literal"}), EndpointProvider())
    checked = stub.Check(
        provider_pb2.CheckRequest(urn=ENDPOINT_URN, olds=struct({}), news=struct(bad))
    )
    assert [f.property for f in checked.failures] == ["env"]


def test_secret_lifecycle_over_grpc_never_returns_the_value(
    connect: Any, emulator: RunPodEmulator
) -> None:
    """Create, rotate, read and delete a secret; no response ever carries the value."""
    stub = connect({"runpod:apiKey": DEFAULT_API_KEY})
    declared = with_provider(secret_inputs(), SecretProvider())
    checked = stub.Check(
        provider_pb2.CheckRequest(urn=SECRET_URN, olds=struct({}), news=struct(declared))
    )
    created = stub.Create(provider_pb2.CreateRequest(urn=SECRET_URN, properties=checked.inputs))
    outs = plain(created.properties)
    assert "r2-secret-value-1" not in json.dumps(outs)
    assert emulator.secret_values[created.id] == "r2-secret-value-1"

    rotated = struct({**declared, "value": "r2-secret-value-2"})
    diff = stub.Diff(
        provider_pb2.DiffRequest(
            id=created.id, urn=SECRET_URN, olds=created.properties, news=rotated
        )
    )
    assert diff.changes == provider_pb2.DiffResponse.DIFF_SOME
    assert list(diff.replaces) == []
    updated = stub.Update(
        provider_pb2.UpdateRequest(
            id=created.id, urn=SECRET_URN, olds=created.properties, news=rotated
        )
    )
    assert "r2-secret-value-2" not in json.dumps(plain(updated.properties))
    assert emulator.secret_values[created.id] == "r2-secret-value-2"
    settled = stub.Diff(
        provider_pb2.DiffRequest(
            id=created.id, urn=SECRET_URN, olds=updated.properties, news=rotated
        )
    )
    assert settled.changes == provider_pb2.DiffResponse.DIFF_NONE

    read = stub.Read(
        provider_pb2.ReadRequest(id=created.id, urn=SECRET_URN, properties=updated.properties)
    )
    assert read.id == created.id
    assert "r2-secret-value-2" not in json.dumps(plain(read.properties))
    stub.Delete(
        provider_pb2.DeleteRequest(id=created.id, urn=SECRET_URN, properties=read.properties)
    )
    assert emulator.secrets == {}


def test_key_comes_only_from_configure(connect: Any, emulator: RunPodEmulator) -> None:
    """Without runpod:apiKey in Configure (and no env key) Create fails with the fix."""
    stub = connect({})
    declared = struct(with_provider(secret_inputs(), SecretProvider()))
    with pytest.raises(grpc.RpcError) as caught:
        stub.Create(provider_pb2.CreateRequest(urn=SECRET_URN, properties=declared))
    assert "pulumi config set --secret runpod:apiKey" in str(caught.value.details())
    assert emulator.calls() == []


def test_preview_check_and_diff_with_unknowns_make_no_call(
    connect: Any, emulator: RunPodEmulator
) -> None:
    """Preview sends unknowns: Check passes, Diff reports a change, RunPod hears nothing."""
    stub = connect({"runpod:apiKey": DEFAULT_API_KEY})
    declared = with_provider(endpoint_inputs(), EndpointProvider())
    created = stub.Create(provider_pb2.CreateRequest(urn=ENDPOINT_URN, properties=struct(declared)))
    emulator.reset_log()
    previewed = struct({**declared, "image": rpc.UNKNOWN, "registry_id": rpc.UNKNOWN})
    checked = stub.Check(
        provider_pb2.CheckRequest(urn=ENDPOINT_URN, olds=created.properties, news=previewed)
    )
    assert list(checked.failures) == []
    diff = stub.Diff(
        provider_pb2.DiffRequest(
            id=created.id, urn=ENDPOINT_URN, olds=created.properties, news=previewed
        )
    )
    assert diff.changes == provider_pb2.DiffResponse.DIFF_SOME
    assert list(diff.replaces) == []
    assert emulator.calls() == []


ROLLOUT_URN = "urn:pulumi:staging::comfyui-runpod::pulumi-python:dynamic/runpod:EndpointRollout::r"


def test_rollout_waiter_pickles_by_reference_and_waits_over_grpc(
    connect: Any, emulator: RunPodEmulator
) -> None:
    """The waiter travels like the others; preview unknowns make no call; Create waits."""
    raw = base64.b64decode(serialize_provider(EndpointRolloutProvider()))
    assert b"EndpointRolloutProvider" in raw
    assert len(raw) < 120
    stub = connect({"runpod:apiKey": DEFAULT_API_KEY})
    endpoint = stub.Create(
        provider_pb2.CreateRequest(
            urn=ENDPOINT_URN,
            properties=struct(with_provider(endpoint_inputs(), EndpointProvider())),
        )
    )
    emulator.reset_log()
    waiter = {"endpoint_id": rpc.UNKNOWN, "release": rpc.UNKNOWN, "timeout_s": 60}
    previewed = struct(with_provider(waiter, EndpointRolloutProvider()))
    checked = stub.Check(
        provider_pb2.CheckRequest(urn=ROLLOUT_URN, olds=struct({}), news=previewed)
    )
    assert list(checked.failures) == []
    assert emulator.calls() == []
    declared = {**waiter, "endpoint_id": endpoint.id, "release": "abc"}
    created = stub.Create(
        provider_pb2.CreateRequest(
            urn=ROLLOUT_URN, properties=struct(with_provider(declared, EndpointRolloutProvider()))
        )
    )
    assert created.id == f"{endpoint.id}-rollout"
    assert plain(created.properties)["endpoint_version"] == 1
    assert [r.path for r in emulator.calls()] == [f"/v2/serverless/{endpoint.id}/releases"]
