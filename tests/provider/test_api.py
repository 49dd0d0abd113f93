"""The REST v2 client against the emulator: errors, retries, budgets, lost responses."""

from __future__ import annotations

import inspect
import pickle
import socket
import time
import tomllib
from pathlib import Path

import pytest
import requests
from packaging.requirements import Requirement
from packaging.version import Version
from urllib3.util.retry import Retry

from components.runpod.api import MissingApiKeyError, RunPodApiError, RunPodClient
from tests.fakes.runpod_api import DEFAULT_API_KEY, RunPodEmulator
from tests.provider.support import IMAGE

ROOT = Path(__file__).resolve().parents[2]
FAST = {"backoff_factor": 0.01, "retry_budget_s": 5.0, "read_timeout_s": 1.0}


def client(emulator: RunPodEmulator, **options: object) -> RunPodClient:
    return RunPodClient(DEFAULT_API_KEY, base_url=emulator.url, **{**FAST, **options})  # type: ignore[arg-type]


def endpoint_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "name": "ep",
        "type": "QUEUE",
        "image": IMAGE,
        "gpu": {"pools": ["ADA_24"]},
        "workers": {"min": 0, "max": 1},
        "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
    }
    body.update(overrides)
    return body


def test_problem_json_becomes_an_error_naming_call_status_and_field(
    emulator: RunPodEmulator,
) -> None:
    """A 422 reads `RunPod POST /v2/serverless on <host> -> 422 Unprocessable Entity:
    $.workers.max: ...`."""
    with pytest.raises(RunPodApiError) as caught:
        client(emulator).request("POST", "/v2/serverless", json=endpoint_body(workers={"max": -1}))
    host = emulator.url.split("//", 1)[1]
    assert str(caught.value) == (
        f"RunPod POST /v2/serverless on {host} -> 422 Unprocessable Entity: "
        "$.workers.max: must be >= 0"
    )
    assert caught.value.status == 422


def test_unknown_field_is_rejected_like_runpod(emulator: RunPodEmulator) -> None:
    """The emulator refuses unknown body fields with RunPod's additional-properties error."""
    with pytest.raises(RunPodApiError, match=r"\$: additional properties 'bogus' not allowed"):
        client(emulator).request("POST", "/v2/serverless", json=endpoint_body(bogus=1))


def test_get_is_retried_on_503_until_it_succeeds(emulator: RunPodEmulator) -> None:
    """Two 503s then success: the caller sees the object, the log shows three GETs."""
    emulator.inject("GET", r"^/v2/templates$", status=503, times=2)
    assert client(emulator).list("/v2/templates", "templates") == []
    assert [r.status for r in emulator.calls("GET", "/v2/templates")] == [503, 503, 200]


def test_retry_after_is_honoured_before_the_next_attempt(emulator: RunPodEmulator) -> None:
    """A 429 with Retry-After: 1 delays the retry by at least a second."""
    emulator.inject("GET", r"^/v2/registries$", status=429, retry_after=1)
    client(emulator).list("/v2/registries", "registries")
    first, second = emulator.calls("GET", "/v2/registries")
    assert first.status == 429
    assert second.status == 200
    assert second.at - first.at >= 0.95


def test_post_rejected_with_429_is_resent_once_and_creates_one_object(
    emulator: RunPodEmulator,
) -> None:
    """A rate-limited POST provably did nothing, so urllib3 retries it."""
    emulator.inject("POST", r"^/v2/registries$", status=429, retry_after=0)
    body = {"name": "ghcr", "username": "bot", "password": "tok3n-value"}
    created = client(emulator).create("/v2/registries", body, find_existing=lambda: None)
    assert created["name"] == "ghcr"
    assert [r.status for r in emulator.calls("POST")] == [429, 201]
    assert len(emulator.registries) == 1


def test_post_is_not_blindly_resent_on_503(emulator: RunPodEmulator) -> None:
    """After a 503 the client looks the name up before it POSTs again."""
    emulator.inject("POST", r"^/v2/registries$", status=503)
    api = client(emulator)
    lookups: list[str] = []

    def find() -> dict[str, object] | None:
        lookups.append("looked")
        return None

    body = {"name": "ghcr", "username": "bot", "password": "tok3n-value"}
    api.create("/v2/registries", body, find_existing=find)
    assert lookups == ["looked"]
    assert [r.status for r in emulator.calls("POST")] == [503, 201]
    assert len(emulator.registries) == 1


def test_a_create_whose_outcome_stays_unknown_gives_up_after_its_attempts(
    emulator: RunPodEmulator,
) -> None:
    """Every POST answers 503 and the lookup never finds it: create_attempts POSTs, a
    lookup after each, then the last refusal is raised."""
    emulator.inject("POST", r"^/v2/registries$", status=503, times=5)
    api = client(emulator, create_attempts=2)
    lookups: list[str] = []

    def find() -> dict[str, object] | None:
        lookups.append("looked")
        return None

    body = {"name": "ghcr", "username": "bot", "password": "tok3n-value"}
    with pytest.raises(RunPodApiError, match="503"):
        api.create("/v2/registries", body, find_existing=find)
    assert [r.status for r in emulator.calls("POST")] == [503, 503]
    assert lookups == ["looked", "looked"]


def test_a_lookup_that_fails_stops_the_create_instead_of_posting_again(
    emulator: RunPodEmulator,
) -> None:
    """Only an unknown outcome the lookup answered is sent again: the lookup's own error
    ends the create, so no second POST can race the first."""
    emulator.inject("POST", r"^/v2/registries$", status=503)
    api = client(emulator)

    def find() -> dict[str, object] | None:
        raise RunPodApiError(method="GET", path="/v2/registries", status=503, title="x", detail="")

    body = {"name": "ghcr", "username": "bot", "password": "tok3n-value"}
    with pytest.raises(RunPodApiError, match="GET /v2/registries"):
        api.create("/v2/registries", body, find_existing=find)
    assert [r.status for r in emulator.calls("POST")] == [503]


