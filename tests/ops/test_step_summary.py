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
import yaml

from ops import canary, health, step_summary
from ops import cost as cost_mod
from ops.jobs import JobOutcome
from ops.report import Check
from ops.step_summary import ChartError, XYChart, canary_markdown, health_markdown
from tests.fakes.runpod_jobs import JobApiEmulator, echo_worker
from tests.ops.conftest import FAST, invoke, invoke_json, ops_env
from tests.ops.test_health import run_jobs

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


def mermaid_blocks(markdown: str) -> list[str]:
    """The body of every fenced ``mermaid`` block in ``markdown``, in order."""
    blocks: list[str] = []
    current: list[str] | None = None
    for line in markdown.splitlines():
        if current is None and line.strip() == "```mermaid":
            current = []
        elif current is not None and line.strip() == "```":
            blocks.append("\n".join(current) + "\n")
            current = None
        elif current is not None:
            current.append(line)
    assert current is None, f"an unterminated mermaid block:\n{markdown}"
    return blocks


def assert_all_parse(markdown: str, expected: int) -> list[str]:
    """The Markdown's chart blocks, each an xychart every locked Mermaid accepts."""
    blocks = mermaid_blocks(markdown)
    assert len(blocks) == expected, markdown
    for version, results in mermaid_parse(blocks).items():
        for block, result in zip(blocks, results, strict=True):
            assert result["ok"], f"{version} refused:\n{block}\n{result.get('error')}"
            assert result["type"] in (None, "xychart"), result
    return blocks


def all_series(block: str, kind: str) -> list[list[float]]:
    """The numbers of each of the block's ``bar`` or ``line`` series, in order."""
    found = re.findall(rf"^  {kind} \[(.*)\]$", block, flags=re.M)
    return [[float(value) for value in each.split(", ")] for each in found]


def series(block: str, kind: str) -> list[float]:
    """The numbers of the block's one ``bar`` or ``line``."""
    (found,) = all_series(block, kind)
    return found


def trio(block: canary.Percentiles) -> list[float]:
    """p50, p95, p99 as a chart draws them (four decimals)."""
    return [round(v, 4) for v in (block.p50, block.p95, block.p99) if v is not None]


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


def canned_health(
    thresholds: health.Thresholds | None = None,
) -> tuple[health.HealthSummary, list[Check], health.Thresholds]:
    """Three /health readings (one worker up, workersMin 2 unless ``thresholds`` say) and
    five probes, one slow: 182 of 194 jobs completed (93.8 %), 6.2 % errors."""
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
    thresholds = thresholds or health.Thresholds(workers_min=2)
    summary = health.summarize(readings, probes, workers_min=thresholds.workers_min)
    return summary, health.evaluate(summary, thresholds), thresholds


# --------------------------------------------------------------------------- the parser check


def test_the_canary_summary_renders_charts_mermaid_parses() -> None:
    """A canned canary run becomes a verdict, its checks, and five charts (percentiles, kinds,
    each request, success rate, cost against Scenario) that both Mermaids parse."""
    summary, checks, gates = canned_canary()
    markdown = canary_markdown(summary, checks, gates=gates, endpoint_id="ep-canned")
    assert markdown.startswith("### ops canary: a gate failed\n")
    assert "| success rate | FAIL |" in markdown
    percentiles, kinds, each, success, cost = assert_all_parse(markdown, 5)
    assert categories(percentiles) == [
        f"{group} {key}" for group in ("all", "warm", "cold") for key in ("p50", "p95", "p99")
    ]
    assert series(percentiles, "bar") == [
        *trio(summary.latency_s),
        *trio(summary.warm.latency_s),
        *trio(summary.cold.latency_s),
    ]
    # The warm p95 gate and, cold requests having completed, the cold p95 gate.
    assert all_series(percentiles, "line") == [[10.0] * 9, [90.0] * 9]
    assert "(lines: warm p95 gate, under 10 s; cold p95 gate, at most 90 s)" in percentiles
    assert all_series(each, "line") == [[10.0] * 24, [90.0] * 24]
    assert dict(zip(categories(kinds), series(kinds, "bar"), strict=True)) == {
        "warm": 20,
        "cold": 2,
        "untimed": 1,
        "failed": 1,
    }
    assert series(each, "bar") == [round(p.latency_s, 4) for p in summary.latencies]
    assert series(success, "bar") == pytest.approx([100 * 23 / 24, 98.0, 95.0], abs=1e-4)
    prices = dict(zip(categories(cost), series(cost, "bar"), strict=True))
    assert prices["Scenario low"] == 50
    assert prices["Scenario high"] == 100
    assert 0 < prices["RunPod warm"] < prices["RunPod blended"] < prices["Scenario low"]
    assert "Scenario charges $0.05-0.10 per image." in markdown
    assert "Kinds in send order (C cold, w warm, ? untimed, F failed): `C C w w" in markdown
    assert "| warm p95 latency | PASS |" in markdown
    assert "| 20 | 2 | 1 | 1 | 30.85 s | 0 |" in markdown  # cold start = 31 s - 0.15 s


