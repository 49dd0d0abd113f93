"""Property: any valid endpoint the stack can declare round-trips without a diff.

For random but valid declarations (pools, counts, worker bounds, both scaling variants,
FlashBoot modes, env, data centers), create in the emulator and then diff the stored
outputs, after the gRPC double round trip, against the same inputs: no change may show,
or every `pulumi up` would PATCH for nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.runpod.limits import GPU_POOLS
from components.runpod.providers import EndpointProvider
from tests.fakes.runpod_api import RunPodEmulator, running_emulator
from tests.provider.support import as_wire, configured, endpoint_inputs

env_keys = st.from_regex(r"[A-Z][A-Z0-9_]{0,12}", fullmatch=True).filter(
    lambda k: not any(word in k for word in ("SECRET", "TOKEN", "PASSWORD", "KEY", "CREDENTIAL"))
)


@st.composite
def declarations(draw: st.DrawFn) -> dict[str, Any]:
    endpoint_type = draw(st.sampled_from(["QUEUE", "LOAD_BALANCER"]))
    scaling_type = (
        "REQUEST_COUNT"
        if endpoint_type == "LOAD_BALANCER"
        else draw(st.sampled_from(["QUEUE_DELAY", "REQUEST_COUNT"]))
    )
    low = draw(st.integers(0, 3))
    workers: dict[str, Any] = {"min": low, "max": draw(st.integers(low, 10))}
    if scaling_type == "QUEUE_DELAY":
        scaling: dict[str, Any] = {
            "type": scaling_type,
            "queueDelay": draw(st.sampled_from([0.5, 1, 2.5, 4, 30])),
        }
    else:
        scaling = {"type": scaling_type, "requestCount": draw(st.integers(1, 50))}
    if not (endpoint_type == "QUEUE" and scaling_type == "REQUEST_COUNT"):
        workers["idleTimeout"] = draw(st.integers(1, 3600))
    return endpoint_inputs(
        type=endpoint_type,
        gpu={
            "pools": draw(
                st.lists(st.sampled_from(sorted(GPU_POOLS)), min_size=1, max_size=3, unique=True)
            ),
            "count": draw(st.integers(1, 4)),
        },
        workers=workers,
        scaling=scaling,
        flashboot=draw(st.sampled_from(["OFF", "FLASHBOOT", "PRIORITY_FLASHBOOT"])),
        env=draw(st.dictionaries(env_keys, st.text(max_size=20), max_size=4)),
        data_center_ids=draw(
            st.lists(st.sampled_from(["EU-RO-1", "US-KS-2", "US-TX-3"]), unique=True, max_size=2)
        ),
        container_disk_gb=draw(st.integers(1, 200)),
        timeout_ms=draw(st.integers(1_000, 3_600_000)),
    )


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[RunPodEmulator]:
    """One emulator for every generated example (hypothesis reruns the test body)."""
    with running_emulator() as emulator, pytest.MonkeyPatch.context() as patch:
        patch.setenv("RUNPOD_API_BASE_URL", emulator.url)
        patch.delenv("RUNPOD_API_KEY", raising=False)
        yield emulator


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(declared=declarations())
def test_every_valid_declaration_round_trips_without_a_diff(
    shared_emulator: RunPodEmulator, declared: dict[str, Any]
) -> None:
    """Check passes, create succeeds, and the next diff is empty."""
    assert EndpointProvider().check({}, declared).failures == []
    provider = configured(EndpointProvider)
    created = provider.create(as_wire(declared))
    assert created.id in shared_emulator.endpoints
    diff = provider.diff(created.id, as_wire(created.outs), as_wire(declared))
    assert diff.changes is False, (declared, created.outs)
