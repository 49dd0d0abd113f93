"""The RunPod emulator itself follows the reference: limits, names, in-use, registries."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.fakes.runpod_api import DEFAULT_API_KEY, RunPodEmulator, running_emulator, schema_errors
from tests.provider.support import IMAGE

AUTH = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}


def test_every_authenticated_response_carries_rate_limit_headers(emulator: RunPodEmulator) -> None:
    """RateLimit and RateLimit-Policy accompany successful answers, not only 429s."""
    response = requests.get(f"{emulator.url}/v2/templates", headers=AUTH, timeout=5)
    assert response.status_code == 200
    assert response.headers["RateLimit"].startswith('"minute";r=')
    assert '"minute";q=' in response.headers["RateLimit-Policy"]


def test_quota_exhaustion_answers_429_with_retry_after() -> None:
    """Past the minute quota the answer is a 429 problem with Retry-After."""
    with running_emulator(rate_limit_per_minute=2) as emu:
        statuses = [
            requests.get(f"{emu.url}/v2/templates", headers=AUTH, timeout=5) for _ in range(3)
        ]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert int(statuses[2].headers["Retry-After"]) >= 1
    assert statuses[2].headers["Content-Type"] == "application/problem+json"


def test_missing_token_is_401_problem(emulator: RunPodEmulator) -> None:
    """No bearer token: 401 with RunPod's detail."""
    response = requests.get(f"{emulator.url}/v2/templates", timeout=5)
    assert response.status_code == 401
    assert response.json()["detail"] == "missing bearer token"


def test_registry_delete_clears_template_references(emulator: RunPodEmulator) -> None:
    """Templates silently lose a deleted credential (registry becomes null)."""
    base = emulator.url
    registry = requests.post(
        f"{base}/v2/registries",
        json={"name": "ghcr", "username": "u", "password": "p4ss"},
        headers=AUTH,
        timeout=5,
    ).json()
    template = requests.post(
        f"{base}/v2/templates",
        json={"name": "t", "image": IMAGE, "registry": registry["id"]},
        headers=AUTH,
        timeout=5,
    ).json()
    assert (
        requests.delete(
            f"{base}/v2/registries/{registry['id']}", headers=AUTH, timeout=5
        ).status_code
        == 204
    )
    after = requests.get(f"{base}/v2/templates/{template['id']}", headers=AUTH, timeout=5).json()
    assert after["registry"] is None


def test_unique_names_conflict_for_secrets(emulator: RunPodEmulator) -> None:
    """A second secret with the same name is a 409."""
    body = {"name": "dup", "value": "v4lue"}
    first = requests.post(f"{emulator.url}/v2/account/secrets", json=body, headers=AUTH, timeout=5)
    second = requests.post(f"{emulator.url}/v2/account/secrets", json=body, headers=AUTH, timeout=5)
    assert (first.status_code, second.status_code) == (201, 409)
    assert "value" not in first.json()


def test_secret_names_starting_with_runpod_are_refused(emulator: RunPodEmulator) -> None:
    """The RUNPOD prefix is reserved (any case)."""
    response = requests.post(
        f"{emulator.url}/v2/account/secrets",
        json={"name": "runpod_thing", "value": "v4lue"},
        headers=AUTH,
        timeout=5,
    )
    assert response.status_code == 422
    assert "$.name: must not start with RUNPOD" in response.json()["errors"]


def test_integral_floats_are_refused_where_integers_are_due() -> None:
    """Like RunPod's Go handlers, `300000.0` is not an integer."""
    assert schema_errors("UpdateEndpointRequest", {"timeout": 300000.0}) == [
        "$.timeout: must be integer"
    ]


def test_idle_scale_down_lowers_workers_max(emulator: RunPodEmulator) -> None:
    """3 idle days cap max at 2, 7 days at 0."""
    body = {
        "name": "ep",
        "type": "QUEUE",
        "image": IMAGE,
        "gpu": {"pools": ["ADA_24"]},
        "workers": {"min": 0, "max": 5},
        "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
    }
    created = requests.post(
        f"{emulator.url}/v2/serverless", json=body, headers=AUTH, timeout=5
    ).json()
    emulator.idle_for_days(created["id"], 3)
    assert emulator.endpoint(created["id"])["workers"]["max"] == 2
    emulator.idle_for_days(created["id"], 7)
    assert emulator.endpoint(created["id"])["workers"]["max"] == 0