def test_the_health_summary_renders_charts_mermaid_parses() -> None:
    """A canned health run: checks, probe percentiles and each probe against the 15 s alert,
    success and error rates against 95 % / 5 %, workers against workersMin: all parse."""
    summary, checks, thresholds = canned_health()
    markdown = health_markdown(summary, checks, thresholds=thresholds, endpoint_id="ep-prod")
    assert markdown.startswith("### ops health: alerting\n")
    percentiles, each, rates, workers = assert_all_parse(markdown, 4)
    assert categories(percentiles) == ["probes p50", "probes p95", "probes p99"]
    assert series(percentiles, "bar") == trio(summary.probes.latency_s)
    assert series(percentiles, "line") == [15.0] * 3
    assert series(each, "bar") == [3.2, 3.4, 3.1, 19.0, 3.3]
    assert series(rates, "bar") == pytest.approx(
        [100 * 182 / 194, 95.0, 100 * 12 / 194, 5.0], abs=1e-4
    )
    assert series(workers, "bar") == [1, 1, 1]
    assert series(workers, "line") == [2, 2, 2]


def test_the_health_charts_draw_the_thresholds_the_run_judged_with() -> None:
    """With --min-success 0.85 --max-error-rate 0.15 --max-p95 20 the run is healthy, and its
    charts draw those limits (not the defaults, which would make it look alerting)."""
    thresholds = health.Thresholds(
        min_success=0.85, max_error_rate=0.15, max_p95_s=20.0, workers_min=1
    )
    summary, checks, _ = canned_health(thresholds)
    markdown = health_markdown(summary, checks, thresholds=thresholds)
    assert markdown.startswith("### ops health: healthy\n")
    percentiles, each, rates, workers = assert_all_parse(markdown, 4)
    assert series(percentiles, "line") == [20.0] * 3
    assert series(each, "line") == [20.0] * 5
    assert "alert above 20 s" in percentiles
    assert series(rates, "bar") == pytest.approx(
        [100 * 182 / 194, 85.0, 100 * 12 / 194, 15.0], abs=1e-4
    )
    assert "| 93.8 % | 85.0 % | 6.2 % | 15.0 % |" in markdown
    assert series(workers, "line") == [1, 1, 1]
    off = health.Thresholds(max_p95_s=None)
    percentiles, *_ = mermaid_blocks(health_markdown(summary, checks, thresholds=off))
    assert "line" not in percentiles  # no latency alert, no line


def test_the_canary_charts_draw_its_gates_and_the_health_alert() -> None:
    """Non-default gates are what the percentile, each-request and success charts draw; the
    success chart's health alert is where `ops health` alerts (its Thresholds default)."""
    summary, _, _ = canned_canary()
    gates = canary.Gates(min_success=0.9, max_warm_p95_s=12.0, max_cold_p95_s=60.0)
    checks = canary.evaluate(summary, gates)
    markdown = canary_markdown(summary, checks, gates=gates)
    percentiles, _, each, success, _ = assert_all_parse(markdown, 5)
    assert all_series(percentiles, "line") == [[12.0] * 9, [60.0] * 9]
    assert all_series(each, "line") == [[12.0] * 24, [60.0] * 24]
    assert series(success, "bar") == pytest.approx(
        [100 * 23 / 24, 90.0, health.Thresholds().min_success * 100], abs=1e-4
    )
    stricter = canary_markdown(summary, checks, gates=gates, health_min_success=0.99)
    assert series(mermaid_blocks(stricter)[3], "bar")[2] == 99.0
    # Gates off: no line; the cold gate alone when the warm one is off.
    cold_only = canary.Gates(max_warm_p95_s=None)
    percentiles, *_ = mermaid_blocks(canary_markdown(summary, checks, gates=cold_only))
    assert all_series(percentiles, "line") == [[90.0] * 9]
    assert "(line: cold p95 gate, at most 90 s)" in percentiles
    no_gates = canary.Gates(max_warm_p95_s=None, max_cold_p95_s=None)
    percentiles, *_ = mermaid_blocks(canary_markdown(summary, checks, gates=no_gates))
    assert all_series(percentiles, "line") == []


