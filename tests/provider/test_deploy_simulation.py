"""Deploy simulation: the whole program for a stack, its RunPod resources really deployed.

`__main__.py` runs under the engine simulation with the committed stack file's values
(fake secrets), so the dynamic providers create and update objects in the RunPod
emulator, while cloud resources are echoed by the recording mocks. The RunPod components
are the ones the composition root declares itself: nothing is added here.
"""

from __future__ import annotations

import copy
import json
import logging
import runpy
from collections.abc import Mapping
from pathlib import Path

import pytest
import requests

from components.runpod import providers
from tests.fakes.runpod_api import DEFAULT_API_KEY, RunPodEmulator
from tests.fakes.stack_values import ROOT, stack_values
from tests.provider.engine import EngineSimulation, StoredResource, run_up

# The first program run in a session pays for importing pulumi_cloudflare (~15 s).
pytestmark = pytest.mark.slow

MAIN = ROOT / "__main__.py"
ENDPOINT = "pulumi-python:dynamic/runpod:Endpoint"
TEMPLATE = "pulumi-python:dynamic/runpod:Template"
ROLLOUT = "pulumi-python:dynamic/runpod:EndpointRollout"
BEFORE_ISSUE_9 = Path(__file__).parent / "data" / "staging_state_before_issue_9.json"
NEW_DIGEST = "sha256:" + "e" * 64
KV = "cloudflare:index/workersKv:WorkersKv"


def up(engine: EngineSimulation, stack: str, overrides: Mapping[str, str] | None = None) -> None:
    """One `pulumi up` of the whole program for `stack`."""
    config, secret_keys = stack_values(stack, overrides)

    def program() -> None:
        runpy.run_path(str(MAIN), run_name="__main__")

    run_up(engine, program, stack=stack, config=config, secret_keys=secret_keys)


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_stack_deploys_its_runpod_objects_and_a_rerun_makes_no_write(
    engine: EngineSimulation, emulator: RunPodEmulator, stack: str
) -> None:
    """First up creates the endpoint (and staging's video pod); an unchanged up writes nothing."""
    up(engine, stack)
    assert len(emulator.endpoints) == 1
    (endpoint,) = (emulator.endpoint(eid) for eid in emulator.endpoints)
    assert "@sha256:" in endpoint["image"]
    assert len(emulator.templates) == (1 if stack == "staging" else 0)
    assert endpoint["workers"]["min"] == (0 if stack == "staging" else 1)
    emulator.reset_log()
    up(engine, stack)
    assert emulator.writes() == []
    assert engine.changed() == []


def test_new_image_digest_is_exactly_one_patch_of_the_endpoint(
    engine: EngineSimulation, emulator: RunPodEmulator
) -> None:
    """Promoting a new digest in prod PATCHes the endpoint's image once, nothing else."""
    up(engine, "prod")
    emulator.reset_log()
    up(engine, "prod", {"image.digest": NEW_DIGEST})
    (write,) = emulator.writes()
    assert write.method == "PATCH"
    assert write.path.startswith("/v2/serverless/")
    assert set(write.body) == {"image"}
    assert write.body["image"].endswith("@" + NEW_DIGEST)
    # prod waits for the release (serverless.waitForRollout): `up` polled it after the PATCH.
    assert any(call.path.endswith("/releases") for call in emulator.calls("GET"))


def test_rollback_to_scenario_makes_no_runpod_call(
    engine: EngineSimulation, emulator: RunPodEmulator
) -> None:
    """`rollout.provider=scenario` flips the KV flag only: RunPod sees no request at all."""
    up(engine, "prod")
    emulator.reset_log()
    up(engine, "prod", {"rollout.provider": "scenario"})
    assert emulator.calls() == []
    assert engine.changed() == []
    (flag,) = engine.of_type(KV)
    assert json.loads(flag.inputs["value"])["provider"] == "scenario"


def test_network_volume_is_created_and_attached_when_configured(
    engine: EngineSimulation, emulator: RunPodEmulator
) -> None:
    """`serverless.networkVolumeGb` creates the volume and the endpoint mounts it there."""
    up(
        engine,
        "prod",
        {"serverless.networkVolumeGb": "150", "serverless.networkVolumeDataCenterId": "EU-RO-1"},
    )
    (volume,) = emulator.volumes.values()
    assert (volume["size"], volume["dataCenter"]) == (150, "EU-RO-1")
    (endpoint,) = (emulator.endpoint(eid) for eid in emulator.endpoints)
    assert endpoint["networkVolumes"] == [volume["id"]]
    assert endpoint["dataCenterIds"] == ["EU-RO-1"]
    assert endpoint["env"]["MODELS_DIR"].startswith("/runpod-volume/")


# -- the staging stack over a sequence of ups (issue 9's "done when") ------------------------


