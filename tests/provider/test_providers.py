"""Provider CRUD, diff, drift and fault semantics for the five kinds, against the emulator."""

from __future__ import annotations

import json
import re

import pytest
from pulumi.output import Unknown

from components.runpod.checks import UNKNOWN
from components.runpod.providers import (
    EndpointProvider,
    EndpointRolloutProvider,
    NetworkVolumeProvider,
    ObjectInUseError,
    RegistryProvider,
    SecretProvider,
    TemplateProvider,
)
from tests.fakes.runpod_api import RunPodEmulator
from tests.provider.support import (
    IMAGE_2,
    as_wire,
    configured,
    endpoint_inputs,
    secret_inputs,
    template_inputs,
    volume_inputs,
)

# -- Secret --------------------------------------------------------------------------------


def test_secret_value_reaches_runpod_but_never_the_outputs(emulator: RunPodEmulator) -> None:
    """The value is stored remotely; outputs carry only a salted hash."""
    provider = configured(SecretProvider)
    created = provider.create(secret_inputs())
    assert emulator.secret_values[created.id] == "r2-secret-value-1"
    assert "r2-secret-value-1" not in json.dumps(created.outs)
    assert created.outs["value_hash"]


def test_secret_rotation_diffs_in_place_and_patches_only_the_value(
    emulator: RunPodEmulator,
) -> None:
    """A new value is a change without replacement, applied by one PATCH of `value`."""
    provider = configured(SecretProvider)
    created = provider.create(secret_inputs())
    same = provider.diff(created.id, as_wire(created.outs), secret_inputs())
    assert same.changes is False
    rotated = secret_inputs(value="r2-secret-value-2")
    diff = provider.diff(created.id, as_wire(created.outs), rotated)
    assert (diff.changes, diff.replaces) == (True, [])
    emulator.reset_log()
    updated = provider.update(created.id, as_wire(created.outs), rotated)
    assert [(r.method, r.body) for r in emulator.writes()] == [
        ("PATCH", {"value": "r2-secret-value-2"})
    ]
    assert emulator.secret_values[created.id] == "r2-secret-value-2"
    assert provider.diff(created.id, updated.outs, rotated).changes is False
    assert "r2-secret-value-2" not in json.dumps(updated.outs)


def test_secret_rename_replaces(emulator: RunPodEmulator) -> None:
    """The secret name is immutable on RunPod: a new name replaces the secret."""
    provider = configured(SecretProvider)
    created = provider.create(secret_inputs())
    diff = provider.diff(created.id, created.outs, secret_inputs(name="other_name"))
    assert diff.replaces == ["name"]


def test_secret_check_rejects_reserved_and_malformed_names() -> None:
    """RUNPOD prefixes and names outside RunPod's pattern fail offline."""
    provider = SecretProvider()
    reserved = provider.check({}, secret_inputs(name="RunPod_key"))
    malformed = provider.check({}, secret_inputs(name="9lives"))
    empty_value = provider.check({}, secret_inputs(value=""))
    assert [f.property for f in reserved.failures] == ["name"]
    assert "RUNPOD" in reserved.failures[0].reason
    assert [f.property for f in malformed.failures] == ["name"]
    assert [f.property for f in empty_value.failures] == ["value"]


def test_secret_name_taken_fails_with_hint_unless_adopting(emulator: RunPodEmulator) -> None:
    """A 409 explains adopt_existing; with it the secret is taken over and its value set."""
    configured(SecretProvider).create(secret_inputs(value="someone-elses"))
    with pytest.raises(RuntimeError, match="adopt_existing=True"):
        configured(SecretProvider).create(secret_inputs())
    adopted = configured(SecretProvider).create(secret_inputs(adopt_existing=True))
    assert len(emulator.secrets) == 1
    assert emulator.secret_values[adopted.id] == "r2-secret-value-1"


def test_secret_rotated_outside_pulumi_shows_as_drift(emulator: RunPodEmulator) -> None:
    """Refresh notices a newer valueLastUpdatedAt; the next diff rewrites the value."""
    provider = configured(SecretProvider)
    created = provider.create(secret_inputs())
    provider.update(created.id, created.outs, secret_inputs(value="console-edit"))  # out of band
    read = provider.read(created.id, created.outs)
    assert read.outs is not None
    assert provider.diff(created.id, read.outs, secret_inputs()).changes is True


# -- Registry ------------------------------------------------------------------------------


