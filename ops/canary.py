"""The canary gate: N requests at concurrency C, judged against the rollout plan's numbers.

Owns: firing requests through ``/run`` + ``/status`` (so a failed job's error is kept),
summarising success rate, latency percentiles, cold versus warm requests (``delayTime``
above a threshold counts as a cold start) and execution time, and the gates: success rate
>= 98 %, warm p95 <= 10 s and cold p95 <= 90 s by default (the plan's table), each
configurable. Client-side backoff on 429 lives in :mod:`ops.jobs`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ops.jobs import JobClient, JobOutcome
from ops.report import Check, Status, percent, seconds
from ops.stats import median, percentile

DEFAULT_PROMPT = "a treasure chest game asset, isometric, clean background"


def default_input(index: int) -> dict[str, Any]:
    """The canary's request: a small txt2img with a distinct seed per request."""
    return {
        "template": "flux_txt2img",
        "params": {
            "prompt": DEFAULT_PROMPT,
            "seed": 1000 + index,
            "width": 768,
            "height": 768,
            "steps": 8,
        },
    }


@dataclass(frozen=True, kw_only=True)
class Gates:
    """The thresholds a canary must meet; None disables a gate."""

    min_success: float = 0.98
    """Fraction of requests that must complete."""
    max_warm_p95_s: float | None = 10.0
    """p95 end-to-end latency of warm requests, seconds."""
    max_cold_p95_s: float | None = 90.0
    """p95 end-to-end latency of cold requests, seconds."""
    cold_threshold_s: float = 10.0
    """A request whose ``delayTime`` (queue + cold start) reaches this counts as cold."""


def run_canary(
    client: JobClient,
    *,
    requests: int,
    concurrency: int,
    timeout_s: float,
    poll_s: float,
    make_input: Callable[[int], Any] = default_input,
    on_done: Callable[[JobOutcome], None] | None = None,
) -> list[JobOutcome]:
    """Fire ``requests`` jobs, at most ``concurrency`` in flight; never raises per job."""

    def one(index: int) -> JobOutcome:
        outcome = client.run_and_wait(make_input(index), timeout_s=timeout_s, poll_s=poll_s)
        if on_done is not None:
            on_done(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(one, range(requests)))


def _kind(outcome: JobOutcome) -> str:
    if outcome.error_type:
        return f"{outcome.status} ({outcome.error_type})"
    return outcome.reason()


def _pcts(values: Sequence[float]) -> dict[str, float | None]:
    return {f"p{p}": _round(percentile(values, p)) for p in (50, 95, 99)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def summarize(outcomes: Sequence[JobOutcome], *, gates: Gates, wall_s: float) -> dict[str, Any]:
    """Every figure the gates and the cost report need, JSON-ready."""
    done = [o for o in outcomes if o.ok]
    threshold_ms = gates.cold_threshold_s * 1000
    cold = [o for o in done if (o.delay_ms or 0) >= threshold_ms]
    warm = [o for o in done if (o.delay_ms or 0) < threshold_ms]
    # Group by status and error type (messages often carry job ids); keep one example each.
    failed = [o for o in outcomes if not o.ok]
    kinds = Counter(_kind(o) for o in failed)
    examples = {_kind(o): o.reason() for o in reversed(failed)}
    delays = [o.delay_ms / 1000 for o in done if o.delay_ms is not None]
    warm_delays = [o.delay_ms / 1000 for o in warm if o.delay_ms is not None]
    cold_delays = [o.delay_ms / 1000 for o in cold if o.delay_ms is not None]
    cold_start = None
    if cold_delays:
        cold_start = max(0.0, (median(cold_delays) or 0.0) - (median(warm_delays) or 0.0))
    return {
        "requests": len(outcomes),
        "completed": len(done),
        "failed": len(outcomes) - len(done),
        "successRate": (len(done) / len(outcomes)) if outcomes else None,
        "latencyS": _pcts([o.latency_s for o in done]),
        "warm": {"count": len(warm), "latencyS": _pcts([o.latency_s for o in warm])},
        "cold": {
            "count": len(cold),
            "latencyS": _pcts([o.latency_s for o in cold]),
            "coldStartS": _round(cold_start),
        },
        "coldFraction": (len(cold) / len(done)) if done else None,
        "delayS": _pcts(delays),
        "executionS": _pcts([o.execution_ms / 1000 for o in done if o.execution_ms is not None]),
        "throttled429": sum(o.throttled for o in outcomes),
        "wallS": round(wall_s, 3),
        "failures": [
            {"kind": kind, "count": n, "reason": examples[kind]} for kind, n in kinds.most_common()
        ],
    }


def evaluate(summary: dict[str, Any], gates: Gates) -> list[Check]:
    """The gate verdicts, each saying why it passed or failed."""
    checks = []
    rate = summary["successRate"]
    failures = summary["failures"]
    top = "; ".join(f"{f['count']}x {f['reason']}" for f in failures[:3])
    detail = (
        f"{percent(rate)} (>= {gates.min_success * 100:.1f} % needed): "
        f"{summary['failed']} of {summary['requests']} failed"
    )
    if top:
        detail += f": {top}"
    ok = rate is not None and rate >= gates.min_success
    checks.append(Check("success rate", "pass" if ok else "fail", detail, {"value": rate}))
    for label, key, limit in (
        ("warm p95 latency", "warm", gates.max_warm_p95_s),
        ("cold p95 latency", "cold", gates.max_cold_p95_s),
    ):
        value = summary[key]["latencyS"]["p95"]
        count = summary[key]["count"]
        if limit is None:
            checks.append(
                Check(label, "skip", f"{seconds(value)}; gate disabled", {"value": value})
            )
        elif value is None:
            checks.append(Check(label, "skip", f"no {key} requests measured", {"value": None}))
        else:
            extra = ""
            if key == "cold":
                extra = f", cold start ~{seconds(summary['cold']['coldStartS'])}"
            passed = value <= limit
            verdict: Status = "pass" if passed else "fail"
            sign = "<=" if passed else ">"
            checks.append(
                Check(
                    label,
                    verdict,
                    f"{seconds(value)} {sign} {limit:g} s over {count} {key} request(s){extra}",
                    {"value": value, "limit": limit},
                )
            )
    return checks