# -- behaviours RunPod documents (spec text and runpod-api.md section 7) ---------------------


def call(emulator: RunPodEmulator, method: str, path: str, body: object = None) -> Any:
    """One authenticated call; the decoded body (None for 204), asserting a 2xx."""
    response = requests.request(method, f"{emulator.url}{path}", json=body, headers=AUTH, timeout=5)
    assert response.status_code < 300, (response.status_code, response.text)
    return response.json() if response.content else None


def refused(emulator: RunPodEmulator, method: str, path: str, body: object = None) -> Any:
    """One authenticated call expected to fail: (status, problem document)."""
    response = requests.request(method, f"{emulator.url}{path}", json=body, headers=AUTH, timeout=5)
    assert response.status_code >= 400, response.text
    return response.status_code, response.json()


def pod_template(emulator: RunPodEmulator, **extra: object) -> dict[str, Any]:
    return dict(call(emulator, "POST", "/v2/templates", {"name": "pod", "image": IMAGE, **extra}))


def start_pod(emulator: RunPodEmulator, template_id: str) -> dict[str, Any]:
    body = {"name": "session", "templateId": template_id, "gpu": {"id": "NVIDIA A40"}}
    return dict(call(emulator, "POST", "/v2/pods", body))


def endpoint_body(**overrides: object) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "ep",
        "type": "QUEUE",
        "image": IMAGE,
        "gpu": {"pools": ["ADA_24"]},
        "workers": {"min": 1, "max": 2},
        "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
    }
    body.update(overrides)
    return body


def test_registry_in_use_by_a_pod_cannot_be_deleted_but_templates_lose_it(
    emulator: RunPodEmulator,
) -> None:
    """400 while a pod pulls with it; once the pod is gone, the delete clears templates."""
    registry = call(
        emulator, "POST", "/v2/registries", {"name": "g", "username": "u", "password": "p"}
    )
    template = pod_template(emulator, registry=registry["id"])
    pod = start_pod(emulator, template["id"])
    assert pod["registry"] == registry["id"]
    status, problem = refused(emulator, "DELETE", f"/v2/registries/{registry['id']}")
    assert status == 400
    assert "in use by a pod" in problem["detail"]
    assert call(emulator, "GET", f"/v2/templates/{template['id']}")["registry"] == registry["id"]
    call(emulator, "POST", f"/v2/pods/{pod['id']}/action", {"action": "terminate"})
    call(emulator, "DELETE", f"/v2/registries/{registry['id']}")
    assert call(emulator, "GET", f"/v2/templates/{template['id']}")["registry"] is None


def test_pod_created_from_a_template_keeps_no_link_to_it(emulator: RunPodEmulator) -> None:
    """`template` stays null; later template edits do not reach the pod."""
    template = pod_template(emulator, env={"MODE": "pod"})
    pod = start_pod(emulator, template["id"])
    assert pod["template"] is None
    call(emulator, "PATCH", f"/v2/templates/{template['id']}", {"env": {"MODE": "other"}})
    assert call(emulator, "GET", f"/v2/pods/{pod['id']}")["env"] == {"MODE": "pod"}


def test_endpoint_created_without_timeout_reads_back_zero(emulator: RunPodEmulator) -> None:
    """Observed: 0, not the documented default 300000."""
    created = call(emulator, "POST", "/v2/serverless", endpoint_body())
    assert created["timeout"] == 0
    assert call(emulator, "GET", f"/v2/serverless/{created['id']}")["timeout"] == 0


def test_volume_created_without_a_type_reads_back_the_data_centers_default_tier() -> None:
    """A type the request never named comes back: the data center's primary tier."""
    with running_emulator(volume_default_tiers={"EU-RO-1": "HIGH_PERFORMANCE"}) as emu:
        body = {"name": "v", "size": 50, "dataCenter": "EU-RO-1"}
        assert call(emu, "POST", "/v2/network-volumes", body)["type"] == "HIGH_PERFORMANCE"
        body = {"name": "w", "size": 50, "dataCenter": "US-KS-2"}
        assert call(emu, "POST", "/v2/network-volumes", body)["type"] == "STANDARD"