def registry_inputs(**overrides: object) -> dict[str, object]:
    props: dict[str, object] = {
        "name": "comfyui_runpod_staging_ghcr",
        "username": "acme-bot",
        "password": "ghp_pulltoken1",
        "adopt_existing": False,
    }
    props.update(overrides)
    return props


def test_registry_password_is_write_only_and_rotation_creates_the_new_one_first(
    emulator: RunPodEmulator,
) -> None:
    """No password in outputs; a new token replaces the credential, creating before deleting,
    under a new generation name so the two never collide."""
    provider = configured(RegistryProvider)
    created = provider.create(registry_inputs())
    assert emulator.registry_credentials[created.id] == ("acme-bot", "ghp_pulltoken1")
    assert "ghp_pulltoken1" not in json.dumps(created.outs)
    assert re.fullmatch(r"comfyui_runpod_staging_ghcr-[0-9a-f]{8}", created.outs["registry_name"])
    assert provider.diff(created.id, created.outs, registry_inputs()).changes is False
    diff = provider.diff(created.id, created.outs, registry_inputs(password="ghp_pulltoken2"))
    assert diff.replaces == ["password"]
    assert not diff.delete_before_replace
    second = provider.create(registry_inputs(password="ghp_pulltoken2"))
    assert set(emulator.registries) == {created.id, second.id}
    assert second.outs["registry_name"] != created.outs["registry_name"]


def test_template_read_shows_registry_cleared_by_credential_delete(
    emulator: RunPodEmulator,
) -> None:
    """Deleting a credential silently clears template refs; refresh surfaces it as drift."""
    registry = configured(RegistryProvider).create(registry_inputs())
    templates = configured(TemplateProvider)
    declared = template_inputs(registry_id=registry.id)
    template = templates.create(declared)
    configured(RegistryProvider).delete(registry.id, registry.outs)
    read = templates.read(template.id, template.outs)
    assert read.outs is not None
    assert read.outs["registry_id"] is None
    assert templates.diff(template.id, read.outs, declared).changes is True


# -- NetworkVolume -------------------------------------------------------------------------


def test_volume_grows_in_place_and_moves_by_replacement(emulator: RunPodEmulator) -> None:
    """Size up is a PATCH; a new data center replaces; shrinking fails check."""
    provider = configured(NetworkVolumeProvider)
    created = provider.create(volume_inputs())
    grown = volume_inputs(size_gb=300)
    assert provider.diff(created.id, created.outs, grown).replaces == []
    provider.update(created.id, created.outs, grown)
    assert emulator.volumes[created.id]["size"] == 300
    moved = provider.diff(created.id, created.outs, volume_inputs(data_center_id="US-KS-2"))
    assert moved.replaces == ["data_center_id"]
    shrink = provider.check(as_wire(grown), volume_inputs(size_gb=100))
    assert [f.property for f in shrink.failures] == ["size_gb"]
    assert "only grow" in shrink.failures[0].reason


# -- Template ------------------------------------------------------------------------------


def test_template_delete_waits_out_in_use_then_succeeds(emulator: RunPodEmulator) -> None:
    """RunPod keeps a template 'in use' for a while; delete retries within its bound."""
    provider = configured(TemplateProvider)
    created = provider.create(template_inputs())
    emulator.hold_template_in_use(created.id, deletes=2)
    provider.delete(created.id, created.outs)
    assert created.id not in emulator.templates
    assert [r.status for r in emulator.calls("DELETE")] == [400, 400, 204]


def test_template_delete_gives_up_after_its_bound(emulator: RunPodEmulator) -> None:
    """A template in use for longer than the bound fails the delete with RunPod's reason."""
    provider = configured(TemplateProvider)
    created = provider.create(template_inputs())
    emulator.hold_template_in_use(created.id, deletes=10_000)
    with pytest.raises(ObjectInUseError, match=f"template {created.id} is still in use.*in use"):
        provider.delete(created.id, created.outs)


def test_template_update_patches_only_changed_fields(emulator: RunPodEmulator) -> None:
    """A new image is one PATCH carrying only `image`; outputs are complete afterwards."""
    provider = configured(TemplateProvider)
    created = provider.create(template_inputs())
    emulator.reset_log()
    updated = provider.update(created.id, as_wire(created.outs), template_inputs(image=IMAGE_2))
    assert [(r.method, r.body) for r in emulator.writes()] == [("PATCH", {"image": IMAGE_2})]
    assert updated.outs is not None
    assert updated.outs["ports"] == ["8188/http", "8888/http", "22/tcp"]


