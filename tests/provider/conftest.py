"""Fixtures for the RunPod provider tests: a fresh emulator per test, fast retry knobs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from components.runpod.providers import (
    EndpointRolloutProvider,
    NetworkVolumeProvider,
    RegistryProvider,
    _RunPodProvider,
)
from tests.fakes.runpod_api import DEFAULT_API_KEY, RunPodEmulator, running_emulator
from tests.provider.engine import EngineSimulation


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunPodEmulator]:
    """A RunPod REST v2 emulator on loopback; RUNPOD_API_BASE_URL points at it."""
    with running_emulator() as emu:
        monkeypatch.setenv("RUNPOD_API_BASE_URL", emu.url)
        monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
        yield emu


@pytest.fixture
def engine(emulator: RunPodEmulator) -> EngineSimulation:
    """A simulated engine over the emulator; it hands the providers' configure() this
    stack's runpod:apiKey, as `pulumi up` does."""
    return EngineSimulation({"runpod:apiKey": DEFAULT_API_KEY})


@pytest.fixture(autouse=True)
def fast_provider_timings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink backoff, budgets and poll intervals so fault tests take milliseconds."""
    monkeypatch.setattr(
        _RunPodProvider,
        "client_options",
        {
            "backoff_factor": 0.01,
            "retry_budget_s": 5.0,
            "read_timeout_s": 1.0,
            "retry_after_max_s": 2,
        },
    )
    for kind in (_RunPodProvider, RegistryProvider, NetworkVolumeProvider):
        monkeypatch.setattr(kind, "in_use_poll_s", 0.01)
        monkeypatch.setattr(kind, "in_use_budget_s", 0.5)
    monkeypatch.setattr(EndpointRolloutProvider, "poll_s", 0.01)
