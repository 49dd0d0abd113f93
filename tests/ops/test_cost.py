"""`ops cost`: cost per generation from measured timings and the pool price, next to Scenario."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ops.cost import PRICES, SECONDS_PER_MONTH, CostInputs, Measured, estimate
from tests.fakes.runpod_jobs import JobApiEmulator, echo_worker
from tests.ops.conftest import FAST, invoke, invoke_json, ops_env

MakeEmulator = Callable[..., JobApiEmulator]
NO_ENV: dict[str, str | None] = {}


def test_cost_model_adds_cold_start_and_idle_per_cold_generation() -> None:
    """exec 4 s on ADA_24, 10 % cold with 40 s starts and 5 s idle: the documented formula."""
    rate = PRICES["ADA_24"][0]
    report = estimate(
        CostInputs(
            measured=Measured(execution_s=4, cold_start_s=40, cold_fraction=0.1, source="t"),
            pool="ADA_24",
            flex_per_s=rate,
            active_per_s=PRICES["ADA_24"][1],
            images_per_month=10_000,
        )
    )
    per = report.per_generation
    assert per.warm == pytest.approx(4 * rate)
    assert per.cold_start_extra == pytest.approx(45 * rate)
    assert per.blended == pytest.approx(4 * rate + 0.1 * 45 * rate)
    assert report.monthly.runpod_total == pytest.approx(per.blended * 10_000)
    assert report.monthly.scenario_low == pytest.approx(500.0)
    assert report.monthly.scenario_high == pytest.approx(1000.0)
    assert report.savings_vs_scenario.low == pytest.approx(1 - per.blended * 10_000 / 500)


def test_always_on_workers_bill_the_whole_month_at_the_active_rate() -> None:
    """min_workers=1 adds active price x seconds per month, independent of volume."""
    measured = Measured(execution_s=1, cold_start_s=0, cold_fraction=0, source="t")
    report = estimate(
        CostInputs(
            measured=measured,
            pool="AMPERE_24",
            flex_per_s=0.00019,
            active_per_s=0.00013,
            min_workers=1,
            images_per_month=0,
        )
    )
    assert report.monthly.runpod_always_on == pytest.approx(0.00013 * SECONDS_PER_MONTH)


def test_cost_command_prints_the_comparison_table() -> None:
    """The table shows per-generation cost, Scenario's price and the monthly projection."""
    result = invoke(
        ["cost", "--execution-s", "4", "--cold-start-s", "40", "--cold-fraction", "0.1"], NO_ENV
    )
    assert result.exit_code == 0
    for text in ("blended per generation", "$0.05 - $0.10", "savings vs Scenario", "ADA_24"):
        assert text in result.stdout


def test_scenarios_price_in_the_table_is_the_one_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    """The "Scenario per image" row reads ops.cost's price, not a copy of it."""
    monkeypatch.setattr("ops.cost.SCENARIO_PER_IMAGE", (0.07, 0.2))
    result = invoke(["cost", "--execution-s", "4"], NO_ENV)
    assert result.exit_code == 0
    assert "$0.07 - $0.20" in result.stdout


def test_cost_takes_timings_from_a_piped_canary_report(make_emulator: MakeEmulator) -> None:
    """`ops canary --json | ops cost --canary-json -` prices the canary's measured timings."""
    emu = make_emulator(echo_worker)
    canary = invoke(["canary", "--requests", "4", "--json", *FAST], ops_env(emu))
    code, doc = invoke_json(["cost", "--canary-json", "-"], NO_ENV, stdin=canary.stdout)
    assert code == 0
    measured = doc["report"]["measured"]
    assert measured["source"] == "canary"
    assert measured["executionS"] == json.loads(canary.stdout)["summary"]["executionS"]["p50"]


def test_cost_price_overrides_and_unknown_pools(tmp_path: Path) -> None:
    """--prices replaces table entries; an unknown pool without a price exits 2 naming the pools."""
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"ADA_24": [0.001, 0.0005]}))
    code, doc = invoke_json(["cost", "--execution-s", "10", "--prices", str(prices)], NO_ENV)
    assert code == 0
    assert doc["report"]["perGeneration"]["warm"] == pytest.approx(0.01)
    code, doc = invoke_json(["cost", "--execution-s", "10", "--gpu-pool", "TPU_9000"], NO_ENV)
    assert code == 2
    assert "AMPERE_24" in doc["error"]
    code, doc = invoke_json(
        ["cost", "--execution-s", "10", "--gpu-pool", "TPU_9000", "--price-per-s", "0.002"], NO_ENV
    )
    assert code == 0


def test_cost_gate_fails_above_the_max_per_image() -> None:
    """--max-per-image turns the report into a gate."""
    code, doc = invoke_json(["cost", "--execution-s", "100", "--max-per-image", "0.01"], NO_ENV)
    assert code == 1
    assert doc["checks"][0]["status"] == "fail"


def test_cost_needs_timings() -> None:
    """Without --canary-json or --execution-s the command explains what it needs."""
    code, doc = invoke_json(["cost"], NO_ENV)
    assert code == 2
    assert "--canary-json" in doc["error"]


def test_the_report_json_keeps_the_names_its_readers_use() -> None:
    """`CostReport.as_json()` is the camelCase `report` that `ops cost --json` prints."""
    measured = Measured(execution_s=2, cold_start_s=8, cold_fraction=0.5, source="canary")
    inputs = CostInputs(
        measured=measured, pool="P", flex_per_s=0.5, active_per_s=0.25, images_per_month=100
    )
    assert estimate(inputs).as_json() == {
        "pool": "P",
        "gpuCount": 1,
        "flexPerSecond": 0.5,
        "activePerSecond": 0.25,
        "measured": {"executionS": 2, "coldStartS": 8, "coldFraction": 0.5, "source": "canary"},
        "perGeneration": {"warm": 1.0, "coldStartExtra": 6.5, "blended": 4.25},
        "monthly": {
            "images": 100,
            "runpodGenerations": 425.0,
            "runpodAlwaysOn": 0.0,
            "runpodTotal": 425.0,
            "scenarioLow": 5.0,
            "scenarioHigh": 10.0,
        },
        "savingsVsScenario": {"low": 1 - 425 / 5, "high": 1 - 425 / 10},
    }


@pytest.mark.parametrize(
    "args",
    [["--images-per-month", "0"], ["--min-workers", "-1"], ["--idle-timeout", "-1"]],
)
def test_a_projection_without_meaning_is_a_usage_error(args: list[str]) -> None:
    """No images, negative workers or a negative idle timeout: exit 2 naming the option."""
    result = invoke(["cost", "--execution-s", "4", *args], NO_ENV)
    assert result.exit_code == 2, result.output
    assert args[0] in result.output