# -- Endpoint ------------------------------------------------------------------------------


def test_endpoint_create_sends_a_valid_v2_body_and_round_trips_without_diff(
    emulator: RunPodEmulator,
) -> None:
    """Created from the declared inputs; after the gRPC double round trip no diff remains."""
    provider = configured(EndpointProvider)
    created = provider.create(endpoint_inputs())
    live = emulator.endpoint(created.id)
    assert live["flashboot"] == "FLASHBOOT"
    assert sorted(live["gpu"]["pools"]) == ["ADA_24", "AMPERE_24"]
    assert live["timeout"] == 660_000
    diff = provider.diff(created.id, as_wire(created.outs), as_wire(endpoint_inputs()))
    assert diff.changes is False


def test_endpoint_image_roll_is_one_patch_of_the_image(emulator: RunPodEmulator) -> None:
    """A new digest: an in-place change, one PATCH with only the image, a new release."""
    provider = configured(EndpointProvider)
    created = provider.create(endpoint_inputs())
    rolled = as_wire(endpoint_inputs(image=IMAGE_2))
    diff = provider.diff(created.id, as_wire(created.outs), rolled)
    assert (diff.changes, diff.replaces) == (True, [])
    emulator.reset_log()
    updated = provider.update(created.id, as_wire(created.outs), rolled)
    assert [(r.method, r.body) for r in emulator.writes()] == [("PATCH", {"image": IMAGE_2})]
    assert updated.outs is not None
    assert updated.outs["image"] == IMAGE_2
    assert updated.outs["workers"] == {"min": 0, "max": 3, "idleTimeout": 5}
    assert emulator.endpoints[created.id].version == 2


def test_rollout_waits_until_the_release_reaches_every_worker(emulator: RunPodEmulator) -> None:
    """EndpointRollout returns only when all workers run the endpoint's newest release."""
    provider = configured(EndpointProvider)
    declared = endpoint_inputs(workers={"min": 3, "max": 3, "idleTimeout": 5})
    created = provider.create(declared)
    provider.update(created.id, created.outs, {**declared, "image": IMAGE_2})
    emulator.reset_log()
    waited = configured(EndpointRolloutProvider).create(
        {"endpoint_id": created.id, "release": "r2", "timeout_s": 30}
    )
    record = emulator.endpoints[created.id]
    assert {w.version for w in record.workers} == {2}
    assert waited.outs["endpoint_version"] == 2
    assert len(emulator.calls("GET", f"/v2/serverless/{created.id}/releases")) >= 3
    assert emulator.writes() == []


def test_rollout_wait_is_bounded_and_names_the_endpoint_and_the_stuck_release(
    emulator: RunPodEmulator,
) -> None:
    """A release that never reaches the workers fails the wait, not the endpoint."""
    emulator.rollout_workers_per_poll = 0
    provider = configured(EndpointProvider)
    declared = endpoint_inputs(workers={"min": 2, "max": 2, "idleTimeout": 5})
    created = provider.create(declared)
    provider.update(created.id, created.outs, {**declared, "image": IMAGE_2})
    (newest, *_) = emulator.endpoints[created.id].releases
    with pytest.raises(RuntimeError) as stuck:
        configured(EndpointRolloutProvider).update(
            f"{created.id}-rollout",
            {"endpoint_id": created.id, "release": "r1", "timeout_s": 1},
            {"endpoint_id": created.id, "release": "r2", "timeout_s": 1},
        )
    message = str(stuck.value)
    assert f"endpoint {created.id} (comfyui-runpod-staging-comfyui)" in message
    assert f"release {newest['id']} (version 2)" in message
    assert "0/2 workers" in message
    assert "stay in state" in message
    assert list(emulator.endpoints) == [created.id]


def test_endpoint_create_and_update_never_wait_for_a_release(emulator: RunPodEmulator) -> None:
    """The endpoint's own create/update make no release poll: a failed wait loses no id."""
    emulator.rollout_workers_per_poll = 0
    provider = configured(EndpointProvider)
    declared = endpoint_inputs(workers={"min": 2, "max": 2, "idleTimeout": 5})
    created = provider.create(declared)
    provider.update(created.id, created.outs, {**declared, "image": IMAGE_2})
    assert not [r for r in emulator.calls() if r.path.endswith("/releases")]


