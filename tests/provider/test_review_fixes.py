"""Review fixes: lost creates never adopt a same-named object that predates them, and env
keys added outside Pulumi show as drift that `up` reverts (without putting values in state)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.runpod.providers import (
    ENV_WITHHELD,
    EndpointProvider,
    NetworkVolumeProvider,
    TemplateProvider,
)
from tests.fakes.runpod_api import RunPodEmulator
from tests.provider.support import (
    as_wire,
    configured,
    endpoint_inputs,
    template_inputs,
    volume_inputs,
)

SERVERLESS = r"^/v2/serverless$"


def someone_elses_endpoint(emulator: RunPodEmulator) -> tuple[str, dict[str, Any]]:
    """An endpoint with our name that another stack (or a person) made earlier."""
    other = configured(EndpointProvider).create(endpoint_inputs(flashboot="OFF"))
    emulator.reset_log()
    return other.id, emulator.endpoint(other.id)


# -- 1. lost creates of kinds whose names are not unique -------------------------------------


def test_uncommitted_503_beside_a_same_named_endpoint_creates_a_new_one(
    emulator: RunPodEmulator,
) -> None:
    """503 before commit: the older same-named endpoint is ignored, ours is POSTed again."""
    old_id, old_before = someone_elses_endpoint(emulator)
    emulator.inject("POST", SERVERLESS, status=503)
    created = configured(EndpointProvider).create(endpoint_inputs())
    assert created.id != old_id
    assert set(emulator.endpoints) == {old_id, created.id}
    assert emulator.endpoint(old_id) == old_before
    assert [(r.method, r.status) for r in emulator.calls()] == [
        ("GET", 200),
        ("POST", 503),
        ("GET", 200),
        ("POST", 201),
    ]
    assert emulator.endpoint(created.id)["flashboot"] == "FLASHBOOT"


def test_dropped_answer_beside_a_same_named_endpoint_adopts_our_new_one(
    emulator: RunPodEmulator,
) -> None:
    """Committed, answer lost: the endpoint that appeared after our POST is ours, not the old."""
    old_id, old_before = someone_elses_endpoint(emulator)
    emulator.inject("POST", SERVERLESS, drop_after_commit=True)
    created = configured(EndpointProvider).create(endpoint_inputs())
    assert created.id != old_id
    assert set(emulator.endpoints) == {old_id, created.id}
    assert emulator.endpoint(old_id) == old_before
    assert emulator.endpoint(created.id)["flashboot"] == "FLASHBOOT"
    assert len(emulator.calls("POST")) == 1


def test_dropped_answer_beside_a_same_named_volume_adopts_our_new_one(
    emulator: RunPodEmulator,
) -> None:
    """Network volume names are not unique either: the pre-existing volume is never taken."""
    old = configured(NetworkVolumeProvider).create(volume_inputs(size_gb=50))
    emulator.inject("POST", r"^/v2/network-volumes$", drop_after_commit=True)
    created = configured(NetworkVolumeProvider).create(volume_inputs())
    assert created.id != old.id
    assert emulator.volumes[old.id]["size"] == 50
    assert emulator.volumes[created.id]["size"] == 200


class _RacedEndpointProvider(EndpointProvider):
    """Another creator POSTs the same name while our answer is lost (a race)."""

    def _find_new(self, name: str, preexisting: frozenset[str]) -> dict[str, Any] | None:
        self._client().request("POST", "/v2/serverless", json=_body_named(name))
        return super()._find_new(name, preexisting)


def _body_named(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "QUEUE",
        "image": endpoint_inputs()["image"],
        "gpu": {"pools": ["ADA_24"]},
        "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
    }


def test_several_new_same_named_endpoints_after_a_lost_answer_fail_naming_them(
    emulator: RunPodEmulator,
) -> None:
    """Two candidates appeared since our POST: no guess, the error names both ids."""
    old_id, _ = someone_elses_endpoint(emulator)
    emulator.inject("POST", SERVERLESS, drop_after_commit=True)
    with pytest.raises(RuntimeError, match="cannot tell which one") as failure:
        configured(_RacedEndpointProvider).create(endpoint_inputs())
    new_ids = set(emulator.endpoints) - {old_id}
    assert len(new_ids) == 2
    assert all(endpoint_id in str(failure.value) for endpoint_id in new_ids)
    assert old_id not in str(failure.value)


def test_create_without_faults_costs_one_list_then_the_post_for_every_kind(
    emulator: RunPodEmulator,
) -> None:
    """Every kind lists who carries the name before its POST: one GET, then the POST."""
    configured(EndpointProvider).create(endpoint_inputs())
    assert [(r.method, r.path) for r in emulator.calls()] == [
        ("GET", "/v2/serverless"),
        ("POST", "/v2/serverless"),
    ]
    emulator.reset_log()
    configured(TemplateProvider).create(template_inputs())
    assert [(r.method, r.path) for r in emulator.calls()] == [
        ("GET", "/v2/templates"),
        ("POST", "/v2/templates"),
    ]


def test_adopting_an_endpoint_shares_the_single_name_lookup(emulator: RunPodEmulator) -> None:
    """adopt_existing on a non-unique kind: one list, then the PATCH; no POST."""
    old_id, _ = someone_elses_endpoint(emulator)
    adopted = configured(EndpointProvider).create(endpoint_inputs(adopt_existing=True))
    assert adopted.id == old_id
    assert [r.method for r in emulator.calls()] == ["GET", "PATCH"]


# -- 2. env drift --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider_class", "declared", "collection"),
    [
        (EndpointProvider, endpoint_inputs(), "endpoints"),
        (TemplateProvider, template_inputs(), "templates"),
    ],
)
def test_env_key_added_outside_pulumi_is_drift_and_up_restores_the_declared_env(
    emulator: RunPodEmulator,
    provider_class: type[EndpointProvider | TemplateProvider],
    declared: dict[str, Any],
    collection: str,
) -> None:
    """Refresh keeps the extra key; diff reports env; update PATCHes the declared env back."""
    provider = configured(provider_class)
    created = provider.create(declared)
    table: dict[str, Any] = getattr(emulator, collection)
    live = table[created.id].obj if collection == "endpoints" else table[created.id]
    live["env"] = {**live["env"], "DEBUG_DUMP": "1"}
    read = provider.read(created.id, as_wire(created.outs))
    assert read.outs is not None
    assert read.inputs is not None
    assert "DEBUG_DUMP" in read.outs["env"]
    assert "DEBUG_DUMP" in read.inputs["env"]
    diff = provider.diff(created.id, as_wire(read.outs), as_wire(declared))
    assert (diff.changes, diff.replaces) == (True, [])
    emulator.reset_log()
    updated = provider.update(created.id, as_wire(read.outs), as_wire(declared))
    assert [(r.method, r.body) for r in emulator.writes()] == [("PATCH", {"env": declared["env"]})]
    assert live_env(emulator, collection, created.id) == declared["env"]
    assert updated.outs is not None
    assert provider.diff(created.id, as_wire(updated.outs), as_wire(declared)).changes is False


def live_env(emulator: RunPodEmulator, collection: str, object_id: str) -> dict[str, str]:
    if collection == "endpoints":
        return dict(emulator.endpoint(object_id)["env"])
    return dict(emulator.templates[object_id]["env"])


def test_plaintext_credential_added_in_the_console_is_drift_but_never_stored(
    emulator: RunPodEmulator,
) -> None:
    """A literal token pasted into env shows as drift; state holds only a placeholder."""
    provider = configured(EndpointProvider)
    declared = endpoint_inputs()
    created = provider.create(declared)
    env = emulator.endpoints[created.id].obj["env"]
    env["HF_TOKEN"] = "hf_pastedInTheConsole123"
    env["R2_SECRET_ACCESS_KEY"] = "literal-r2-secret-456"
    env["NOTES"] = "added-by-hand-789"
    read = provider.read(created.id, as_wire(created.outs))
    assert read.outs is not None
    assert read.inputs is not None
    stored = json.dumps([read.outs, read.inputs])
    for value in ("hf_pastedInTheConsole123", "literal-r2-secret-456", "added-by-hand-789"):
        assert value not in stored
    assert read.outs["env"]["HF_TOKEN"] == ENV_WITHHELD
    assert read.outs["env"]["R2_SECRET_ACCESS_KEY"] == ENV_WITHHELD
    assert provider.diff(created.id, as_wire(read.outs), as_wire(declared)).changes is True


def test_refresh_without_drift_keeps_secret_references_and_writes_nothing(
    emulator: RunPodEmulator,
) -> None:
    """No drift: the reference reads back verbatim, diff is empty, a no-op update writes nothing."""
    provider = configured(EndpointProvider)
    declared = endpoint_inputs()
    created = provider.create(declared)
    read = provider.read(created.id, as_wire(created.outs))
    assert read.outs is not None
    assert read.outs["env"] == declared["env"]
    assert read.outs["env"]["R2_SECRET_ACCESS_KEY"].startswith("{{ RUNPOD_SECRET_")
    assert provider.diff(created.id, as_wire(read.outs), as_wire(declared)).changes is False
    emulator.reset_log()
    provider.update(created.id, as_wire(read.outs), as_wire(declared))
    assert emulator.writes() == []


def test_env_on_an_object_declared_without_env_still_shows_as_drift(
    emulator: RunPodEmulator,
) -> None:
    """A stack that declares no env still sees keys someone added, values withheld."""
    provider = configured(TemplateProvider)
    declared = template_inputs(env=None)
    created = provider.create(declared)
    emulator.templates[created.id]["env"] = {"MYSTERY": "value-from-console"}
    read = provider.read(created.id, as_wire(created.outs))
    assert read.outs is not None
    assert read.outs["env"] == {"MYSTERY": ENV_WITHHELD}
    assert provider.diff(created.id, as_wire(read.outs), as_wire(declared)).changes is True