def test_gpu_pools_exclusions_and_data_centers_read_back_in_runpods_order(
    emulator: RunPodEmulator,
) -> None:
    """The request's order is not kept, on create and on PATCH; a reorder is no release."""
    body = endpoint_body(
        gpu={
            "pools": ["ADA_24", "AMPERE_24"],
            "excludedTypes": ["NVIDIA L4", "NVIDIA GeForce RTX 3090"],
        },
        dataCenterIds=["US-KS-2", "EU-RO-1"],
    )
    created = call(emulator, "POST", "/v2/serverless", body)
    assert created["gpu"]["pools"] == ["AMPERE_24", "ADA_24"]
    assert created["gpu"]["excludedTypes"] == ["NVIDIA GeForce RTX 3090", "NVIDIA L4"]
    assert created["dataCenterIds"] == ["EU-RO-1", "US-KS-2"]
    patched = call(
        emulator,
        "PATCH",
        f"/v2/serverless/{created['id']}",
        {
            "gpu": {
                "pools": ["ADA_24", "AMPERE_24"],
                "excludedTypes": ["NVIDIA L4", "NVIDIA GeForce RTX 3090"],
            }
        },
    )
    assert patched["gpu"]["pools"] == ["AMPERE_24", "ADA_24"]
    releases = call(emulator, "GET", f"/v2/serverless/{created['id']}/releases")
    assert releases["endpointVersion"] == 1


@pytest.mark.parametrize(
    ("gpu", "fragment"),
    [
        ({"pools": ["ADA_24"], "excludedTypes": ["NVIDIA A30"]}, "not GPU types in pools"),
        ({"pools": ["ADA_24"], "excludedTypes": ["NVIDIA L4 "]}, None),
        (
            {"pools": ["ADA_24"], "excludedTypes": ["NVIDIA L4", "NVIDIA GeForce RTX 4090"]},
            "leaves no GPU type",
        ),
    ],
)
def test_excluded_types_must_narrow_the_pools_and_leave_a_type(
    emulator: RunPodEmulator, gpu: dict[str, Any], fragment: str | None
) -> None:
    """The spec's 400s: a type in none of the pools, a selection with nothing left; the
    surrounding whitespace of a value is trimmed. On create and on PATCH alike."""
    if fragment is None:
        created = call(emulator, "POST", "/v2/serverless", endpoint_body(gpu=gpu))
        assert created["gpu"]["excludedTypes"] == ["NVIDIA L4"]
        return
    status, problem = refused(emulator, "POST", "/v2/serverless", endpoint_body(gpu=gpu))
    assert (status, fragment in problem["detail"]) == (400, True), problem
    created = call(emulator, "POST", "/v2/serverless", endpoint_body())
    status, problem = refused(emulator, "PATCH", f"/v2/serverless/{created['id']}", {"gpu": gpu})
    assert (status, fragment in problem["detail"]) == (400, True), problem
    assert "excludedTypes" not in emulator.endpoint(created["id"])["gpu"]


def test_secret_name_filter_ignores_case(emulator: RunPodEmulator) -> None:
    """`?name=r2_key` also returns `R2_KEY`: the caller must compare names itself."""
    call(emulator, "POST", "/v2/account/secrets", {"name": "R2_KEY", "value": "v4lue"})
    found = call(emulator, "GET", "/v2/account/secrets?name=r2_key")["secrets"]
    assert [s["name"] for s in found] == ["R2_KEY"]


def test_a_template_binds_nothing_to_an_endpoint(emulator: RunPodEmulator) -> None:
    """Create from templateId copies once: template edits, deletes and the endpoint's delete
    do not reach the other."""
    template = pod_template(emulator, serverless=True, env={"A": "1"})
    created = call(
        emulator,
        "POST",
        "/v2/serverless",
        {**endpoint_body(), "templateId": template["id"], "image": IMAGE},
    )
    call(emulator, "PATCH", f"/v2/templates/{template['id']}", {"env": {"A": "2"}})
    assert call(emulator, "GET", f"/v2/serverless/{created['id']}")["env"] == {"A": "1"}
    call(emulator, "DELETE", f"/v2/serverless/{created['id']}")
    assert call(emulator, "GET", f"/v2/templates/{template['id']}")["env"] == {"A": "2"}
    second = call(
        emulator, "POST", "/v2/serverless", {**endpoint_body(), "templateId": template["id"]}
    )
    call(emulator, "DELETE", f"/v2/templates/{template['id']}")
    assert call(emulator, "GET", f"/v2/serverless/{second['id']}")["image"] == IMAGE


