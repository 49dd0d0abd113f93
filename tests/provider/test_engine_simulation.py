"""The RunPod components deployed for real into the emulator by the engine simulation.

Each test runs `pulumi up` more than once against the same simulated state: the first run
creates, later runs diff against stored outputs exactly as the engine would.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from components.serverless import ComfyServerless
from components.video_pod import VideoPod
from components.worker_wiring import WorkerWiring
from tests.components.builders import serverless_settings, video_pod_settings, worker_wiring
from tests.fakes.runpod_api import RunPodEmulator
from tests.provider.engine import (
    CheckFailedError,
    EngineSimulation,
    ProtectedResourceError,
    run_up,
)
from tests.provider.support import IMAGE, IMAGE_2

ENDPOINT = "pulumi-python:dynamic/runpod:Endpoint"
FAKE_R2_SECRET = "fake-r2-secret"  # a local double's credential, not a real one


def wiring(
    image: str = IMAGE,
    r2_secret: str = FAKE_R2_SECRET,
    pull_token: str = "fake-ghcr-pull-token",  # noqa: S107 - a local double's credential
) -> WorkerWiring:
    return worker_wiring(
        image=image,
        r2_secret_access_key=pulumi.Output.secret(r2_secret),
        registry_token=pulumi.Output.secret(pull_token),
    )


def program(
    *,
    image: str = IMAGE,
    video: bool = True,
    r2_secret: str = FAKE_R2_SECRET,
    allow_volume_deletion: bool = False,
    workers_min: int = 0,
) -> Any:
    def declare() -> None:
        worker = wiring(image, r2_secret)
        changes = {
            "serverless_workersMin": str(workers_min),
            "data_allowDeletion": str(allow_volume_deletion).lower(),
        }
        ComfyServerless("comfyui", settings=serverless_settings(**changes), worker=worker)
        if video:
            VideoPod("video", settings=video_pod_settings(**changes), worker=worker)

    return declare


def test_first_up_creates_everything_and_the_worker_env_resolves(
    engine: EngineSimulation, emulator: RunPodEmulator
) -> None:
    """One up creates secrets, credentials, volume, template and endpoint in RunPod."""
    run_up(engine, program())
    assert len(emulator.endpoints) == 1
    assert len(emulator.templates) == 1
    assert len(emulator.volumes) == 1
    assert len(emulator.registries) == 2
    assert len(emulator.secrets) == 4
    (endpoint_id,) = emulator.endpoints
    env = emulator.resolve_env(emulator.endpoint(endpoint_id)["env"])
    assert env["R2_SECRET_ACCESS_KEY"] == "fake-r2-secret"
    assert emulator.registry_credentials[emulator.endpoint(endpoint_id)["registry"]] == (
        "acme-bot",
        "fake-ghcr-pull-token",
    )


def test_no_op_up_makes_no_call_at_all(engine: EngineSimulation, emulator: RunPodEmulator) -> None:
    """Unchanged config: every diff is offline and empty, so RunPod sees zero requests."""
    run_up(engine, program())
    emulator.reset_log()
    run_up(engine, program())
    assert emulator.calls() == []
    assert engine.changed() == []


def test_new_digest_on_the_endpoint_is_exactly_one_patch(
    engine: EngineSimulation, emulator: RunPodEmulator
) -> None:
    """An image roll PATCHes the endpoint once with only the image and touches nothing else."""
    run_up(engine, program(video=False))
    emulator.reset_log()
    run_up(engine, program(video=False, image=IMAGE_2))
    (write,) = emulator.writes()
    assert write.method == "PATCH"
    assert write.path.startswith("/v2/serverless/")
    assert write.body == {"image": IMAGE_2}
    assert engine.changed() == [("update", ENDPOINT, "comfyui-endpoint")]


def test_rotated_r2_secret_starts_a_new_release_that_reaches_warm_workers(
    engine: EngineSimulation, emulator: RunPodEmulator
) -> None:
    """The secret is PATCHed, then the endpoint's env revision: a release the warm worker
    rolls onto, so it stops using the revoked key; the env carries no value."""
    run_up(engine, program(video=False, workers_min=1))
    (endpoint_id,) = emulator.endpoints
    assert emulator.worker_envs(endpoint_id)[0]["R2_SECRET_ACCESS_KEY"] == FAKE_R2_SECRET
    emulator.reset_log()
    run_up(engine, program(video=False, workers_min=1, r2_secret="rotated-r2-secret"))
    writes = [(r.method, r.path.rsplit("/", 1)[0]) for r in emulator.writes()]
    assert writes == [("PATCH", "/v2/account/secrets"), ("PATCH", "/v2/serverless")]
    (_, endpoint_patch) = emulator.writes()
    assert set(endpoint_patch.body) == {"env"}
    assert "rotated-r2-secret" not in json.dumps(endpoint_patch.body)
    assert emulator.endpoints[endpoint_id].version == 2
    emulator.finish_rollouts()
    assert emulator.worker_envs(endpoint_id)[0]["R2_SECRET_ACCESS_KEY"] == "rotated-r2-secret"


def test_unchanged_secrets_keep_the_revision_so_a_rerun_starts_no_release(
    engine: EngineSimulation, emulator: RunPodEmulator
) -> None:
    """The revision comes from salted hashes that only a new value changes."""
    run_up(engine, program(video=False))
    (endpoint_id,) = emulator.endpoints
    revision = emulator.endpoint(endpoint_id)["env"]["WORKER_ENV_REVISION"]
    run_up(engine, program(video=False))
    assert emulator.endpoint(endpoint_id)["env"]["WORKER_ENV_REVISION"] == revision
    assert emulator.endpoints[endpoint_id].version == 1


def test_scaling_change_patches_workers_only(
    engine: EngineSimulation, emulator: RunPodEmulator
) -> None:
    """Prod's warm worker: workers_min 0 -> 1 is one PATCH of `workers`."""
    run_up(engine, program(video=False))
    emulator.reset_log()
    run_up(engine, program(video=False, workers_min=1))
    assert [r.body for r in emulator.writes()] == [
        {"workers": {"min": 1, "max": 3, "idleTimeout": 5}}
    ]