def test_endpoint_type_and_compute_family_changes_replace(emulator: RunPodEmulator) -> None:
    """`type` and gpu->cpu cannot change in place."""
    provider = configured(EndpointProvider)
    created = provider.create(endpoint_inputs())
    lb = endpoint_inputs(type="LOAD_BALANCER", scaling={"type": "REQUEST_COUNT", "requestCount": 2})
    assert "type" in provider.diff(created.id, created.outs, lb).replaces
    cpu = endpoint_inputs(gpu=None, cpu=[{"id": "cpu5c", "vcpuCount": 4}])
    assert "cpu" in provider.diff(created.id, created.outs, cpu).replaces


def test_endpoint_refresh_sees_idle_scale_down_and_up_restores_it(
    emulator: RunPodEmulator,
) -> None:
    """RunPod's own workers.max=0 after 7 idle days is drift; the next up PATCHes it back."""
    provider = configured(EndpointProvider)
    declared = endpoint_inputs()
    created = provider.create(declared)
    emulator.idle_for_days(created.id, 8)
    read = provider.read(created.id, created.outs)
    assert read.outs is not None
    assert read.inputs is not None
    assert read.outs["workers"]["max"] == 0
    assert read.inputs["workers"]["max"] == 0
    assert provider.diff(created.id, read.outs, declared).changes is True
    emulator.reset_log()
    provider.update(created.id, read.outs, declared)
    assert [r.body for r in emulator.writes()] == [
        {"workers": {"min": 0, "max": 3, "idleTimeout": 5}}
    ]
    assert emulator.endpoint(created.id)["workers"]["max"] == 3


def test_cpu_endpoint_round_trips_despite_the_memory_runpod_adds(
    emulator: RunPodEmulator,
) -> None:
    """RunPod adds `memory` to each cpu flavor; that is not drift."""
    provider = configured(EndpointProvider)
    declared = endpoint_inputs(gpu=None, cpu=[{"id": "cpu5c", "vcpuCount": 4}])
    assert provider.check({}, declared).failures == []
    created = provider.create(declared)
    assert emulator.endpoint(created.id)["cpu"] == [{"id": "cpu5c", "vcpuCount": 4, "memory": 16}]
    assert provider.diff(created.id, as_wire(created.outs), as_wire(declared)).changes is False
    bad = provider.check({}, endpoint_inputs(gpu=None, cpu=[{"id": "cpu5c", "vcpuCount": 3}]))
    assert [f.property for f in bad.failures] == ["cpu"]


def test_vanished_objects_read_as_gone_and_delete_cleanly(emulator: RunPodEmulator) -> None:
    """Refresh drops an object deleted in the console; deleting it again succeeds."""
    provider = configured(EndpointProvider)
    created = provider.create(endpoint_inputs())
    del emulator.endpoints[created.id]
    assert provider.read(created.id, created.outs).id == ""
    provider.delete(created.id, created.outs)
    secrets = configured(SecretProvider)
    secret = secrets.create(secret_inputs())
    emulator.secrets.clear()
    secrets.delete(secret.id, secret.outs)
    assert secrets.read(secret.id, secret.outs).id == ""


def test_endpoint_delete_is_one_delete_without_a_scale_down_first(
    emulator: RunPodEmulator,
) -> None:
    """v2's DELETE terminates workers and cancels jobs itself: no workers PATCH before it."""
    provider = configured(EndpointProvider)
    created = provider.create(endpoint_inputs(workers={"min": 1, "max": 3, "idleTimeout": 5}))
    emulator.reset_log()
    provider.delete(created.id, created.outs)
    assert [(r.method, r.path) for r in emulator.writes()] == [
        ("DELETE", f"/v2/serverless/{created.id}")
    ]
    assert emulator.endpoints == {}


def test_endpoint_adopt_existing_takes_over_by_name(emulator: RunPodEmulator) -> None:
    """adopt_existing finds the same-named endpoint and PATCHes it to the declared state."""
    first = configured(EndpointProvider).create(endpoint_inputs(flashboot="OFF"))
    adopted = configured(EndpointProvider).create(endpoint_inputs(adopt_existing=True))
    assert adopted.id == first.id
    assert len(emulator.endpoints) == 1
    assert emulator.endpoint(first.id)["flashboot"] == "FLASHBOOT"