def test_the_cold_gate_is_drawn_only_when_cold_requests_completed() -> None:
    """Without cold requests the cold gate judges nothing; its line would only squash the
    warm bars, so the chart draws the warm gate alone."""
    gates = canary.Gates()
    samples = [
        canary.Sample(
            outcome=outcome(delay_ms=150, execution_ms=4000, worker_id="w0"),
            sent_s=float(i),
            latency_s=4.2,
        )
        for i in range(3)
    ]
    warm = canary.summarize(samples, gates=gates, wall_s=9.0, warm_workers_before=1)
    assert warm.cold.count == 0
    markdown = canary_markdown(warm, canary.evaluate(warm, gates), gates=gates)
    percentiles, _, each, *_ = mermaid_blocks(markdown)
    assert all_series(percentiles, "line") == [[10.0] * 6]
    assert all_series(each, "line") == [[10.0] * 3]


@pytest.mark.parametrize("pool", ["AMPERE_16", "HOPPER_141"])
def test_the_cost_chart_is_ops_costs_estimate_at_the_chosen_pool(pool: str) -> None:
    """The RunPod bars are `ops cost`'s estimate at --gpu-pool (with the canary's idle
    timeout), the Scenario bars its price table."""
    summary, checks, _ = canned_canary()
    gates = canary.Gates(idle_timeout_s=30.0)
    markdown = canary_markdown(summary, checks, gates=gates, gpu_pool=pool)
    cost = mermaid_blocks(markdown)[4]
    inputs = cost_mod.CostInputs.at_pool(
        cost_mod.Measured.from_summary(summary), pool, idle_timeout_s=30.0
    )
    per = cost_mod.estimate(inputs).per_generation
    low, high = cost_mod.SCENARIO_PER_IMAGE
    assert series(cost, "bar") == pytest.approx(
        [per.warm * 1000, per.blended * 1000, low * 1000, high * 1000], abs=1e-4
    )
    assert f"(RunPod: {pool} flex price)" in cost
    assert f"{pool} at ${cost_mod.PRICES[pool][0]}/s" in markdown


def test_scenarios_price_comes_from_the_cost_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The note and the Scenario bars follow ops.cost's SCENARIO_PER_IMAGE."""
    monkeypatch.setattr(cost_mod, "SCENARIO_PER_IMAGE", (0.04, 0.12))
    summary, checks, gates = canned_canary()
    markdown = canary_markdown(summary, checks, gates=gates)
    assert "Scenario charges $0.04-0.12 per image." in markdown
    assert series(mermaid_blocks(markdown)[4], "bar")[2:] == [40.0, 120.0]


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


HOSTILE = [
    "%%f",  # a Mermaid comment right after the opening quote
    "%%{init: {'theme': 'dark'}}%%",  # a directive
    "a %%% b",
    'say "hi"',
    "p95: 10 s",
    "warm --> cold",
    "x-axis [1]",
    "line [2]",
    "é ✓ 日本 ±",
    "semi; colon: comma, hash #quot;",
    "`tick`",
    "<b>bold</b> & {curly}",
    "two\nlines\ttab",
]


def test_the_chart_builder_writes_only_what_the_grammar_accepts() -> None:
    """Quotes and line breaks leave labels, numbers are plain decimals (never 1e-05)."""
    chart = XYChart('cost "per" image\nnow', ['a "b"', "c"], [0.00001, 1234567.891], "US$")
    text = chart.mermaid()
    assert "title \"cost 'per' image now\"" in text
    assert 'x-axis ["a \'b\'", "c"]' in text
    assert "bar [0, 1234567.891]" in text
    assert "e-" not in text
    assert "nan" not in text.lower()


def test_hostile_labels_make_charts_every_mermaid_parses() -> None:
    """Comments and directives (``%%``), quotes, colons, arrows, keywords and unicode in a
    title, a category or the y label: the builder's output parses, one label per category."""
    blocks = [
        XYChart(label, [label, "b"], [1.0, 2.0], label, [[1.5, 1.5]]).mermaid() for label in HOSTILE
    ]
    blocks.append(XYChart("all", HOSTILE, [1.0] * len(HOSTILE), "y").mermaid())
    diagrams = ["\n".join(block.splitlines()[1:-1]) + "\n" for block in blocks]
    assert all("%%" not in d for d in diagrams)
    assert len(categories(diagrams[-1])) == len(HOSTILE)
    assert categories(diagrams[-1])[0] == "% %f"
    assert categories(diagrams[-1])[8] == "é ✓ 日本 ±"
    for version, results in mermaid_parse(diagrams).items():
        for diagram, result in zip(diagrams, results, strict=True):
            assert result["ok"], f"{version} refused:\n{diagram}\n{result.get('error')}"


