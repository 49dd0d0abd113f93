"""RunPod's limits are defined once (components/runpod/limits.py); the words people read
about them (docs/configuration.md, Pulumi.yaml's descriptions) and the price table of
ops/cost.py follow that one definition."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from components.runpod import limits
from ops import cost

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
DESCRIPTIONS = {
    key: str(spec.get("description", ""))
    for key, spec in yaml.safe_load((ROOT / "Pulumi.yaml").read_text(encoding="utf-8"))[
        "config"
    ].items()
}


def _key_row(key: str) -> str:
    """The configuration reference's row for ``key``."""
    rows = [line for line in CONFIGURATION.splitlines() if line.startswith(f"| `{key}` |")]
    assert len(rows) == 1, f"docs/configuration.md has {len(rows)} rows for {key}"
    return rows[0]


@pytest.mark.parametrize(
    ("key", "bounds"),
    [
        ("serverless.gpuCount", limits.GPU_COUNT),
        ("serverless.idleTimeout", limits.IDLE_TIMEOUT_S),
        ("serverless.networkVolumeGb", limits.VOLUME_GB),
        ("videoPod.volumeGb", limits.VOLUME_GB),
    ],
)
def test_ranges_people_read_are_the_limits_the_code_checks(key: str, bounds: object) -> None:
    """The `(low..high)` a key's description gives is limits.py's, in both places."""
    for where, text in (
        ("docs/configuration.md", _key_row(key)),
        ("Pulumi.yaml", DESCRIPTIONS[key]),
    ):
        ranges = re.findall(r"\d+\.\.\d+", text)
        assert ranges == [str(bounds)], f"{where} says {ranges} for {key}; limits.py: {bounds}"


def test_the_pool_rule_lists_exactly_the_pools_the_code_accepts() -> None:
    """The rule table's pool list is limits.GPU_POOLS, no more, no fewer."""
    (row,) = [
        line for line in CONFIGURATION.splitlines() if line.startswith("| known RunPod GPU pools:")
    ]
    listed = set(re.findall(r"\b[A-Z]+_\d+(?:_PRO)?\b", row.split("|")[1]))
    assert listed == set(limits.GPU_POOLS)
    assert re.search(rf"\b{limits.IDLE_TIMEOUT_S} seconds\b", CONFIGURATION)


def test_every_priced_pool_is_a_pool_runpod_takes() -> None:
    """ops cost --gpu-pool prices only pools the endpoint may run on."""
    assert set(cost.PRICES) <= limits.GPU_POOLS, set(cost.PRICES) - limits.GPU_POOLS
