"""API requests per operation: our REST v2 dynamic provider vs the official GraphQL pattern.

One run, same declared deployment (ComfyServerless + VideoPod: 4 secrets, 2 registry
credentials, a network volume, a pod template, a serverless endpoint), same account
background (N unrelated templates, endpoints and secrets). Ours runs through the engine
simulation (tests/provider/engine.py) into the RunPod emulator; the peer replays the
official provider's call pattern (graphql_peer.py) against a counting GraphQL stub.
Scenarios: first `up`, no-op `up`, image roll (new digest), `refresh`, RunPod's idle
scale-down followed by refresh + `up`, a rotated R2 secret, a rotated pull token, and a
create whose answer is lost.

    uv run python bench/provider_calls/run.py               # table (markdown)
    uv run python bench/provider_calls/run.py --json        # one JSON document
    uv run python bench/provider_calls/run.py --background 200

Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pulumi
import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from graphql_peer import GraphQLPeer, GraphQLStub, running_stub  # noqa: E402 - path set above

from components.serverless import ComfyServerless  # noqa: E402
from components.video_pod import VideoPod  # noqa: E402
from components.worker_wiring import WorkerWiring  # noqa: E402
from tests.components.builders import serverless_settings, video_pod_settings  # noqa: E402
from tests.fakes.runpod_api import (  # noqa: E402
    DEFAULT_API_KEY,
    RunPodEmulator,
    running_emulator,
)
from tests.provider.engine import EngineSimulation, run_up  # noqa: E402

IMAGE_1 = "ghcr.io/acme/comfyui-worker@sha256:" + "1" * 64
IMAGE_2 = "ghcr.io/acme/comfyui-worker@sha256:" + "2" * 64
SECRET_VALUE = "bench-r2-secret"  # noqa: S105 - a local double's credential
SECRET_VALUE_2 = "bench-r2-secret-rotated"  # noqa: S105 - a local double's credential
PULL_TOKEN = "bench-ghcr-token"  # noqa: S105 - a local double's credential
PULL_TOKEN_2 = "bench-ghcr-token-rotated"  # noqa: S105 - a local double's credential


@dataclass
class Row:
    """What one scenario cost."""

    requests: int
    writes: int
    bytes_sent: int
    bytes_received: int
    note: str = ""


def our_program(image: str, secret: str = SECRET_VALUE, token: str = PULL_TOKEN) -> Any:
    def declare() -> None:
        worker = WorkerWiring(
            image=image,
            r2_endpoint="https://acct.r2.cloudflarestorage.com",
            r2_bucket="comfyui-runpod-staging",
            r2_prefix="outputs/",
            r2_access_key_id=pulumi.Output.secret("bench-r2-id"),
            r2_secret_access_key=pulumi.Output.secret(secret),
            registry_username="acme-bot",
            registry_token=pulumi.Output.secret(token),
        )
        ComfyServerless("comfyui", settings=serverless_settings(), worker=worker)
        VideoPod("video", settings=video_pod_settings(), worker=worker)

    return declare


def seed_emulator(emulator: RunPodEmulator, count: int) -> None:
    auth = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
    for index in range(count):
        requests.post(
            f"{emulator.url}/v2/templates",
            json={"name": f"other-{index}", "image": IMAGE_1, "env": {"A": "x" * 40}},
            headers=auth,
            timeout=10,
        ).raise_for_status()
        requests.post(
            f"{emulator.url}/v2/serverless",
            json={
                "name": f"other-{index}",
                "type": "QUEUE",
                "image": IMAGE_1,
                "gpu": {"pools": ["ADA_24"]},
                "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
                "env": {"A": "x" * 40},
            },
            headers=auth,
            timeout=10,
        ).raise_for_status()
        requests.post(
            f"{emulator.url}/v2/account/secrets",
            json={"name": f"other_{index}", "value": "v" * 20},
            headers=auth,
            timeout=10,
        ).raise_for_status()


def measure_ours(emulator: RunPodEmulator, action: Any, note: str = "") -> Row:
    emulator.reset_log()
    action()
    log = emulator.calls()
    return Row(
        requests=len(log),
        writes=sum(1 for r in log if r.method != "GET"),
        bytes_sent=sum(r.request_bytes for r in log),
        bytes_received=sum(r.response_bytes for r in log),
        note=note,
    )


def ours(background: int) -> dict[str, Row]:
    rows: dict[str, Row] = {}
    with running_emulator() as emulator:
        os.environ["RUNPOD_API_BASE_URL"] = emulator.url
        seed_emulator(emulator, background)
        engine = EngineSimulation({"runpod:apiKey": DEFAULT_API_KEY})
        rows["first up"] = measure_ours(emulator, lambda: run_up(engine, our_program(IMAGE_1)))
        rows["no-op up"] = measure_ours(emulator, lambda: run_up(engine, our_program(IMAGE_1)))
        rows["image roll"] = measure_ours(emulator, lambda: run_up(engine, our_program(IMAGE_2)))
        rows["refresh"] = measure_ours(emulator, engine.refresh)
        (endpoint_id,) = [
            e for e in emulator.endpoints if not emulator.endpoint(e)["name"].startswith("other-")
        ]
        emulator.idle_for_days(endpoint_id, 8)

        def drift() -> None:
            engine.refresh()
            run_up(engine, our_program(IMAGE_2))

        row = measure_ours(emulator, drift)
        restored = emulator.endpoint(endpoint_id)["workers"]["max"] == 3
        row.note = "workers.max restored" if restored else "workers.max left at 0"
        rows["idle scale-down: refresh + up"] = row
        version = emulator.endpoints[endpoint_id].version
        rows["R2 secret rotation"] = measure_ours(
            emulator, lambda: run_up(engine, our_program(IMAGE_2, SECRET_VALUE_2))
        )
        rolled = emulator.endpoints[endpoint_id].version > version
        rows["R2 secret rotation"].note = "new release" if rolled else "workers keep the old key"
        rows["pull token rotation"] = measure_ours(
            emulator, lambda: run_up(engine, our_program(IMAGE_2, SECRET_VALUE_2, PULL_TOKEN_2))
        )
        rows["pull token rotation"].note = (
            "credential lost meanwhile" if emulator.credential_losses else "no reference lost"
        )
    return rows


def lost_create_ours() -> Row:
    """The endpoint's create answer is lost after the write committed; up is rerun once."""
    with running_emulator() as emulator:
        os.environ["RUNPOD_API_BASE_URL"] = emulator.url
        engine = EngineSimulation({"runpod:apiKey": DEFAULT_API_KEY})
        emulator.inject("POST", r"^/v2/serverless$", drop_after_commit=True)

        def up_twice() -> None:
            run_up(engine, our_program(IMAGE_1))
            run_up(engine, our_program(IMAGE_1))

        row = measure_ours(emulator, up_twice)
        row.note = f"{len(emulator.endpoints)} endpoint(s) exist afterwards"
        return row