class FakeClock:
    """The rollout wait's clock: sleeping advances it at once, so a 60 s bound takes no time."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def runpod_writes(emulator: RunPodEmulator) -> list[tuple[str, str]]:
    """(method, collection) of every write RunPod saw, e.g. ("PATCH", "serverless")."""
    return [
        (r.method, r.path.removeprefix("/v2/").removeprefix("account/").split("/")[0])
        for r in emulator.writes()
    ]


def start_session_pod(engine: EngineSimulation, emulator: RunPodEmulator) -> str:
    """A person starts a pod with the stack's exported `videoPodRequest` body."""
    (template,) = engine.of_type(TEMPLATE)
    (volume_id,) = (v for v, vol in emulator.volumes.items() if vol["name"].endswith("workspace"))
    body = {
        "name": "session",
        "templateId": engine.state[f"{TEMPLATE}::{template.name}"].id,
        "gpu": {"id": "NVIDIA A100 80GB PCIe", "count": 1},
        "dataCenterIds": ["EU-RO-1"],
        "mounts": {"network": [{"volumeId": volume_id, "path": "/workspace"}]},
    }
    response = requests.post(
        f"{emulator.url}/v2/pods",
        json=body,
        headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"},
        timeout=5,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_staging_over_a_sequence_of_ups_against_runpod_as_it_behaves(
    engine: EngineSimulation,
    emulator: RunPodEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Lists in RunPod's order and filled-in defaults: a rerun writes nothing; an image roll
    is one endpoint PATCH plus the template's; a rotated R2 secret starts a release; a
    rotated pull token never leaves a reference to a missing credential while a pod holds
    the old one; a stuck release fails the up but keeps the endpoint; no volume is deleted."""
    # A fake clock for the waits and retries, at RunPod-like poll intervals.
    monkeypatch.setattr(providers, "time", FakeClock())
    monkeypatch.setattr(providers.EndpointRolloutProvider, "poll_s", 5.0)
    monkeypatch.setattr(providers.RegistryProvider, "in_use_poll_s", 5.0)
    monkeypatch.setattr(providers.RegistryProvider, "in_use_budget_s", 30.0)
    rollout_bound = {"serverless.rolloutTimeoutSeconds": "60"}

    # 1. first up: everything created; RunPod reorders the pools and fills in the tier.
    up(engine, "staging", rollout_bound)
    (endpoint_id,) = emulator.endpoints
    volumes = set(emulator.volumes)
    endpoint = emulator.endpoint(endpoint_id)
    assert endpoint["gpu"]["pools"] == ["AMPERE_24", "ADA_24"]  # declared ADA_24,AMPERE_24
    assert endpoint["gpu"]["minCudaVersion"] == "12.8"  # a floor: newer CUDA qualifies
    assert endpoint["gpu"]["allowedCudaVersions"] == []
    (template,) = emulator.templates.values()
    assert template["allowedCudaVersions"] == ["12.8", "12.9", "13.0"]
    assert {v["type"] for v in emulator.volumes.values()} == {"HIGH_PERFORMANCE"}

    # 2. the same up again: not one write.
    emulator.reset_log()
    up(engine, "staging", rollout_bound)
    assert emulator.writes() == []

    # 3. an image roll: one endpoint PATCH, the template's image, no DELETE.
    emulator.reset_log()
    rolled = {**rollout_bound, "image.digest": NEW_DIGEST}
    up(engine, "staging", rolled)
    assert sorted(runpod_writes(emulator)) == [("PATCH", "serverless"), ("PATCH", "templates")]
    assert all(set(w.body) == {"image"} for w in emulator.writes())
    assert emulator.endpoints[endpoint_id].version == 2

    # 4. a rotated R2 secret: the secrets, then a new endpoint release and the template.
    engine.roll_token("-worker-token")
    emulator.reset_log()
    up(engine, "staging", rolled)
    assert sorted(runpod_writes(emulator)) == [
        ("PATCH", "secrets"),  # the endpoint's R2 secret
        ("PATCH", "secrets"),  # the pod template's R2 secret
        ("PATCH", "serverless"),
        ("PATCH", "templates"),
    ]
    assert emulator.endpoints[endpoint_id].version == 3

    # 5. a rotated pull token while a pod still runs with the old credential.
    pod_id = start_session_pod(engine, emulator)
    old_pod_credential = emulator.pods[pod_id].obj["registry"]
    emulator.reset_log()
    with caplog.at_level(logging.WARNING, logger="components.runpod.providers"):
        up(engine, "staging", {**rolled, "image.pullToken": "fake-ghcr-pull-token-2"})
    assert emulator.credential_losses == []
    order = runpod_writes(emulator)
    deletes = [i for i, write in enumerate(order) if write == ("DELETE", "registries")]
    patches = [i for i, write in enumerate(order) if write[0] == "PATCH"]
    assert order.count(("POST", "registries")) == 2
    assert {order[i][1] for i in patches} == {"serverless", "templates"}
    assert min(deletes) > max(patches)  # repointed first, old credentials deleted last
    assert old_pod_credential in emulator.registries  # held by the pod: left, with a warning
    assert any(old_pod_credential in r.getMessage() for r in caplog.records)
    assert emulator.endpoint(endpoint_id)["registry"] in emulator.registries
    (template,) = emulator.templates.values()
    assert template["registry"] in emulator.registries
    assert template["registry"] != old_pod_credential
    assert len(emulator.registries) == 3  # two new ones, the pod's old one
    assert emulator.endpoints[endpoint_id].version == 4  # the new credential is a release

    # 6. a release that never reaches the busy workers: the up fails, the endpoint stays.
    emulator.set_busy_workers(endpoint_id, 2)
    emulator.finish_rollouts()
    emulator.rollout_workers_per_poll = 0
    stuck = {**rolled, "image.digest": "sha256:" + "f" * 64}
    with pytest.raises(RuntimeError) as failed:
        up(engine, "staging", stuck)
    assert f"endpoint {endpoint_id}" in str(failed.value)
    assert "0/2 workers" in str(failed.value)
    assert engine.state[f"{ENDPOINT}::comfyui-endpoint"].id == endpoint_id

    # 7. once the workers roll, the next up waits again and creates no second endpoint.
    emulator.rollout_workers_per_poll = 1
    emulator.reset_log()
    up(engine, "staging", stuck)
    assert list(emulator.endpoints) == [endpoint_id]
    assert emulator.calls("POST", "/v2/serverless") == []
    assert emulator.writes() == []
    record = emulator.endpoints[endpoint_id]
    assert {w.version for w in record.workers} == {record.version}

    # Throughout: no volume was deleted or replaced.
    assert set(emulator.volumes) == volumes


# -- a stack deployed by the code before issue 9 ----------------------------------------------


def test_first_up_after_upgrading_a_deployed_stack_replaces_and_deletes_nothing(
    engine: EngineSimulation, emulator: RunPodEmulator
) -> None:
    """State and RunPod objects as the pre-issue-9 code left them (recorded, replayed): the
    first up of today's program keeps every id (state names the providers by module and
    class, which stay put), deletes and replaces nothing, leaves volumes and registry
    credentials alone (old credential names keep working without a generation suffix), and
    rolls the endpoint's workers exactly once, for `WORKER_ENV_REVISION` and the CUDA floor
    (documented in CHANGELOG.md and docs/rollout.md). A second up writes nothing."""
    recorded = json.loads(BEFORE_ISSUE_9.read_text(encoding="utf-8"))
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {DEFAULT_API_KEY}"
    for method, path, body in recorded["requests"]:
        answer = session.request(method, f"{emulator.url}{path}", json=body, timeout=5)
        assert answer.status_code == 201, answer.text
    engine.state = {key: StoredResource(**stored) for key, stored in recorded["state"].items()}
    tables = {
        "Endpoint": emulator.endpoints,
        "Template": emulator.templates,
        "NetworkVolume": emulator.volumes,
        "Registry": emulator.registries,
        "Secret": emulator.secrets,
    }
    for stored in engine.state.values():  # the replay rebuilt the recorded objects
        assert stored.id in tables[stored.type.rsplit(":", 1)[1]], stored.name
    volumes, registries = copy.deepcopy(emulator.volumes), dict(emulator.registries)
    (endpoint_id,) = emulator.endpoints
    emulator.reset_log()

    up(engine, recorded["stack"], recorded["config"])

    # Invariants, not the exact plan: features added later (a new secret, an env entry)
    # may add creates and keys, never a replacement, a delete or a second release.
    operations = engine.changed()
    assert not [op for op in operations if op[0] not in ("create", "update")]
    assert ("create", ROLLOUT, "comfyui-rollout") in operations
    assert ("update", ENDPOINT, "comfyui-endpoint") in operations
    assert ("update", TEMPLATE, "video-template") in operations
    writes = runpod_writes(emulator)
    assert not [w for w in writes if w[0] == "DELETE"]
    assert not [w for w in writes if w[0] == "POST" and w[1] != "secrets"]
    (endpoint_patch,) = [w for w in emulator.writes() if w.path.startswith("/v2/serverless/")]
    assert {"env", "gpu"} <= set(endpoint_patch.body)
    assert "WORKER_ENV_REVISION" in endpoint_patch.body["env"]
    assert endpoint_patch.body["gpu"]["minCudaVersion"] == "12.8"
    (template_patch,) = [w for w in emulator.writes() if w.path.startswith("/v2/templates/")]
    assert {"env", "allowedCudaVersions"} <= set(template_patch.body)
    assert emulator.endpoints[endpoint_id].version == 2  # exactly one new release
    assert emulator.volumes == volumes
    assert emulator.registries == registries

    emulator.reset_log()
    up(engine, recorded["stack"], recorded["config"])
    assert emulator.writes() == []
    assert engine.changed() == []