def test_a_new_secret_value_reaches_workers_and_pods_only_at_their_next_start(
    emulator: RunPodEmulator,
) -> None:
    """Running processes keep the value they booted with; a release or a restart reads anew."""
    secret = call(emulator, "POST", "/v2/account/secrets", {"name": "k", "value": "old-v4lue"})
    env = {"KEY": "{{ RUNPOD_SECRET_k }}"}
    endpoint = call(emulator, "POST", "/v2/serverless", endpoint_body(env=env))
    pod = start_pod(emulator, pod_template(emulator, env=env)["id"])
    call(emulator, "PATCH", f"/v2/account/secrets/{secret['id']}", {"value": "new-v4lue"})
    assert emulator.worker_envs(endpoint["id"]) == [{"KEY": "old-v4lue"}]
    assert emulator.pod_env(pod["id"]) == {"KEY": "old-v4lue"}
    call(emulator, "PATCH", f"/v2/serverless/{endpoint['id']}", {"env": {**env, "REV": "2"}})
    emulator.finish_rollouts()
    assert emulator.worker_envs(endpoint["id"]) == [{"KEY": "new-v4lue", "REV": "2"}]
    call(emulator, "POST", f"/v2/pods/{pod['id']}/action", {"action": "restart"})
    assert emulator.pod_env(pod["id"]) == {"KEY": "new-v4lue"}


@pytest.mark.parametrize("status", [400, 409])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v2/templates", {"name": "dup", "image": IMAGE}),
        ("/v2/registries", {"name": "dup", "username": "u", "password": "p4ss"}),
    ],
)
def test_duplicate_template_and_registry_names_get_the_configured_status(
    status: int, path: str, body: dict[str, Any]
) -> None:
    """The spec documents no 409 for these kinds: the emulator answers either, as configured."""
    with running_emulator(duplicate_name_status=status) as emu:
        call(emu, "POST", path, body)
        assert refused(emu, "POST", path, body)[0] == status


def test_pod_actions_follow_the_documented_transitions(emulator: RunPodEmulator) -> None:
    """stop -> EXITED; stopping again is a 409; start boots it; terminate answers 204."""
    pod = start_pod(emulator, pod_template(emulator)["id"])
    stopped = call(emulator, "POST", f"/v2/pods/{pod['id']}/action", {"action": "stop"})
    assert (stopped["status"], stopped["actions"]) == ("EXITED", ["start", "terminate"])
    assert refused(emulator, "POST", f"/v2/pods/{pod['id']}/action", {"action": "stop"})[0] == 409
    assert (
        call(emulator, "POST", f"/v2/pods/{pod['id']}/action", {"action": "start"})["status"]
        == "RUNNING"
    )
    assert call(emulator, "POST", f"/v2/pods/{pod['id']}/action", {"action": "terminate"}) is None
    assert emulator.pods == {}


def test_unknown_method_on_a_described_path_is_405_with_allow(emulator: RunPodEmulator) -> None:
    """Registries have no PATCH in v2: 405 and the methods that exist."""
    registry = call(
        emulator, "POST", "/v2/registries", {"name": "g", "username": "u", "password": "p"}
    )
    response = requests.patch(
        f"{emulator.url}/v2/registries/{registry['id']}",
        json={"name": "x"},
        headers=AUTH,
        timeout=5,
    )
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, DELETE"


def test_a_defect_of_the_emulator_fails_once_with_its_reason() -> None:
    """A bug in the double answers 500 naming it and fails the block; no dropped socket."""

    def broken(*_args: object) -> None:
        raise KeyError("registry")

    failure = "the RunPod emulator failed: GET /v2/registries"
    with pytest.raises(AssertionError, match=failure), running_emulator() as emu:  # noqa: PT012 - raised as the block ends
        emu._registries = broken  # type: ignore[method-assign]
        status, problem = refused(emu, "GET", "/v2/registries")
        assert (status, problem["detail"]) == (500, "emulator defect: 'registry'")