def lost_create_peer() -> Row:
    """Same fault for the peer: no retry, `up` fails, the operator reruns it."""
    stub = GraphQLStub()
    stub.drop_after_commit.add("endpoint:save")
    with running_stub(stub) as url:
        client = GraphQLPeer(url)

        def up_twice() -> None:
            # `pulumi up` fails on the lost answer; the operator runs it again.
            with contextlib.suppress(requests.ConnectionError):
                client.up(peer_declared(IMAGE_1))
            client.up(peer_declared(IMAGE_1))

        row = measure_peer(stub, up_twice)
        row.note = f"{len(stub.objects['endpoint'])} endpoint(s) exist afterwards"
        return row


def peer_declared(
    image: str, secret: str = SECRET_VALUE, token: str = PULL_TOKEN
) -> dict[str, tuple[str, dict[str, Any]]]:
    def env(extra: dict[str, str]) -> list[dict[str, str]]:
        base = {
            "R2_ENDPOINT": "https://acct.r2.cloudflarestorage.com",
            "R2_BUCKET": "comfyui-runpod-staging",
            "R2_PREFIX": "outputs/",
            **extra,
        }
        return [{"key": k, "value": v} for k, v in base.items()]

    declared: dict[str, tuple[str, dict[str, Any]]] = {}
    for role in ("serverless", "pod"):
        for key, value in (("r2_access_key_id", "bench-r2-id"), ("r2_secret_access_key", secret)):
            declared[f"{role}-{key}"] = (
                "secret",
                {"name": f"p_{role}_{key}", "value": value, "description": role},
            )
        declared[f"{role}-ghcr"] = (
            "registry",
            {"name": f"p_ghcr_{role}", "username": "acme-bot", "password": token},
        )
    declared["volume"] = ("volume", {"name": "video", "size": 200, "dataCenterId": "EU-RO-1"})
    refs = {
        "R2_ACCESS_KEY_ID": "{{ RUNPOD_SECRET_p_r2_access_key_id }}",
        "R2_SECRET_ACCESS_KEY": "{{ RUNPOD_SECRET_p_r2_secret_access_key }}",
    }
    declared["serverless-template"] = (
        "template",
        {
            "name": "comfyui-serverless",
            "imageName": image,
            "containerDiskInGb": 40,
            "volumeInGb": 0,
            "dockerArgs": "",
            "env": env({**refs, "MODE": "serverless", "MODEL_GROUPS": "flux_dev_fp8"}),
            "isServerless": True,
            "containerRegistryAuthId": "registry-serverless",
        },
    )
    declared["endpoint"] = (
        "endpoint",
        {
            "name": "comfyui",
            "templateId": "template-serverless",
            "gpuIds": "ADA_24,AMPERE_24",
            "gpuCount": 1,
            "workersMin": 0,
            "workersMax": 3,
            "idleTimeout": 5,
            "scalerType": "QUEUE_DELAY",
            "scalerValue": 4,
            "flashBootType": "FLASHBOOT",
            "executionTimeoutMs": 660000,
        },
    )
    declared["pod-template"] = (
        "template",
        {
            "name": "video-pod",
            "imageName": image,
            "containerDiskInGb": 50,
            "volumeInGb": 0,
            "dockerArgs": "",
            "ports": "8188/http,8888/http,22/tcp",
            "volumeMountPath": "/workspace",
            "startJupyter": True,
            "startSsh": True,
            "env": env({**refs, "MODE": "pod", "ENABLE_R2_SYNC": "true"}),
            "containerRegistryAuthId": "registry-pod",
        },
    )
    return declared


