"""Cost per generation on RunPod serverless, next to Scenario's per-image price.

Owns: the GPU pool price table (:data:`PRICES`, USD per GPU-second, flex and active, from
https://docs.runpod.io/serverless/pricing as read in November 2026; override with
``--prices FILE`` or ``--price-per-s``), and the model:

- a warm generation bills its execution time;
- a cold generation also bills the worker's start time, and each burst ends with one
  idle timeout before the worker stops (billed too), so per generation
  ``exec + cold_fraction * (cold_start + idle_timeout)``;
- ``min_workers`` always-on workers bill every second of the month at the active rate.

RunPod rounds each billed span up to the second; the model ignores that (it matters only
for sub-second jobs). Scenario: $0.05-0.10 per image, no cold starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.canary import CanarySummary
from ops.report import CamelJson, Check

SECONDS_PER_MONTH = 30 * 24 * 3600

#: pool -> (flex $/s, active $/s, GPUs it covers) per GPU.
PRICES: dict[str, tuple[float, float, str]] = {
    "AMPERE_16": (0.00016, 0.00011, "A4000, A4500, RTX 4000 (16 GB)"),
    "AMPERE_24": (0.00019, 0.00013, "L4, A5000, 3090 (24 GB)"),
    "ADA_24": (0.00031, 0.00021, "4090 PRO (24 GB)"),
    "AMPERE_48": (0.00034, 0.00024, "A6000, A40 (48 GB)"),
    "ADA_48_PRO": (0.00053, 0.00037, "L40, L40S, 6000 Ada PRO (48 GB)"),
    "AMPERE_80": (0.00076, 0.00060, "A100 (80 GB)"),
    "ADA_80_PRO": (0.00116, 0.00093, "H100 PRO (80 GB)"),
    "HOPPER_141": (0.00155, 0.00124, "H200 PRO (141 GB)"),
    "BLACKWELL_180": (0.00240, 0.00190, "B200 (180 GB)"),
}

SCENARIO_PER_IMAGE = (0.05, 0.10)


class CostInputError(ValueError):
    """The cost model lacks a figure or got a nonsensical one."""


def load_prices(path: str | None) -> dict[str, tuple[float, float, str]]:
    """:data:`PRICES`, updated from a JSON file ``{pool: flex}`` or ``{pool: [flex, active]}``."""
    prices = dict(PRICES)
    if path is None:
        return prices
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CostInputError(f"--prices {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CostInputError(f"--prices {path}: expected a JSON object of pool -> price")
    for pool, value in data.items():
        flex, active = (value[0], value[1]) if isinstance(value, list) else (value, value)
        if not isinstance(flex, int | float) or not isinstance(active, int | float):
            raise CostInputError(f"--prices {path}: {pool} must be a number or [flex, active]")
        prices[str(pool)] = (float(flex), float(active), "from --prices")
    return prices


@dataclass(frozen=True, kw_only=True)
class Measured:
    """Timings the model needs, usually from a canary run."""

    execution_s: float
    cold_start_s: float
    cold_fraction: float
    source: str

    @classmethod
    def from_canary(cls, document: dict[str, Any]) -> Measured:
        """Take p50 execution, the cold-start estimate and the cold fraction from canary JSON."""
        summary = document.get("summary", document)
        try:
            execution = summary["executionS"]["p50"]
            cold_start = summary["cold"]["coldStartS"]
            fraction = summary["coldFraction"]
        except (KeyError, TypeError) as exc:
            raise CostInputError(
                "canary JSON lacks summary.executionS.p50 / cold.coldStartS / coldFraction: "
                "produce it with `python -m ops canary --json`"
            ) from exc
        return cls._from_canary_figures(execution, cold_start, fraction)

    @classmethod
    def from_summary(cls, summary: CanarySummary) -> Measured:
        """The same figures from a canary run's summary."""
        return cls._from_canary_figures(
            summary.execution_s.p50, summary.cold.cold_start_s, summary.cold_fraction
        )

    @classmethod
    def _from_canary_figures(
        cls, execution: float | None, cold_start: float | None, fraction: float | None
    ) -> Measured:
        if execution is None:
            raise CostInputError("the canary completed no job: no execution time to price")
        return cls(
            execution_s=float(execution),
            cold_start_s=float(cold_start or 0.0),
            cold_fraction=float(fraction or 0.0),
            source="canary",
        )


def measured_from(
    canary: dict[str, Any] | None,
    *,
    execution_s: float | None = None,
    cold_start_s: float | None = None,
    cold_fraction: float | None = None,
) -> Measured:
    """Timings from an ``ops canary --json`` document, each overridable by its flag."""
    if canary is None and execution_s is None:
        raise CostInputError("give --canary-json or --execution-s")
    base = (
        Measured.from_canary(canary)
        if canary is not None
        else Measured(execution_s=0.0, cold_start_s=0.0, cold_fraction=0.0, source="flags")
    )
    measured = Measured(
        execution_s=execution_s if execution_s is not None else base.execution_s,
        cold_start_s=cold_start_s if cold_start_s is not None else base.cold_start_s,
        cold_fraction=cold_fraction if cold_fraction is not None else base.cold_fraction,
        source=base.source if execution_s is None else "flags",
    )
    if not 0 <= measured.cold_fraction <= 1:
        raise CostInputError("--cold-fraction must be between 0 and 1")
    return measured