def test_a_client_needs_at_least_one_create_attempt() -> None:
    """create_attempts below 1 is refused when the client is made, not at the first create."""
    with pytest.raises(ValueError, match="create_attempts must be at least 1"):
        RunPodClient(DEFAULT_API_KEY, base_url="http://127.0.0.1:9", create_attempts=0)


def test_lost_create_response_is_recovered_by_name_without_an_orphan(
    emulator: RunPodEmulator,
) -> None:
    """The write commits, the answer is dropped: the lookup finds it, nothing is created twice."""
    emulator.inject("POST", r"^/v2/serverless$", drop_after_commit=True)
    api = client(emulator)

    def find() -> dict[str, object] | None:
        found = [e for e in api.list("/v2/serverless", "endpoints") if e["name"] == "ep"]
        return found[0] if found else None

    created = api.create("/v2/serverless", endpoint_body(), find_existing=find)
    assert len(emulator.endpoints) == 1
    assert created["id"] in emulator.endpoints
    assert len(emulator.calls("POST")) == 1


def test_read_timeout_on_get_is_retried(emulator: RunPodEmulator) -> None:
    """A GET slower than the read timeout is retried and then answers."""
    emulator.inject("GET", r"^/v2/network-volumes$", delay_s=1.5)
    api = client(emulator, read_timeout_s=0.5)
    assert api.list("/v2/network-volumes", "networkVolumes") == []
    deadline = time.monotonic() + 5
    while len(emulator.calls("GET", "/v2/network-volumes")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the slow first answer is logged when its delay ends
    assert len(emulator.calls("GET", "/v2/network-volumes")) == 2


def test_retries_stop_within_the_time_budget(emulator: RunPodEmulator) -> None:
    """An outage ends in an error after the budget, not after max_retries of long backoff."""
    emulator.inject("GET", r"^/v2/templates$", status=503, times=1000)
    api = client(emulator, backoff_factor=0.2, retry_budget_s=1.0, max_retries=50)
    started = time.monotonic()
    with pytest.raises(RunPodApiError, match="503"):
        api.list("/v2/templates", "templates")
    assert time.monotonic() - started < 4.0
    assert 2 <= len(emulator.calls("GET")) < 50


def test_connection_refused_fails_with_the_call_named(emulator: RunPodEmulator) -> None:
    """Nothing listening: a ConnectionError naming the call, after bounded retries."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api = RunPodClient(DEFAULT_API_KEY, base_url=f"http://127.0.0.1:{port}", max_retries=2, **FAST)  # type: ignore[arg-type]
    with pytest.raises(
        requests.ConnectionError, match=f"RunPod GET /v2/templates on 127.0.0.1:{port} failed"
    ):
        api.list("/v2/templates", "templates")


def test_api_key_and_secret_values_never_reach_error_messages(emulator: RunPodEmulator) -> None:
    """Even a server echoing the key or the value in its detail gets redacted."""
    value = "super-secret-r2-value"
    emulator.inject(
        "POST", r"^/v2/account/secrets$", status=400, detail=f"bad {value} for {DEFAULT_API_KEY}"
    )
    with pytest.raises(RunPodApiError) as caught:
        client(emulator).request(
            "POST", "/v2/account/secrets", json={"name": "n", "value": value}, redact=[value]
        )
    assert value not in str(caught.value)
    assert DEFAULT_API_KEY not in str(caught.value)
    assert "***" in str(caught.value)
    assert DEFAULT_API_KEY not in repr(client(emulator))


def test_wrong_key_gets_401_problem(emulator: RunPodEmulator) -> None:
    """A wrong bearer token is refused with RunPod's 401 problem document."""
    api = RunPodClient("wrong-key-1234", base_url=emulator.url, **FAST)  # type: ignore[arg-type]
    with pytest.raises(RunPodApiError, match="401 Unauthorized: invalid bearer token"):
        api.list("/v2/templates", "templates")


def test_missing_api_key_says_how_to_set_it() -> None:
    """No key: the error carries the exact pulumi command."""
    with pytest.raises(MissingApiKeyError, match="pulumi config set --secret runpod:apiKey"):
        RunPodClient("")


def test_client_refuses_to_be_pickled(emulator: RunPodEmulator) -> None:
    """The client holds a session and a key: pickling it is an error, not a leak."""
    with pytest.raises(TypeError):
        pickle.dumps(client(emulator))


def test_base_url_comes_from_the_environment_like_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """RUNPOD_API_BASE_URL overrides the host; without it the client talks to api.runpod.io."""
    monkeypatch.delenv("RUNPOD_API_BASE_URL", raising=False)
    assert RunPodClient("k3y-value").base_url == "https://api.runpod.io"
    monkeypatch.setenv("RUNPOD_API_BASE_URL", "http://127.0.0.1:9/")
    assert RunPodClient("k3y-value").base_url == "http://127.0.0.1:9"


def test_the_urllib3_floor_in_pyproject_has_what_the_client_calls() -> None:
    """`Retry(retry_after_max=...)` first shipped in urllib3 2.6.3 (urllib3 commit 13f0bfd5):
    the declared floor must not allow an older urllib3 that would fail at the first call."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (requirement,) = [
        Requirement(d) for d in project["project"]["dependencies"] if d.startswith("urllib3")
    ]
    floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    assert floors
    assert min(floors) >= Version("2.6.3")
    assert "retry_after_max" in inspect.signature(Retry).parameters