def measure_peer(stub: GraphQLStub, action: Any, note: str = "") -> Row:
    stub.log.clear()
    action()
    return Row(
        requests=len(stub.log),
        writes=sum(1 for op, _, _ in stub.log if not op.endswith(":list")),
        bytes_sent=sum(sent for _, sent, _ in stub.log),
        bytes_received=sum(received for _, _, received in stub.log),
        note=note,
    )


def peer(background: int) -> dict[str, Row]:
    stub = GraphQLStub()
    for index in range(background):
        stub.objects["template"][f"bg-t{index}"] = {
            "id": f"bg-t{index}",
            "name": f"other-{index}",
            "imageName": IMAGE_1,
            "env": [{"key": "A", "value": "x" * 40}],
        }
        stub.objects["endpoint"][f"bg-e{index}"] = {
            "id": f"bg-e{index}",
            "name": f"other-{index}",
            "templateId": f"bg-t{index}",
            "gpuIds": "ADA_24",
            "env": [{"key": "A", "value": "x" * 40}],
        }
        stub.objects["secret"][f"bg-s{index}"] = {"id": f"bg-s{index}", "name": f"other_{index}"}
    rows: dict[str, Row] = {}
    with running_stub(stub) as url:
        client = GraphQLPeer(url)
        rows["first up"] = measure_peer(stub, lambda: client.up(peer_declared(IMAGE_1)))
        rows["no-op up"] = measure_peer(stub, lambda: client.up(peer_declared(IMAGE_1)))
        rows["image roll"] = measure_peer(stub, lambda: client.up(peer_declared(IMAGE_2)))
        rows["refresh"] = measure_peer(stub, client.refresh)
        endpoint_id = client.state["endpoint"]["id"]
        stub.objects["endpoint"][endpoint_id]["workersMax"] = 0

        def drift() -> None:
            client.refresh()
            client.up(peer_declared(IMAGE_2))

        row = measure_peer(stub, drift)
        restored = stub.objects["endpoint"][endpoint_id]["workersMax"] == 3
        row.note = "workersMax restored" if restored else "workersMax left at 0 (unseen)"
        rows["idle scale-down: refresh + up"] = row
        rows["R2 secret rotation"] = measure_peer(
            stub,
            lambda: client.up(peer_declared(IMAGE_2, SECRET_VALUE_2)),
            "secret updated; running workers keep the old key",
        )
        rows["pull token rotation"] = measure_peer(
            stub,
            lambda: client.up(peer_declared(IMAGE_2, SECRET_VALUE_2, PULL_TOKEN_2)),
            "credential updated in place (GraphQL)",
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--background", type=int, default=50, help="unrelated objects per kind")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    options = parser.parse_args()
    results = {
        "ours (REST v2)": ours(options.background),
        "official pattern (GraphQL)": peer(options.background),
    }
    results["ours (REST v2)"]["lost create answer, up run twice"] = lost_create_ours()
    results["official pattern (GraphQL)"]["lost create answer, up run twice"] = lost_create_peer()
    if options.json:
        print(
            json.dumps(
                {k: {s: asdict(r) for s, r in v.items()} for k, v in results.items()}, indent=2
            )
        )
        return
    print(f"background: {options.background} unrelated templates, endpoints and secrets\n")
    print("| scenario | provider | requests | writes | KiB sent | KiB received | note |")
    print("|---|---|---:|---:|---:|---:|---|")
    for scenario in results["ours (REST v2)"]:
        for name, rows in results.items():
            row = rows[scenario]
            print(
                f"| {scenario} | {name} | {row.requests} | {row.writes} | "
                f"{row.bytes_sent / 1024:.1f} | {row.bytes_received / 1024:.1f} | {row.note} |"
            )


if __name__ == "__main__":
    main()