@pytest.mark.parametrize(
    ("overrides", "prop", "fragment"),
    [
        ({"env": {"HF_TOKEN": "hf_literal"}}, "env", "RunPod secret reference"),
        ({"env": {"R2_ACCESS_KEY_ID": "AKIA123"}}, "env", "never a literal"),
        ({"gpu": {"pools": ["RTX_9090"], "count": 1}}, "gpu", "unknown"),
        ({"workers": {"min": 4, "max": 2, "idleTimeout": 5}}, "workers", "must not exceed"),
        ({"workers": {"min": 0, "max": 2, "idleTimeout": 0}}, "workers.idleTimeout", "1..3600"),
        ({"scaling": {"type": "QUEUE_DELAY", "queueDelay": 0.1}}, "scaling", ">= 0.5"),
        ({"scaling": {"type": "REQUEST_COUNT", "requestCount": 2}}, "workers", "idleTimeout"),
        ({"scaling": {"type": "SOMETHING"}}, "scaling", "QUEUE_DELAY or REQUEST_COUNT"),
        ({"image": "ghcr.io/acme/comfyui-worker:latest"}, "image", "pinned by digest"),
        ({"flashboot": "TURBO"}, "flashboot", "OFF"),
        ({"gpu": None}, "gpu", "exactly one"),
        ({"ports": ["8188"]}, "ports", "8188/http"),
    ],
)
def test_endpoint_check_reports_each_bad_property(
    overrides: dict[str, object], prop: str, fragment: str
) -> None:
    """Offline validation names the property and what a valid value looks like."""
    result = EndpointProvider().check({}, endpoint_inputs(**overrides))
    assert [f.property for f in result.failures] == [prop]
    assert fragment in result.failures[0].reason


def test_check_and_diff_tolerate_preview_unknowns_without_network(
    emulator: RunPodEmulator,
) -> None:
    """Unknown values pass check, count as changes in diff, and no request is made."""
    provider = configured(EndpointProvider)
    created = provider.create(endpoint_inputs())
    emulator.reset_log()
    previewed = endpoint_inputs(
        image=UNKNOWN, registry_id=UNKNOWN, env={"MODE": "serverless", "R2_BUCKET": UNKNOWN}
    )
    assert provider.check(created.outs, previewed).failures == []
    diff = provider.diff(created.id, created.outs, previewed)
    assert (diff.changes, diff.replaces) == (True, [])
    assert configured(SecretProvider).diff("x", {}, secret_inputs(value=UNKNOWN)).changes is True
    assert emulator.calls() == []


def test_unknown_objects_from_keep_unknowns_are_tolerated(emulator: RunPodEmulator) -> None:
    """The gRPC server hands Check/Diff `pulumi.output.Unknown` objects, not the string."""
    provider = configured(EndpointProvider)
    created = provider.create(endpoint_inputs())
    emulator.reset_log()
    previewed = endpoint_inputs(
        image=Unknown(), network_volume_ids=[Unknown()], gpu={"pools": [Unknown()], "count": 1}
    )
    assert provider.check(created.outs, previewed).failures == []
    assert provider.diff(created.id, created.outs, previewed).changes is True
    assert SecretProvider().check({}, secret_inputs(name=Unknown(), value=Unknown())).failures == []
    assert emulator.calls() == []


@pytest.mark.parametrize(
    ("provider", "bag", "prop", "choices"),
    [
        (EndpointProvider, endpoint_inputs(type="BATCH"), "type", "QUEUE or LOAD_BALANCER"),
        (EndpointProvider, endpoint_inputs(type=None), "type", "QUEUE or LOAD_BALANCER"),
        (EndpointProvider, endpoint_inputs(flashboot="TURBO"), "flashboot", "OFF, FLASHBOOT"),
        (TemplateProvider, template_inputs(category="TPU"), "category", "CPU, NVIDIA or AMD"),
        (
            NetworkVolumeProvider,
            volume_inputs(volume_type="FAST"),
            "volume_type",
            "STANDARD or HIGH_PERFORMANCE",
        ),
    ],
)
def test_a_value_outside_an_allowed_set_is_refused_naming_the_choices(
    provider: type[EndpointProvider | TemplateProvider | NetworkVolumeProvider],
    bag: dict[str, object],
    prop: str,
    choices: str,
) -> None:
    """Every enumerated property is checked the same way: the value and what RunPod takes."""
    failures = provider().check({}, bag).failures
    assert [f.property for f in failures] == [prop]
    assert choices in failures[0].reason
    assert repr(bag[prop]) in failures[0].reason
