"""The RunPod emulator itself follows the reference: limits, names, in-use, registries."""

from __future__ import annotations

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
