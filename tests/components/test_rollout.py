"""ProviderSwitch under Pulumi mocks: one KV key whose JSON value is the app's flag."""

from __future__ import annotations

import json

import pytest

from components.config import RolloutSettings
from components.rollout import ProviderSwitch, flag_value
from tests.fakes.pulumi_mocks import RecordingMocks, mocked, pulumi_loop, run, settle
from tests.fakes.stack_values import ACCOUNT_ID

pytestmark = pytest.mark.usefixtures(pulumi_loop.__name__)

KV = "cloudflare:index/workersKv:WorkersKv"
NAMESPACE = "cloudflare:index/workersKvNamespace:WorkersKvNamespace"


def build(mocks: RecordingMocks, provider: str, percent: int) -> ProviderSwitch:
    """Run a ProviderSwitch for ``provider``/``percent`` with endpoint ``ep-123``."""
    settings = RolloutSettings(
        provider="comfyui" if provider == "comfyui" else "scenario",
        comfyui_percent=percent,
        kv_key="image-generation",
    )
    built: list[ProviderSwitch] = []
    run(
        lambda: built.append(
            ProviderSwitch(
                "rollout",
                account_id=ACCOUNT_ID,
                settings=settings,
                endpoint_id="ep-123",
                namespace_title="comfyui-runpod-prod-rollout",
                stack="prod",
            )
        )
    )
    return built[0]


def test_flag_value_has_exactly_the_fields_the_app_reads() -> None:
    """The KV value is {provider, comfyuiPercent, endpointId, stack}."""
    with mocked() as mocks:
        switch = build(mocks, "comfyui", 10)
        kv = mocks.one(KV).inputs
        assert json.loads(kv["value"]) == {
            "provider": "comfyui",
            "comfyuiPercent": 10,
            "endpointId": "ep-123",
            "stack": "prod",
        }
        assert kv["keyName"] == "image-generation"
        assert settle(switch.key)[0] == "image-generation"


def test_flag_lives_in_this_stacks_namespace() -> None:
    """The key is written to the namespace the component created and exports."""
    with mocked() as mocks:
        switch = build(mocks, "scenario", 0)
        namespace_id, _ = settle(switch.namespace_id)
        assert mocks.one(KV).inputs["namespaceId"] == namespace_id
        assert mocks.one(NAMESPACE).inputs["title"] == "comfyui-runpod-prod-rollout"
        assert mocks.one(KV).inputs["accountId"] == ACCOUNT_ID


def test_scenario_flag_is_the_rollback() -> None:
    """provider=scenario is written as such; the percent is kept for the way back."""
    with mocked() as mocks:
        build(mocks, "scenario", 50)
        assert json.loads(mocks.one(KV).inputs["value"])["provider"] == "scenario"
        assert json.loads(mocks.one(KV).inputs["value"])["comfyuiPercent"] == 50


def test_flag_value_is_stable_text() -> None:
    """Same flag, same bytes: no spurious KV diff on every `pulumi up`."""
    first = flag_value(provider="comfyui", comfyui_percent=10, endpoint_id="e", stack="prod")
    second = flag_value(stack="prod", endpoint_id="e", comfyui_percent=10, provider="comfyui")
    assert first == second
    assert " " not in first
