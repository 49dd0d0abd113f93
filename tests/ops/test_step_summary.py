"""The step summaries: Markdown with Mermaid xychart-beta charts that Mermaid itself parses.

Every chart block is parsed by Mermaid's own parser, in both Mermaid lines GitHub has rendered
with (10.9 and 11.x, locked in ``tests/mermaid/package-lock.json``), through node and jsdom
(``tests/mermaid/parse.mjs``). Without node or ``npm ci --prefix tests/mermaid`` those tests
skip, saying which; the chart builder's own refusals and the figures are tested regardless.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ops import canary, health
from ops.jobs import JobOutcome
from ops.report import Check
from ops.step_summary import (
    ChartError,
    XYChart,
    canary_markdown,
    health_markdown,
    mermaid_blocks,
)
from tests.fakes.runpod_jobs import JobApiEmulator, echo_worker
from tests.ops.conftest import FAST, invoke_json, ops_env

REPO = Path(__file__).resolve().parents[2]
MERMAID = REPO / "tests" / "mermaid"


def mermaid_parse(diagrams: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each diagram parsed by every Mermaid the lockfile pins: version -> one result each."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the charts are checked with Mermaid's own parser")
    if not (MERMAID / "node_modules" / "mermaid").is_dir():
        pytest.skip("Mermaid is not installed for the chart check: npm ci --prefix tests/mermaid")
    done = subprocess.run(
        [node, str(MERMAID / "parse.mjs")],
        input=json.dumps(diagrams),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results: dict[str, list[dict[str, Any]]] = json.loads(done.stdout)
    lock = json.loads((MERMAID / "package-lock.json").read_text(encoding="utf-8"))["packages"]
    locked = {
        f"mermaid@{lock[f'node_modules/{name}']['version']}" for name in ("mermaid", "mermaid10")
    }
    assert set(results) == locked, (
        "tests/mermaid/node_modules is stale: npm ci --prefix tests/mermaid"
    )
    return results


def assert_all_parse(markdown: str, expected: int) -> list[str]:
    """The Markdown's chart blocks, each an xychart every locked Mermaid accepts."""
    blocks = mermaid_blocks(markdown)
    assert len(blocks) == expected, markdown
    for version, results in mermaid_parse(blocks).items():
        for block, result in zip(blocks, results, strict=True):
            assert result["ok"], f"{version} refused:\n{block}\n{result.get('error')}"
            assert result["type"] in (None, "xychart"), result
    return blocks


def series(block: str, kind: str) -> list[float]:
    """The numbers of the block's ``bar`` or ``line``."""
    (found,) = re.findall(rf"^  {kind} \[(.*)\]$", block, flags=re.M)
    return [float(value) for value in found.split(", ")]


def categories(block: str) -> list[str]:
    (found,) = re.findall(r"^  x-axis \[(.*)\]$", block, flags=re.M)
    return re.findall(r'"([^"]*)"', found)


# --------------------------------------------------------------------------- canned runs


def outcome(**fields: Any) -> JobOutcome:
    return JobOutcome(job_id="job", status="COMPLETED", latency_s=0.0, **fields)


def canned_canary() -> tuple[canary.CanarySummary, list[Check], canary.Gates]:
    """24 requests on two workers started for the run (concurrency 2): 2 cold (31 s start),
    20 warm, 1 untimed, 1 failed (out of memory): what `ops canary` renders for it."""
    samples = []
    ends = {"w0": 0.0, "w1": 0.5}
    for index in range(22):
        worker = f"w{index % 2}"
        cold = index < 2
        delay = 31_000 if cold else 150
        # Sent while the worker finishes its previous job; it starts right after that one.
        sent = ends[worker] if cold else ends[worker] - 0.1
        latency = (delay + 4000) / 1000 + 0.01 * index
        ends[worker] = sent + latency
        samples.append(
            canary.Sample(
                outcome=outcome(delay_ms=delay, execution_ms=4000, worker_id=worker),
                sent_s=sent,
                latency_s=latency,
            )
        )
    samples.append(canary.Sample(outcome=outcome(), sent_s=ends["w0"], latency_s=5.0))
    failed = JobOutcome(
        job_id="job-9",
        status="FAILED",
        latency_s=0,
        error="CUDA out of memory",
        error_type="out_of_memory",
    )
    samples.append(canary.Sample(outcome=failed, sent_s=ends["w1"], latency_s=7.5))
    gates = canary.Gates()
    summary = canary.summarize(samples, gates=gates, wall_s=80.0, warm_workers_before=0)
    return summary, canary.evaluate(summary, gates), gates