def test_dropping_the_video_pod_deletes_its_objects(
    engine: EngineSimulation, emulator: RunPodEmulator
) -> None:
    """Resources a run no longer declares are deleted, the serverless side untouched, once
    the volume's protection is lifted (data.allowDeletion) in an up of its own."""
    run_up(engine, program())
    with pytest.raises(ProtectedResourceError):
        run_up(engine, program(video=False))
    assert len(emulator.volumes) == 1
    run_up(engine, program(allow_volume_deletion=True))
    run_up(engine, program(video=False))
    assert emulator.templates == {}
    assert emulator.volumes == {}
    assert len(emulator.registries) == 1
    assert len(emulator.endpoints) == 1


def test_refresh_then_up_restores_idle_scale_down(
    engine: EngineSimulation, emulator: RunPodEmulator
) -> None:
    """Refresh records RunPod's workers.max=0; the next up PATCHes the declared max back."""
    run_up(engine, program(video=False))
    (endpoint_id,) = emulator.endpoints
    emulator.idle_for_days(endpoint_id, 7)
    engine.refresh()
    emulator.reset_log()
    run_up(engine, program(video=False))
    assert [r.body for r in emulator.writes()] == [
        {"workers": {"min": 0, "max": 3, "idleTimeout": 5}}
    ]
    assert emulator.endpoint(endpoint_id)["workers"]["max"] == 3


def test_check_failure_stops_the_up_before_any_call(
    engine: EngineSimulation, emulator: RunPodEmulator
) -> None:
    """A tag instead of a digest fails check: nothing is created."""
    with pytest.raises(CheckFailedError, match="pinned by digest"):
        run_up(engine, program(video=False, image="ghcr.io/acme/comfyui-worker:latest"))
    assert emulator.endpoints == {}


def test_rotated_pull_token_creates_the_new_credential_repoints_then_deletes_the_old(
    engine: EngineSimulation, emulator: RunPodEmulator
) -> None:
    """Registry credentials cannot be updated: create the new one, PATCH the endpoint to it,
    and only then delete the old one, so nothing references a missing credential."""

    def declare(token: str) -> Any:
        def program_with_token() -> None:
            ComfyServerless(
                "comfyui", settings=serverless_settings(), worker=wiring(pull_token=token)
            )

        return program_with_token

    run_up(engine, declare("fake-pull-token-1"))
    (old_registry,) = emulator.registries
    emulator.reset_log()
    run_up(engine, declare("fake-pull-token-2"))
    (new_registry,) = emulator.registries
    assert new_registry != old_registry
    assert emulator.registry_credentials[new_registry] == ("acme-bot", "fake-pull-token-2")
    assert [(r.method, r.path.split("/")[2]) for r in emulator.writes()] == [
        ("POST", "registries"),
        ("PATCH", "serverless"),
        ("DELETE", "registries"),
    ]
    assert emulator.writes()[1].body == {"registry": new_registry}


def test_pull_token_rotation_with_adopt_left_on_never_deletes_the_credential_in_use(
    engine: EngineSimulation, emulator: RunPodEmulator
) -> None:
    """`runpod.adoptExisting` left true: the adopting create must not delete the credential
    the endpoint still uses; the engine deletes it after repointing, as without adopt."""

    def declare(token: str) -> Any:
        def program_with_token() -> None:
            settings = serverless_settings(runpod_adoptExisting="true")
            ComfyServerless("comfyui", settings=settings, worker=wiring(pull_token=token))

        return program_with_token

    run_up(engine, declare("fake-pull-token-1"))
    (old_registry,) = emulator.registries
    emulator.reset_log()
    run_up(engine, declare("fake-pull-token-2"))
    assert emulator.credential_losses == []
    (new_registry,) = emulator.registries
    assert new_registry != old_registry
    assert [(r.method, r.path.split("/")[2]) for r in emulator.writes()] == [
        ("POST", "registries"),
        ("PATCH", "serverless"),
        ("DELETE", "registries"),
    ]