def pool_price(
    table: dict[str, tuple[float, float, str]], pool: str, override: float | None = None
) -> tuple[float, float]:
    """Flex and active $/GPU-second for ``pool`` (``override`` sets both)."""
    if override is not None:
        return override, override
    if pool not in table:
        raise CostInputError(
            f"no price for pool {pool!r}: known {', '.join(table)}; or pass --price-per-s"
        )
    flex, active, _ = table[pool]
    return flex, active


@dataclass(frozen=True, kw_only=True)
class CostInputs:
    """Everything the estimate depends on."""

    measured: Measured
    pool: str
    flex_per_s: float
    active_per_s: float
    gpu_count: int = 1
    idle_timeout_s: float = 5.0
    min_workers: int = 0
    images_per_month: int = 10_000
    scenario_per_image: tuple[float, float] = SCENARIO_PER_IMAGE

    @classmethod
    def at_pool(
        cls,
        measured: Measured,
        pool: str,
        *,
        prices: dict[str, tuple[float, float, str]] = PRICES,
        price_per_s: float | None = None,
        **options: Any,
    ) -> CostInputs:
        """Inputs at ``pool``'s flex and active price in ``prices`` (``price_per_s`` sets
        both); ``options`` are the other fields."""
        flex, active = pool_price(prices, pool, price_per_s)
        return cls(measured=measured, pool=pool, flex_per_s=flex, active_per_s=active, **options)


@dataclass(frozen=True, kw_only=True)
class PerGeneration:
    """USD per generation."""

    warm: float
    """A warm generation: its execution time."""
    cold_start_extra: float
    """What a cold generation adds: the worker's start and one idle timeout."""
    blended: float
    """Warm plus the cold fraction of the extra."""


@dataclass(frozen=True, kw_only=True)
class Monthly:
    """USD per month at ``images`` generations."""

    images: int
    runpod_generations: float
    """The generations, at the blended price."""
    runpod_always_on: float
    """``min_workers`` billed every second at the active price."""
    runpod_total: float
    scenario_low: float
    """Scenario at $0.05 per image."""
    scenario_high: float
    """Scenario at $0.10 per image."""


@dataclass(frozen=True, kw_only=True)
class Savings:
    """The share of Scenario's monthly bill RunPod saves (None at zero volume)."""

    low: float | None
    high: float | None


@dataclass(frozen=True, kw_only=True)
class CostReport(CamelJson):
    """The cost report, USD (``as_json()``: the ``report`` of ``ops cost --json``)."""

    pool: str
    gpu_count: int
    flex_per_second: float
    """$/GPU-second while a worker runs on demand."""
    active_per_second: float
    """$/GPU-second of an always-on worker."""
    measured: Measured
    per_generation: PerGeneration
    monthly: Monthly
    savings_vs_scenario: Savings


def estimate(inputs: CostInputs) -> CostReport:
    """The cost report of ``inputs``."""
    m = inputs.measured
    rate = inputs.flex_per_s * inputs.gpu_count
    warm = m.execution_s * rate
    cold_extra = (m.cold_start_s + inputs.idle_timeout_s) * rate
    per_generation = warm + m.cold_fraction * cold_extra
    always_on = inputs.min_workers * inputs.active_per_s * inputs.gpu_count * SECONDS_PER_MONTH
    monthly = per_generation * inputs.images_per_month + always_on
    low, high = inputs.scenario_per_image
    scenario_low, scenario_high = low * inputs.images_per_month, high * inputs.images_per_month
    return CostReport(
        pool=inputs.pool,
        gpu_count=inputs.gpu_count,
        flex_per_second=inputs.flex_per_s,
        active_per_second=inputs.active_per_s,
        measured=m,
        per_generation=PerGeneration(
            warm=warm, cold_start_extra=cold_extra, blended=per_generation
        ),
        monthly=Monthly(
            images=inputs.images_per_month,
            runpod_generations=per_generation * inputs.images_per_month,
            runpod_always_on=always_on,
            runpod_total=monthly,
            scenario_low=scenario_low,
            scenario_high=scenario_high,
        ),
        savings_vs_scenario=Savings(
            low=(1 - monthly / scenario_low) if scenario_low else None,
            high=(1 - monthly / scenario_high) if scenario_high else None,
        ),
    )


def evaluate(report: CostReport, *, max_per_image: float | None) -> list[Check]:
    """Optional gate: blended cost per generation must not exceed ``max_per_image``."""
    value = report.per_generation.blended
    if max_per_image is None:
        return [Check("cost per generation", "skip", f"${value:.5f}; no --max-per-image gate")]
    ok = value <= max_per_image
    return [
        Check(
            "cost per generation",
            "pass" if ok else "fail",
            f"${value:.5f} {'<=' if ok else '>'} ${max_per_image:g}",
            {"value": value, "limit": max_per_image},
        )
    ]
