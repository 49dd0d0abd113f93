"""Creates that never adopt what they did not make: a POST whose answer is lost is
resolved by looking the name up, and only an object that appeared after the POST is ours,
even where names are not unique (endpoints, volumes)."""

from __future__ import annotations

from typing import Any

import pytest

from components.runpod.providers import (
    EndpointProvider,
    NetworkVolumeProvider,
    SecretProvider,
    TemplateProvider,
)
from tests.fakes.runpod_api import RunPodEmulator
from tests.provider.support import (
    configured,
    endpoint_inputs,
    secret_inputs,
    template_inputs,
    volume_inputs,
)

SERVERLESS = r"^/v2/serverless$"


def someone_elses_endpoint(emulator: RunPodEmulator) -> tuple[str, dict[str, Any]]:
    """An endpoint with our name that another stack (or a person) made earlier."""
    other = configured(EndpointProvider).create(endpoint_inputs(flashboot="OFF"))
    emulator.reset_log()
    return other.id, emulator.endpoint(other.id)


# -- kinds whose names are not unique ---------------------------------------------------


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


# -- lost answers ------------------------------------------------------------------------


def test_lost_secret_create_response_adopts_our_own_write(emulator: RunPodEmulator) -> None:
    """Dropped answer after commit: looked up by name, no 409, no second secret."""
    emulator.inject("POST", r"^/v2/account/secrets$", drop_after_commit=True)
    created = configured(SecretProvider).create(secret_inputs())
    assert list(emulator.secrets) == [created.id]
    assert [r.method for r in emulator.calls()] == ["GET", "POST", "GET"]


def test_lost_endpoint_create_response_leaves_no_orphan(emulator: RunPodEmulator) -> None:
    """Endpoint names are not unique on RunPod; the lookup still prevents a duplicate."""
    emulator.inject("POST", r"^/v2/serverless$", drop_after_commit=True)
    created = configured(EndpointProvider).create(endpoint_inputs())
    assert list(emulator.endpoints) == [created.id]


def test_endpoint_create_retries_after_503_that_did_not_commit(emulator: RunPodEmulator) -> None:
    """A 503 before the handler: lookup finds nothing, the POST goes again, one endpoint."""
    emulator.inject("POST", r"^/v2/serverless$", status=503)
    configured(EndpointProvider).create(endpoint_inputs())
    assert len(emulator.endpoints) == 1
    assert [r.status for r in emulator.calls("POST")] == [503, 201]