def canned_health() -> tuple[health.HealthSummary, list[Check]]:
    """Three /health readings (one worker up, workersMin 2) and five probes, one slow."""
    readings = [
        {
            "jobs": {"completed": 180 + i, "failed": 12, "inProgress": 1, "inQueue": 3 - i},
            "workers": {"idle": 0, "running": 1, "initializing": 1},
        }
        for i in range(3)
    ]
    probes = [
        canary.Sample(outcome=outcome(delay_ms=100, execution_ms=3000), sent_s=i, latency_s=v)
        for i, v in enumerate((3.2, 3.4, 3.1, 19.0, 3.3))
    ]
    summary = health.summarize(readings, probes, workers_min=2)
    thresholds = health.Thresholds(workers_min=2)
    return summary, health.evaluate(summary, thresholds)


# --------------------------------------------------------------------------- the parser check


def test_the_canary_summary_renders_charts_mermaid_parses() -> None:
    """A canned canary run becomes a verdict, its checks, and five charts (percentiles, kinds,
    each request, success rate, cost against Scenario) that both Mermaids parse."""
    summary, checks, gates = canned_canary()
    markdown = canary_markdown(summary, checks, gates=gates, endpoint_id="ep-canned")
    assert markdown.startswith("### ops canary: a gate failed\n")
    assert "| success rate | FAIL |" in markdown
    percentiles, kinds, each, success, cost = assert_all_parse(markdown, 5)
    assert categories(percentiles)[:3] == ["all p50", "all p95", "all p99"]
    warm_p95 = categories(percentiles).index("warm p95")
    assert series(percentiles, "bar")[warm_p95] == pytest.approx(summary.warm.latency_s.p95)
    assert set(series(percentiles, "line")) == {10.0}
    assert dict(zip(categories(kinds), series(kinds, "bar"), strict=True)) == {
        "warm": 20,
        "cold": 2,
        "untimed": 1,
        "failed": 1,
    }
    assert len(series(each, "bar")) == 24
    assert series(success, "bar") == pytest.approx([100 * 23 / 24, 98.0, 95.0], abs=1e-4)
    prices = dict(zip(categories(cost), series(cost, "bar"), strict=True))
    assert prices["Scenario low"] == 50
    assert prices["Scenario high"] == 100
    assert 0 < prices["RunPod warm"] < prices["RunPod blended"] < prices["Scenario low"]
    assert "Kinds in send order (C cold, w warm, ? untimed, F failed): `C C w w" in markdown
    assert "| warm p95 latency | PASS |" in markdown
    assert "| 20 | 2 | 1 | 1 | 30.85 s | 0 |" in markdown  # cold start = 31 s - 0.15 s


def test_the_health_summary_renders_charts_mermaid_parses() -> None:
    """A canned health run: checks, probe percentiles and each probe against the 15 s alert,
    success and error rates against 95 % / 5 %, workers against workersMin: all parse."""
    summary, checks = canned_health()
    markdown = health_markdown(summary, checks, endpoint_id="ep-prod")
    assert markdown.startswith("### ops health: alerting\n")
    percentiles, each, rates, workers = assert_all_parse(markdown, 4)
    assert set(series(percentiles, "line")) == {15.0}
    assert series(each, "bar") == [3.2, 3.4, 3.1, 19.0, 3.3]
    success, _, errors, _ = series(rates, "bar")
    assert success == pytest.approx(100 * 182 / 194, abs=1e-4)
    assert errors == pytest.approx(100 * 12 / 194, abs=1e-4)
    assert series(workers, "bar") == [1, 1, 1]
    assert series(workers, "line") == [2, 2, 2]


def test_the_parser_check_can_fail() -> None:
    """What the builder never writes, Mermaid refuses, and the check reports it: an exponent,
    a quote inside a label, a missing bracket."""
    bad = [
        "xychart-beta\n  bar [1e-05]\n",
        'xychart-beta\n  x-axis ["a "b" c"]\n  bar [1]\n',
        'xychart-beta\n  x-axis ["a", "b"\n  bar [1, 2]\n',
    ]
    for version, results in mermaid_parse(bad).items():
        assert [r["ok"] for r in results] == [False, False, False], version


# --------------------------------------------------------------------------- the builder itself