@pytest.mark.parametrize(
    ("bars", "lines"),
    [
        ([1.0], []),
        ([1.0, float("nan")], []),
        ([1.0, -2.0], []),
        ([1.0, 2.0], [[3.0]]),
        ([1.0, 2.0], [[3.0, 3.0], [-1.0, -1.0]]),
    ],
)
def test_the_chart_builder_refuses_what_mermaid_cannot_draw(
    bars: list[float], lines: list[list[float]]
) -> None:
    """One value per category, finite and not negative, or a ChartError naming the chart."""
    with pytest.raises(ChartError, match="the chart"):
        XYChart("the chart", ["a", "b"], bars, "y", lines)


def test_a_fixed_y_axis_must_hold_the_data() -> None:
    """Percent charts end at 100; a top below a value is refused, not drawn cut off."""
    assert (
        'y-axis "percent" 0 --> 100' in XYChart("p", ["a"], [99.5], "percent", y_top=100).mermaid()
    )
    with pytest.raises(ChartError, match="below the data"):
        XYChart("p", ["a"], [101.0], "percent", y_top=100)
    with pytest.raises(ChartError, match="below the data"):
        XYChart("p", ["a"], [50.0], "percent", [[101.0]], y_top=100)


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


@pytest.mark.parametrize(
    "args",
    [
        ["canary", "--min-success", "98"],
        ["canary", "--min-success", "-0.1"],
        ["canary", "--max-warm-p95", "-1"],
        ["canary", "--max-cold-p95", "-1"],
        ["canary", "--idle-timeout", "-5"],
        ["canary", "--cold-threshold", "-1"],
        ["health", "--max-p95", "-3"],
        ["health", "--min-success", "95"],
        ["health", "--max-error-rate", "5"],
        ["health", "--workers-min", "-1"],
        ["health", "--max-queue", "-1"],
        ["health", "--interval", "-1"],
        ["health", "--probe-timeout", "-1"],
        ["health", "--max-retries", "-1"],
        ["canary", "--poll-interval", "-1"],
        ["canary", "--timeout", "-1"],
        ["canary", "--max-retries", "-1"],
        ["canary", "--backoff-base", "-1"],
        ["canary", "--max-backoff", "-1"],
    ],
)
def test_an_impossible_limit_is_refused_before_any_request(
    make_emulator: Any, tmp_path: Path, args: list[str]
) -> None:
    """Rates are fractions (0-1), latencies, timeouts and counts are not negative: anything
    else is a usage error (exit 2, naming the option) before any call to the endpoint, not
    a run whose summary cannot be drawn."""
    emu: JobApiEmulator = make_emulator(echo_worker, workers=1)
    target = tmp_path / "summary.md"
    result = invoke(
        [
            *args,
            "--requests" if args[0] == "canary" else "--samples",
            "3",
            "--summary-md",
            str(target),
            "--json",
        ],
        ops_env(emu),
    )
    assert result.exit_code == 2, result.output
    assert args[1] in result.output
    assert emu.count("run") == 0
    assert emu.count("health") == 0
    assert not target.exists()


