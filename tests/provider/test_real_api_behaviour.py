"""The provider against RunPod as it really behaves: sets read back in RunPod's order,
defaults filled in, objects in use, names taken before our POST, duplicate names answered
with 400 or 409, and an error answer to a write that committed."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import requests

from components.runpod.api import RunPodClient
from components.runpod.providers import (
    EndpointProvider,
    NetworkVolumeProvider,
    ObjectInUseError,
    RegistryProvider,
    SecretProvider,
    TemplateProvider,
)
from tests.fakes.runpod_api import DEFAULT_API_KEY, RunPodEmulator, running_emulator
from tests.provider.support import (
    IMAGE,
    as_wire,
    configured,
    endpoint_inputs,
    secret_inputs,
    template_inputs,
    volume_inputs,
)

AUTH = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}


def registry_inputs(**overrides: object) -> dict[str, object]:
    props: dict[str, object] = {
        "name": "comfyui_runpod_staging_ghcr_pod",
        "username": "acme-bot",
        "password": "fake-pull-token-1",
        "adopt_existing": False,
    }
    props.update(overrides)
    return props


def start_pod(emulator: RunPodEmulator, **body: object) -> dict[str, Any]:
    """A person starts a pod (POST /v2/pods), as the video pod's users do."""
    response = requests.post(
        f"{emulator.url}/v2/pods",
        json={"name": "session", "gpu": {"id": "NVIDIA A40"}, **body},
        headers=AUTH,
        timeout=5,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


# -- lists RunPod treats as sets -------------------------------------------------------------


def test_sets_read_back_in_runpods_order_are_no_diff_no_patch_no_release(
    emulator: RunPodEmulator,
) -> None:
    """Pools, exclusions, data centers and volumes in another order: nothing to do."""
    volumes = [
        configured(NetworkVolumeProvider).create(volume_inputs(name=n, data_center_id="EU-RO-1")).id
        for n in ("b", "a")
    ]
    declared = endpoint_inputs(
        gpu={
            "pools": ["ADA_24", "AMPERE_24"],
            "excludedTypes": ["NVIDIA L4", "NVIDIA GeForce RTX 3090"],
        },
        data_center_ids=["US-KS-2", "EU-RO-1"],
        network_volume_ids=sorted(volumes, reverse=True),
    )
    provider = configured(EndpointProvider)
    created = provider.create(declared)
    live = emulator.endpoint(created.id)
    assert live["gpu"]["pools"] != declared["gpu"]["pools"]
    assert live["dataCenterIds"] != declared["data_center_ids"]
    read = provider.read(created.id, as_wire(created.outs))
    assert read.outs is not None
    assert provider.diff(created.id, as_wire(read.outs), as_wire(declared)).changes is False
    reordered = {
        **declared,
        "gpu": {
            "pools": ["AMPERE_24", "ADA_24"],
            "excludedTypes": ["NVIDIA GeForce RTX 3090", "NVIDIA L4"],
        },
        "data_center_ids": ["EU-RO-1", "US-KS-2"],
        "network_volume_ids": sorted(volumes),
    }
    assert provider.diff(created.id, as_wire(read.outs), as_wire(reordered)).changes is False
    emulator.reset_log()
    provider.update(created.id, as_wire(read.outs), as_wire(reordered))
    assert emulator.writes() == []
    assert emulator.endpoints[created.id].version == 1


def test_a_real_pool_change_is_still_a_patch(emulator: RunPodEmulator) -> None:
    """Comparing as sets hides reorders only: another pool is a change."""
    provider = configured(EndpointProvider)
    created = provider.create(endpoint_inputs())
    wider = endpoint_inputs(gpu={"pools": ["ADA_24", "AMPERE_24", "ADA_48_PRO"], "count": 1})
    assert provider.diff(created.id, as_wire(created.outs), as_wire(wider)).changes is True


def test_an_exclusion_outside_the_pools_fails_naming_the_call_and_runpods_detail(
    emulator: RunPodEmulator,
) -> None:
    """serverless.excludedGpuTypes with a type none of the pools holds: RunPod's 400 reaches
    the operator with the call, the host, the status and RunPod's own words."""
    provider = configured(EndpointProvider)
    typo = endpoint_inputs(gpu={"pools": ["ADA_24"], "count": 1, "excludedTypes": ["NVIDIA L40"]})
    with pytest.raises(RuntimeError) as refused:
        provider.create(typo)
    message = str(refused.value)
    host = emulator.url.split("//", 1)[1]
    for part in ("POST /v2/serverless", host, "400", "not GPU types in pools"):
        assert part in message, message
    assert emulator.endpoints == {}


# -- CUDA: a floor on endpoints, an exact set on templates -------------------------------------

FLOOR = {"pools": ["ADA_24", "AMPERE_24"], "count": 1, "minCudaVersion": "12.8"}
EXACT = {"pools": ["ADA_24", "AMPERE_24"], "count": 1, "allowedCudaVersions": ["12.8", "12.9"]}


def test_an_endpoint_moves_from_an_exact_cuda_set_to_a_floor_in_one_patch(
    emulator: RunPodEmulator,
) -> None:
    """RunPod refuses a set and a floor together and a PATCH clears neither by itself:
    the PATCH that sets the floor clears the set, and the result reads back as declared."""
    provider = configured(EndpointProvider)
    created = provider.create(endpoint_inputs(gpu=EXACT))
    floor = endpoint_inputs(gpu=FLOOR)
    updated = provider.update(created.id, as_wire(created.outs), as_wire(floor))
    live = emulator.endpoint(created.id)["gpu"]
    assert (live["minCudaVersion"], live["allowedCudaVersions"]) == ("12.8", [])
    read = provider.read(created.id, as_wire(updated.outs))
    assert read.outs is not None
    assert provider.diff(created.id, as_wire(read.outs), as_wire(floor)).changes is False


def test_adopting_an_endpoint_with_an_exact_cuda_set_writes_the_declared_floor(
    emulator: RunPodEmulator,
) -> None:
    """The adopted endpoint's set is cleared in the same PATCH that sets the floor."""
    theirs = configured(EndpointProvider).create(endpoint_inputs(gpu=EXACT))
    adopted = configured(EndpointProvider).create(endpoint_inputs(gpu=FLOOR, adopt_existing=True))
    assert adopted.id == theirs.id
    live = emulator.endpoint(theirs.id)["gpu"]
    assert (live["minCudaVersion"], live["allowedCudaVersions"]) == ("12.8", [])


@pytest.mark.parametrize(
    "gpu", [{**FLOOR, "minCudaVersion": "12"}, {**EXACT, "allowedCudaVersions": ["12.8.1"]}]
)
def test_a_malformed_cuda_version_fails_check_offline(gpu: dict[str, Any]) -> None:
    """`major.minor` only, as RunPod's create and update bodies take it."""
    failures = EndpointProvider().check({}, endpoint_inputs(gpu=gpu)).failures
    assert [f.property for f in failures] == ["gpu"]
    assert "must look like 12.8" in failures[0].reason


def test_template_cuda_versions_compare_as_a_set(emulator: RunPodEmulator) -> None:
    """allowedCudaVersions in another order is no change of the template."""
    provider = configured(TemplateProvider)
    created = provider.create(template_inputs(allowed_cuda_versions=["12.8", "12.9"]))
    other_order = template_inputs(allowed_cuda_versions=["12.9", "12.8"])
    assert provider.diff(created.id, as_wire(created.outs), as_wire(other_order)).changes is False


# -- defaults RunPod fills in ----------------------------------------------------------------


def test_volume_tier_runpod_fills_in_is_never_a_diff_or_a_replace(emulator: RunPodEmulator) -> None:
    """No tier declared: the data center's tier reads back; declaring that tier is no change."""
    provider = configured(NetworkVolumeProvider)
    created = provider.create(volume_inputs(data_center_id="EU-RO-1"))
    assert emulator.volumes[created.id]["type"] == "HIGH_PERFORMANCE"
    read = provider.read(created.id, as_wire(created.outs))
    assert read.outs is not None
    assert read.outs["actual_volume_type"] == "HIGH_PERFORMANCE"
    for declared in (volume_inputs(), volume_inputs(volume_type="HIGH_PERFORMANCE")):
        diff = provider.diff(created.id, as_wire(read.outs), as_wire(declared))
        assert (diff.changes, diff.replaces) == (False, [])
    other = provider.diff(created.id, as_wire(read.outs), volume_inputs(volume_type="STANDARD"))
    assert other.replaces == ["volume_type"]


def test_endpoint_always_states_its_timeout_so_runpods_zero_never_reads_back(
    emulator: RunPodEmulator,
) -> None:
    """RunPod stores 0 for a create without `timeout`; the provider always sends it."""
    provider = configured(EndpointProvider)
    created = provider.create(endpoint_inputs(timeout_ms=660_000))
    assert emulator.calls("POST")[0].body["timeout"] == 660_000
    assert emulator.endpoint(created.id)["timeout"] == 660_000


# -- objects in use ------------------------------------------------------------------------


def test_volume_delete_in_use_is_retried_then_fails_naming_the_user(
    emulator: RunPodEmulator,
) -> None:
    """A pod on the volume: the delete retries within its bound, then names the pod."""
    volume = configured(NetworkVolumeProvider).create(volume_inputs())
    pod = start_pod(
        emulator,
        image=IMAGE,
        mounts={"network": [{"volumeId": volume.id, "path": "/workspace"}]},
    )
    with pytest.raises(ObjectInUseError) as held:
        configured(NetworkVolumeProvider).delete(volume.id, volume.outs)
    assert f"pod {pod['id']} (session)" in str(held.value)
    assert "Terminate those pods" in str(held.value)
    assert len(emulator.calls("DELETE")) > 1
    assert volume.id in emulator.volumes


def test_volume_delete_waits_out_a_short_hold(emulator: RunPodEmulator) -> None:
    """Refused twice as attached, then free: deleted within the bound."""
    volume = configured(NetworkVolumeProvider).create(volume_inputs())
    emulator.inject(
        "DELETE", r"^/v2/network-volumes/", status=400, detail="volume is attached", times=2
    )
    configured(NetworkVolumeProvider).delete(volume.id, volume.outs)
    assert emulator.volumes == {}


def test_registry_in_use_by_a_pod_is_left_with_a_warning_naming_it(
    emulator: RunPodEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The delete never fails the up: after its bound it warns, naming credential and pod."""
    provider = configured(RegistryProvider)
    created = provider.create(registry_inputs())
    pod = start_pod(emulator, image=IMAGE, registry=created.id)
    with caplog.at_level(logging.WARNING, logger="components.runpod.providers"):
        provider.delete(created.id, created.outs)
    assert created.id in emulator.registries
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert f"registry credential {created.id} is still in use" in warning.getMessage()
    assert f"pod {pod['id']} (session)" in warning.getMessage()


def test_registry_delete_retries_while_a_pod_still_holds_it(emulator: RunPodEmulator) -> None:
    """Refused as in use twice, then deleted: no warning needed."""
    provider = configured(RegistryProvider)
    created = provider.create(registry_inputs())
    emulator.inject(
        "DELETE",
        r"^/v2/registries/",
        status=400,
        detail="Registry credential is in use by a pod and cannot be deleted",
        times=2,
    )
    provider.delete(created.id, created.outs)
    assert emulator.registries == {}
    assert [r.status for r in emulator.calls("DELETE")] == [400, 400, 204]


# -- no silent adoption ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider_class", "inputs", "collection", "kind"),
    [
        (SecretProvider, secret_inputs(), "secrets", "secret"),
        (TemplateProvider, template_inputs(), "templates", "template"),
    ],
)
def test_a_same_named_object_from_before_the_post_is_never_taken_silently(
    emulator: RunPodEmulator,
    provider_class: type[SecretProvider | TemplateProvider],
    inputs: dict[str, Any],
    collection: str,
    kind: str,
) -> None:
    """It exists before our create: the up fails naming it and the adopt option, no POST,
    the object untouched."""
    theirs = configured(provider_class).create({**inputs, "description": "theirs"})
    before = dict(getattr(emulator, collection)[theirs.id])
    emulator.reset_log()
    with pytest.raises(RuntimeError) as taken:
        configured(provider_class).create(inputs)
    message = str(taken.value)
    assert f"a {kind} named {inputs['name']!r} (id {theirs.id})" in message
    assert "adopt_existing=True" in message
    assert "runpod.adoptExisting" in message
    assert emulator.calls("POST") == []
    assert getattr(emulator, collection)[theirs.id] == before


def test_adopting_a_secret_writes_the_declared_value(emulator: RunPodEmulator) -> None:
    """With adopt, RunPod ends up holding what state says."""
    theirs = configured(SecretProvider).create(secret_inputs(value="their-v4lue"))
    adopted = configured(SecretProvider).create(secret_inputs(adopt_existing=True))
    assert adopted.id == theirs.id
    assert emulator.secret_values[theirs.id] == "r2-secret-value-1"


def test_adopting_a_template_writes_the_declared_settings(emulator: RunPodEmulator) -> None:
    """The adopted template is PATCHed to the declared image and env."""
    theirs = configured(TemplateProvider).create(template_inputs(env={"OLD": "1"}))
    adopted = configured(TemplateProvider).create(template_inputs(adopt_existing=True))
    assert adopted.id == theirs.id
    assert emulator.templates[theirs.id]["env"] == template_inputs()["env"]


def test_adopting_a_registry_replaces_the_older_generations_with_the_declared_token(
    emulator: RunPodEmulator,
) -> None:
    """A credential cannot be read or updated: adopt creates ours, then deletes the older."""
    console = requests.post(
        f"{emulator.url}/v2/registries",
        json={"name": "comfyui_runpod_staging_ghcr_pod", "username": "u", "password": "p4ss"},
        headers=AUTH,
        timeout=5,
    ).json()
    unrelated = requests.post(
        f"{emulator.url}/v2/registries",
        json={"name": "comfyui_runpod_staging_ghcr_pod_old", "username": "u", "password": "p4ss"},
        headers=AUTH,
        timeout=5,
    ).json()
    adopted = configured(RegistryProvider).create(registry_inputs(adopt_existing=True))
    assert set(emulator.registries) == {adopted.id, unrelated["id"]}
    assert console["id"] not in emulator.registries
    assert emulator.registry_credentials[adopted.id] == ("acme-bot", "fake-pull-token-1")


def test_adopting_a_registry_keeps_an_older_generation_a_template_still_uses(
    emulator: RunPodEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """RunPod would silently clear the template's reference: the older credential stays,
    with a warning naming who uses it."""
    older = configured(RegistryProvider).create(registry_inputs())
    template = configured(TemplateProvider).create(template_inputs(registry_id=older.id))
    with caplog.at_level(logging.WARNING, logger="components.runpod.providers"):
        adopted = configured(RegistryProvider).create(
            registry_inputs(password="fake-pull-token-2", adopt_existing=True)
        )
    assert set(emulator.registries) == {older.id, adopted.id}
    assert emulator.templates[template.id]["registry"] == older.id
    assert emulator.credential_losses == []
    assert any(
        older.id in r.getMessage() and f"template {template.id}" in r.getMessage()
        for r in caplog.records
    )


def test_without_adopt_a_registry_never_touches_a_same_named_credential(
    emulator: RunPodEmulator,
) -> None:
    """Generation names never collide: ours is created beside it, theirs is left alone."""
    console = requests.post(
        f"{emulator.url}/v2/registries",
        json={"name": "comfyui_runpod_staging_ghcr_pod", "username": "u", "password": "p4ss"},
        headers=AUTH,
        timeout=5,
    ).json()
    created = configured(RegistryProvider).create(registry_inputs())
    assert set(emulator.registries) == {console["id"], created.id}


class _RacedTemplateProvider(TemplateProvider):
    """Someone creates the same name between our list and our POST."""

    def _named(self, name: str) -> list[dict[str, Any]]:
        found = super()._named(name)
        if not found and not getattr(self, "_raced", False):
            self._raced = True
            body = {"name": name, "image": IMAGE}
            self._client().request("POST", "/v2/templates", json=body)
        return found


@pytest.mark.parametrize("status", [400, 409])
def test_a_name_taken_between_list_and_post_fails_naming_it_for_400_and_409(
    status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whichever status RunPod answers for a duplicate, the error names the object."""
    with running_emulator(duplicate_name_status=status) as emu:
        monkeypatch.setenv("RUNPOD_API_BASE_URL", emu.url)
        with pytest.raises(RuntimeError, match="adopt_existing=True") as taken:
            configured(_RacedTemplateProvider).create(template_inputs())
        (raced,) = emu.templates
        assert f"(id {raced})" in str(taken.value)
        assert [r.status for r in emu.calls("POST")] == [201, status]


@pytest.mark.parametrize("status", [400, 409])
def test_a_committed_create_answered_with_an_error_is_found_not_duplicated(
    status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 502 after the commit, then the duplicate-name refusal of the retry: the lookup
    adopts our own first write, whichever status the duplicate gets."""
    with running_emulator(duplicate_name_status=status) as emu:
        client = RunPodClient(DEFAULT_API_KEY, base_url=emu.url, backoff_factor=0.01)
        emu.inject("POST", r"^/v2/templates$", status_after_commit=502)
        seen: list[int] = []

        def find_existing() -> dict[str, Any] | None:
            # The first lookup runs before the write is visible (eventual consistency).
            seen.append(len(seen))
            if len(seen) == 1:
                return None
            return next((t for t in emu.templates.values() if t["name"] == "t"), None)

        body = {"name": "t", "image": IMAGE}
        created = client.create("/v2/templates", body, find_existing=find_existing)
        assert list(emu.templates) == [created["id"]]
        assert [r.status for r in emu.calls("POST")] == [502, status]


def test_a_paginated_list_is_followed_so_a_name_on_page_two_is_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unconfirmed for v2: should lists come in pages with a cursor, the name lookup reads
    them all, so an object on a later page is never missed (nor silently duplicated)."""
    with running_emulator(list_page_size=2) as emu:
        monkeypatch.setenv("RUNPOD_API_BASE_URL", emu.url)
        for index in range(4):
            configured(TemplateProvider).create(template_inputs(name=f"other-{index}"))
        theirs = configured(TemplateProvider).create(template_inputs())
        with pytest.raises(RuntimeError, match=f"id {theirs.id}"):
            configured(TemplateProvider).create(template_inputs())
        cursors = [r.query.get("cursor") for r in emu.calls("GET", "/v2/templates")][-3:]
        assert cursors == [None, ["2"], ["4"]]


def test_a_secret_whose_name_differs_only_in_case_is_not_taken_for_ours(
    emulator: RunPodEmulator,
) -> None:
    """`?name=` ignores case: the provider compares names exactly, so `R2_KEY` is neither
    reported as a clash nor adopted when `r2_key` is declared."""
    other = configured(SecretProvider).create(secret_inputs(name="R2_KEY", value="their-v4lue"))
    ours = configured(SecretProvider).create(
        secret_inputs(name="r2_key", value="our-v4lue", adopt_existing=True)
    )
    assert ours.id != other.id
    assert emulator.secret_values[other.id] == "their-v4lue"
    assert emulator.secret_values[ours.id] == "our-v4lue"


@pytest.mark.parametrize(
    ("provider", "theirs", "ours", "fragment"),
    [
        (
            EndpointProvider,
            endpoint_inputs(
                type="LOAD_BALANCER", scaling={"type": "REQUEST_COUNT", "requestCount": 2}
            ),
            endpoint_inputs(adopt_existing=True),
            "its type is LOAD_BALANCER, the stack declares QUEUE",
        ),
        (
            NetworkVolumeProvider,
            volume_inputs(data_center_id="US-KS-2"),
            volume_inputs(adopt_existing=True),
            "its data center is US-KS-2, the stack declares EU-RO-1",
        ),
    ],
)
def test_an_object_that_differs_where_no_update_reaches_is_never_adopted(
    emulator: RunPodEmulator,
    provider: type[EndpointProvider | NetworkVolumeProvider],
    theirs: dict[str, Any],
    ours: dict[str, Any],
    fragment: str,
) -> None:
    """Adopting a same-named endpoint of another type, or a volume in another data center,
    fails naming both values and writes nothing."""
    existing = configured(provider).create(theirs)
    emulator.reset_log()
    with pytest.raises(RuntimeError, match=f"cannot adopt .* {existing.id}: {fragment}"):
        configured(provider).create(ours)
    assert emulator.writes() == []
