"""Env drift: keys added outside Pulumi show in the next diff and `up` writes the declared
env back, without a value that may be a credential ever reaching state."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.runpod.providers import ENV_WITHHELD, EndpointProvider, TemplateProvider
from tests.fakes.runpod_api import RunPodEmulator
from tests.provider.support import as_wire, configured, endpoint_inputs, template_inputs


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