@pytest.mark.parametrize("command", ["canary", "health"])
def test_a_chart_that_cannot_be_drawn_costs_no_verdict(
    make_emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """Whatever chart Mermaid could not draw, the run still prints its JSON verdict and exit
    code, and the summary keeps the verdict and checks with a note instead of the charts."""

    def refuse(chart: XYChart) -> str:
        raise ChartError(f"{chart.title}: cannot be drawn")

    monkeypatch.setattr(step_summary.XYChart, "mermaid", refuse)
    emu: JobApiEmulator = make_emulator(echo_worker, workers=1)
    target = tmp_path / "summary.md"
    args = ["canary", "--requests", "3"] if command == "canary" else ["health", "--probes", "1"]
    code, doc = invoke_json(
        [
            *args,
            "--samples" if command == "health" else "--concurrency",
            "1",
            *FAST,
            "--summary-md",
            str(target),
        ],
        ops_env(emu),
    )
    assert doc["command"] == command
    assert code == (0 if doc["ok"] else 1)
    assert doc["checks"]
    text = target.read_text(encoding="utf-8")
    assert text.startswith(f"### ops {command}: ")
    assert f"Endpoint `{doc['endpointId']}`" in text
    for check in doc["checks"]:
        assert f"| {check['name']} | {check['status'].upper()} |" in text
    assert re.search(r"^Charts left out: .*: cannot be drawn\.$", text, flags=re.M), text
    assert "```mermaid" not in text


def test_ops_health_charts_the_thresholds_given_on_its_command_line(
    make_emulator: Any, tmp_path: Path
) -> None:
    """10 % of jobs failed: healthy at --min-success 0.85 --max-error-rate 0.15, and the rates
    chart draws 85 % and 15 % (the defaults, 95 % and 5 %, would show it alerting)."""
    emu: JobApiEmulator = make_emulator(echo_worker, failure_rate=0.1)
    run_jobs(emu, 10)
    target = tmp_path / "summary.md"
    args = ["health", "--samples", "1", "--min-jobs", "10", "--summary-md", str(target)]
    limits = ["--min-success", "0.85", "--max-error-rate", "0.15"]
    code, doc = invoke_json([*args, *limits], ops_env(emu))
    assert code == 0, doc["checks"]
    text = target.read_text(encoding="utf-8")
    assert text.startswith("### ops health: healthy\n")
    rates = next(b for b in mermaid_blocks(text) if "Success and error rate" in b)
    assert series(rates, "bar") == pytest.approx([90.0, 85.0, 10.0, 15.0])


def test_ops_canary_prices_the_cost_chart_at_its_gpu_pool(
    make_emulator: Any, tmp_path: Path
) -> None:
    """--gpu-pool AMPERE_80 --idle-timeout 7: the RunPod bars are `ops cost`'s estimate from
    the run's own --json figures at that pool's flex price and idle timeout."""
    emu: JobApiEmulator = make_emulator(echo_worker, workers=1)
    target = tmp_path / "summary.md"
    args = ["canary", "--requests", "3", "--gpu-pool", "AMPERE_80", "--idle-timeout", "7"]
    _, doc = invoke_json([*args, "--summary-md", str(target), *FAST], ops_env(emu))
    cost = mermaid_blocks(target.read_text(encoding="utf-8"))[4]
    inputs = cost_mod.CostInputs.at_pool(
        cost_mod.Measured.from_canary(doc), "AMPERE_80", idle_timeout_s=7.0
    )
    per = cost_mod.estimate(inputs).per_generation
    assert series(cost, "bar")[:2] == pytest.approx([per.warm * 1000, per.blended * 1000], abs=1e-4)
    assert "(RunPod: AMPERE_80 flex price)" in cost


# --------------------------------------------------------------------------- the runbook


def workflow_run(workflow: str, job: str, command: str) -> str:
    """The ``run`` of the step of ``job`` in ``workflow`` that runs ``command``."""
    path = REPO / ".github" / "workflows" / workflow
    steps = yaml.safe_load(path.read_text(encoding="utf-8"))["jobs"][job]["steps"]
    (run,) = [s["run"] for s in steps if command in s.get("run", "")]
    return str(run)


def test_the_runbook_says_which_summary_has_which_chart() -> None:
    """docs/rollout.md's charts section names the defaults the charts draw and says truly
    which health run has probes (so a latency chart)."""
    runbook = (REPO / "docs" / "rollout.md").read_text(encoding="utf-8")
    section = runbook.split("### Charts in the job summary", 1)[1].split("\n### ", 1)[0]
    flat = " ".join(section.split())
    post_deploy = workflow_run("deploy.yml", "production", "python -m ops health ")
    scheduled = workflow_run("health.yml", "health", "python -m ops health ")
    assert "--probes 5" in scheduled
    assert "the scheduled run has all of them" in flat
    without = "The post-deploy health runs without `--probes`"
    assert (without in flat) == ("--probes" not in post_deploy)
    alerts, gates = health.Thresholds(), canary.Gates()
    low, high = cost_mod.SCENARIO_PER_IMAGE
    for named in (
        f"(`--max-warm-p95`, {gates.max_warm_p95_s:g} s)",
        f"(`--max-cold-p95`, {gates.max_cold_p95_s:g} s)",
        f"(`--min-success`, {gates.min_success * 100:g} %)",
        f"where `ops health` alerts ({alerts.min_success * 100:g} %)",
        f"Scenario's ${low * 1000:g}-{high * 1000:g}",
        f"(`--max-p95`, {alerts.max_p95_s:g} s)",
        f"{alerts.min_success * 100:g} % and {alerts.max_error_rate * 100:g} % by default",
    ):
        assert named in flat, named