def test_the_chart_builder_writes_only_what_the_grammar_accepts() -> None:
    """Quotes and line breaks leave labels, numbers are plain decimals (never 1e-05)."""
    chart = XYChart('cost "per" image\nnow', ['a "b"', "c"], [0.00001, 1234567.891], "US$")
    text = chart.mermaid()
    assert "title \"cost 'per' image now\"" in text
    assert 'x-axis ["a \'b\'", "c"]' in text
    assert "bar [0, 1234567.891]" in text
    assert "e-" not in text
    assert "nan" not in text.lower()


@pytest.mark.parametrize(
    ("bars", "line"),
    [([1.0], None), ([1.0, float("nan")], None), ([1.0, -2.0], None), ([1.0, 2.0], [3.0])],
)
def test_the_chart_builder_refuses_what_mermaid_cannot_draw(
    bars: list[float], line: list[float] | None
) -> None:
    """One value per category, finite and not negative, or a ChartError naming the chart."""
    with pytest.raises(ChartError, match="the chart"):
        XYChart("the chart", ["a", "b"], bars, "y", line)


def test_a_fixed_y_axis_must_hold_the_data() -> None:
    """Percent charts end at 100; a top below a value is refused, not drawn cut off."""
    assert (
        'y-axis "percent" 0 --> 100' in XYChart("p", ["a"], [99.5], "percent", y_top=100).mermaid()
    )
    with pytest.raises(ChartError, match="below the data"):
        XYChart("p", ["a"], [101.0], "percent", y_top=100)


def test_a_canary_that_completed_nothing_still_gets_a_summary() -> None:
    """No completed job: the checks, the kinds chart, and why nothing is priced."""
    samples = [
        canary.Sample(
            outcome=JobOutcome(job_id="j", status="TIMED_OUT", latency_s=0), sent_s=0, latency_s=9
        )
    ]
    gates = canary.Gates()
    summary = canary.summarize(samples, gates=gates, wall_s=9.0, warm_workers_before=0)
    markdown = canary_markdown(summary, canary.evaluate(summary, gates), gates=gates)
    assert "No request completed: nothing to chart." in markdown
    assert "Not priced: the canary completed no job" in markdown
    assert_all_parse(markdown, 3)


# --------------------------------------------------------------------------- the commands


def test_ops_canary_appends_its_summary_to_the_step_summary_file(
    make_emulator: Any, tmp_path: Path
) -> None:
    """`ops canary --summary-md FILE` appends (the file GitHub gives a step may hold other
    steps' output), also when a gate fails."""
    emu: JobApiEmulator = make_emulator(echo_worker, workers=1)
    target = tmp_path / "summary.md"
    target.write_text("earlier step\n", encoding="utf-8")
    code, doc = invoke_json(
        ["canary", "--requests", "3", "--summary-md", str(target), *FAST], ops_env(emu)
    )
    assert code == 1  # too few warm requests
    text = target.read_text(encoding="utf-8")
    assert text.startswith("earlier step\n### ops canary: a gate failed\n")
    assert f"Endpoint `{doc['endpointId']}`" in text
    # The same renderer as the canned run above (whose charts Mermaid parses): 5 charts.
    assert len(mermaid_blocks(text)) == 5


def test_ops_health_appends_its_summary_to_the_step_summary_file(
    make_emulator: Any, tmp_path: Path
) -> None:
    """`ops health --summary-md FILE` with probes: the charts of what it measured."""
    emu: JobApiEmulator = make_emulator(echo_worker, workers=1)
    target = tmp_path / "summary.md"
    code, _ = invoke_json(
        ["health", "--samples", "1", "--probes", "2", "--summary-md", str(target)], ops_env(emu)
    )
    assert code in (0, 1)
    text = target.read_text(encoding="utf-8")
    assert text.startswith("### ops health: ")
    assert len(mermaid_blocks(text)) == 3


def test_an_unknown_gpu_pool_is_refused_before_any_request(make_emulator: Any) -> None:
    """--gpu-pool prices the summary's cost chart: a pool without a price is a usage error."""
    emu: JobApiEmulator = make_emulator(echo_worker, workers=1)
    code, doc = invoke_json(["canary", "--gpu-pool", "TPU_9000", *FAST], ops_env(emu))
    assert code == 2
    assert "--gpu-pool TPU_9000: known AMPERE_16" in doc["error"]
    assert emu.count("run", 200) == 0
