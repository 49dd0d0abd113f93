"""Markdown summaries with charts, for people reading a CI run (``$GITHUB_STEP_SUMMARY``).

Owns: turning one ``ops canary`` or ``ops health`` run (its typed
:class:`~ops.canary.CanarySummary` / :class:`~ops.health.HealthSummary`, gates and checks,
the values its ``--json`` document is made of) into Markdown: the verdict, the checks as a
table, and Mermaid ``xychart-beta`` charts, which GitHub renders in Markdown, each followed
by the same figures as a table (so the numbers are there even where Mermaid is not
rendered):

- canary: latency percentiles (all, warm, cold) against the warm p95 gate and, when cold
  requests completed, the cold p95 gate; cold versus warm (how many, and every request's
  latency in send order, against the same gates); success rate against the canary gate and
  the health alert (:class:`~ops.health.Thresholds`' default); cost per 1,000 images against
  Scenario's price (``ops.cost``'s model at one GPU pool's flex price);
- health: the probes' latency percentiles and each probe against the p95 alert; success and
  error rates against their alerts; workers up in each reading against ``workersMin``: every
  limit drawn is the one the run judged with (its :class:`~ops.health.Thresholds`).

Charts are built by :class:`XYChart`, which writes only what Mermaid's xychart grammar
accepts (mermaid-js/mermaid ``packages/mermaid/src/diagrams/xychart/parser/xychart.jison``):
labels in double quotes with no double quote and no ``%%`` inside (its lexer reads ``%%``
right after an opening quote as a comment running to the end of the line, and Mermaid
removes ``%%{...}%%`` directives anywhere before parsing), plain decimal numbers (the
grammar has no exponent and no NaN), one value per category.
``tests/ops/test_step_summary.py`` parses every chart with Mermaid's own parser.
Deliberately not here: deciding anything (the gates live in :mod:`ops.canary` and
:mod:`ops.health`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ops import cost as cost_mod
from ops.canary import CanarySummary, Gates, Percentiles
from ops.health import HealthSummary, ProbeBlock, Thresholds
from ops.report import Check, all_passed, percent, seconds

#: Above this many requests the per-request chart is left out (labels would not fit).
MAX_POINTS = 100


class ChartError(ValueError):
    """A chart was asked to show something Mermaid's xychart cannot draw."""


def _label(text: str) -> str:
    """A double-quoted xychart string: no double quote, line break or ``%%`` inside."""
    clean = " ".join(str(text).replace('"', "'").split())
    while "%%" in clean:  # a Mermaid comment or directive start: "%%%" takes two passes
        clean = clean.replace("%%", "% %")
    return f'"{clean}"'


def _number(value: float) -> str:
    """A plain decimal xychart number (never ``1e-05``, never ``nan``)."""
    if not math.isfinite(value):
        raise ChartError(f"xychart cannot draw {value!r}")
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _axis_max(values: Sequence[float]) -> float:
    """A y-axis top a little above the highest value, on a round number."""
    top = max([0.0, *values])
    if top <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(top))
    for step in (1, 2, 2.5, 5, 10):
        candidate = math.ceil(top * 1.1 / (step * magnitude)) * step * magnitude
        if candidate / (step * magnitude) <= 10:
            return float(candidate)
    return top * 1.1  # pragma: no cover - the loop always returns by step 10


@dataclass(frozen=True)
class XYChart:
    """One bar chart with optional lines (limits), categories along the x axis."""

    title: str
    categories: Sequence[str]
    bars: Sequence[float]
    y_label: str
    lines: Sequence[Sequence[float]] = ()
    """Drawn over the bars, e.g. a gate or an alert threshold at every category."""
    y_top: float | None = None
    """The y axis's top (e.g. 100 for percentages); default: a round number above the data."""

    def __post_init__(self) -> None:
        if not self.categories:
            raise ChartError(f"{self.title}: no categories")
        for name, series in (("bar", self.bars), *(("line", line) for line in self.lines)):
            if len(series) != len(self.categories):
                raise ChartError(
                    f"{self.title}: {len(series)} {name} value(s) for "
                    f"{len(self.categories)} categories"
                )
            for value in series:
                if not math.isfinite(value) or value < 0:
                    raise ChartError(f"{self.title}: {name} value {value!r} is not a number >= 0")
        if self.y_top is not None and self.y_top < max(self._values()):
            raise ChartError(f"{self.title}: y axis top {self.y_top} is below the data")

    def _values(self) -> list[float]:
        return [*self.bars, *(value for line in self.lines for value in line)]

    def mermaid(self) -> str:
        """The chart as a fenced ``mermaid`` block."""
        values = self._values()
        lines = [
            "```mermaid",
            "xychart-beta",
            f"  title {_label(self.title)}",
            f"  x-axis [{', '.join(_label(c) for c in self.categories)}]",
            f"  y-axis {_label(self.y_label)} 0 --> {_number(self.y_top or _axis_max(values))}",
            f"  bar [{', '.join(_number(v) for v in self.bars)}]",
        ]
        for line in self.lines:
            lines.append(f"  line [{', '.join(_number(v) for v in line)}]")
        lines.append("```")
        return "\n".join(lines)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    out = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "---|" * len(header),
    ]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _checks_table(checks: Sequence[Check]) -> str:
    rows = [(c.name, c.status.upper(), c.detail) for c in checks]
    return _table(("check", "result", "detail"), rows)


def _section(title: str, chart: XYChart | None, table: str, note: str = "") -> list[str]:
    parts = [f"#### {title}", ""]
    if chart is not None:
        parts += [chart.mermaid(), ""]
    if note:
        parts += [note, ""]
    parts += [table, ""]
    return parts


def _verdict(command: str, checks: Sequence[Check], endpoint_id: str | None) -> list[str]:
    ok = all_passed(checks)
    verdict = "all gates passed" if ok else "a gate failed"
    if command == "health":
        verdict = "healthy" if ok else "alerting"
    lines = [f"### ops {command}: {verdict}", "", _checks_table(checks), ""]
    if endpoint_id:
        lines[2:2] = [f"Endpoint `{endpoint_id}`.", ""]
    return lines


def _limit_lines(limits: Sequence[float | None], count: int) -> list[list[float]]:
    """Each gate or alert that is on, drawn at every category."""
    return [[float(limit)] * count for limit in limits if limit]


def _percentile_groups(
    groups: Sequence[tuple[str, Percentiles]],
) -> tuple[list[str], list[float], list[tuple[str, str, str, str]]]:
    categories: list[str] = []
    values: list[float] = []
    rows = []
    for name, block in groups:
        trio = {"p50": block.p50, "p95": block.p95, "p99": block.p99}
        rows.append((name, seconds(block.p50), seconds(block.p95), seconds(block.p99)))
        for key, value in trio.items():
            if value is not None:
                categories.append(f"{name} {key}")
                values.append(float(value))
    return categories, values, rows


def _each_chart(title: str, latencies: Sequence[float], limits: Sequence[float | None]) -> XYChart:
    """Each request's (or probe's) latency in order, against its limits."""
    return XYChart(
        title,
        [str(i) for i in range(1, len(latencies) + 1)],
        [float(v) for v in latencies],
        "seconds",
        _limit_lines(limits, len(latencies)),
    )


# --------------------------------------------------------------------------- canary


def canary_markdown(
    summary: CanarySummary,
    checks: Sequence[Check],
    *,
    gates: Gates,
    endpoint_id: str | None = None,
    gpu_pool: str = "ADA_24",
    health_min_success: float = Thresholds().min_success,
) -> str:
    """The step summary of one ``ops canary`` run: verdict, checks and five charts.

    ``health_min_success`` is where ``ops health`` alerts (the success chart shows it next
    to the canary's own gate)."""
    parts = _verdict("canary", checks, endpoint_id)
    parts += _canary_percentiles(summary, gates)
    parts += _canary_kinds(summary)
    parts += _canary_each_request(summary, gates)
    parts += _canary_success(summary, gates.min_success, health_min_success)
    parts += _cost_section(summary, idle_timeout_s=gates.idle_timeout_s, gpu_pool=gpu_pool)
    return "\n".join(parts).rstrip() + "\n"


def _latency_gates(summary: CanarySummary, gates: Gates) -> tuple[list[float | None], str]:
    """The latency gates a chart draws, and the title's words for them: the warm p95 gate,
    and the cold p95 gate when cold requests completed (it judges nothing otherwise)."""
    warm = gates.max_warm_p95_s or None
    cold = gates.max_cold_p95_s if summary.cold.latency_s.p95 is not None else None
    words = []
    if warm:
        words.append(f"warm p95 gate, under {warm:g} s")
    if cold:
        words.append(f"cold p95 gate, at most {cold:g} s")
    if not words:
        return [], ""
    return [warm, cold], f" ({'lines' if len(words) > 1 else 'line'}: {'; '.join(words)})"


def _canary_percentiles(summary: CanarySummary, gates: Gates) -> list[str]:
    groups = [
        ("all", summary.latency_s),
        ("warm", summary.warm.latency_s),
        ("cold", summary.cold.latency_s),
    ]
    categories, values, rows = _percentile_groups(groups)
    limits, words = _latency_gates(summary, gates)
    chart = None
    if categories:
        title = f"End-to-end latency percentiles, s{words}"
        chart = XYChart(title, categories, values, "seconds", _limit_lines(limits, len(categories)))
    gate = {
        "warm": f"under {gates.max_warm_p95_s:g} s" if gates.max_warm_p95_s else "off",
        "cold": f"at most {gates.max_cold_p95_s:g} s" if gates.max_cold_p95_s else "off",
    }
    return _section(
        "Latency percentiles",
        chart,
        _table(
            ("requests", "p50", "p95", "p99", "p95 gate"),
            [(*row, gate.get(row[0], "-")) for row in rows],
        ),
        "" if chart else "No request completed: nothing to chart.",
    )


def _canary_kinds(summary: CanarySummary) -> list[str]:
    counts = {
        "warm": summary.warm.count,
        "cold": summary.cold.count,
        "untimed": summary.untimed,
        "failed": summary.failed,
    }
    before = summary.warm_workers_before
    return _section(
        "Cold vs warm",
        XYChart(
            f"Requests by kind ({summary.requests} sent)",
            list(counts),
            [float(v) for v in counts.values()],
            "requests",
        ),
        _table(
            ("warm", "cold", "untimed", "failed", "cold start (estimated)", "warm workers before"),
            [
                (
                    *(str(v) for v in counts.values()),
                    seconds(summary.cold.cold_start_s),
                    "-" if before is None else str(before),
                )
            ],
        ),
        "A request is cold when its worker started for it, not when it queued; untimed "
        "requests carried no `delayTime` or `workerId`.",
    )


def _canary_each_request(summary: CanarySummary, gates: Gates) -> list[str]:
    points = summary.latencies
    if not points or len(points) > MAX_POINTS:
        return []
    letters = {"cold": "C", "warm": "w"}
    kinds_row = " ".join("F" if not p.ok else letters.get(p.kind, "?") for p in points)
    limits, words = _latency_gates(summary, gates)
    return _section(
        "Each request",
        _each_chart(
            f"Each request's latency in send order, s{words}",
            [p.latency_s for p in points],
            limits,
        ),
        f"Kinds in send order (C cold, w warm, ? untimed, F failed): `{kinds_row}`",
    )


def _canary_success(summary: CanarySummary, gate: float, health_alert: float) -> list[str]:
    rate = summary.success_rate
    if rate is None:
        return []
    chart = XYChart(
        "Success rate, %",
        ["measured", "canary gate", "health alert below"],
        [rate * 100, gate * 100, health_alert * 100],
        "percent",
        y_top=100,
    )
    return _section(
        "Success rate",
        chart,
        _table(
            ("measured", "canary gate (at least)", "health alert below", "completed", "failed"),
            [
                (
                    percent(rate),
                    percent(gate),
                    percent(health_alert),
                    str(summary.completed),
                    str(summary.failed),
                )
            ],
        ),
    )


def _cost_section(summary: CanarySummary, *, idle_timeout_s: float, gpu_pool: str) -> list[str]:
    try:
        measured = cost_mod.Measured.from_summary(summary)
    except cost_mod.CostInputError as exc:
        return ["#### Cost per image", "", f"Not priced: {exc}.", ""]
    inputs = cost_mod.CostInputs.at_pool(measured, gpu_pool, idle_timeout_s=idle_timeout_s)
    per = cost_mod.estimate(inputs).per_generation
    low, high = cost_mod.SCENARIO_PER_IMAGE
    thousand = {
        "RunPod warm": per.warm * 1000,
        "RunPod blended": per.blended * 1000,
        "Scenario low": low * 1000,
        "Scenario high": high * 1000,
    }
    chart = XYChart(
        f"Cost per 1,000 images, US$ (RunPod: {gpu_pool} flex price)",
        list(thousand),
        list(thousand.values()),
        "US$",
    )
    return _section(
        "Cost per image against Scenario",
        chart,
        _table(
            ("", "per image", "per 1,000 images"),
            [(name, f"${v / 1000:.5f}", f"${v:.2f}") for name, v in thousand.items()],
        ),
        f"`ops cost`'s model: {gpu_pool} at ${inputs.flex_per_s}/s, execution p50 "
        f"{measured.execution_s:.2f} s, {measured.cold_fraction * 100:.1f} % cold with a "
        f"{measured.cold_start_s:.2f} s start plus the {idle_timeout_s:g} s idle timeout. "
        f"Scenario charges ${low:.2f}-{high:.2f} per image.",
    )


# --------------------------------------------------------------------------- health


def health_markdown(
    summary: HealthSummary | None,
    checks: Sequence[Check],
    *,
    thresholds: Thresholds,
    endpoint_id: str | None = None,
) -> str:
    """The step summary of one ``ops health`` run (without a summary when /health was
    unreachable): verdict, checks, and the charts of what it measured against
    ``thresholds``, the limits the run judged with."""
    parts = _verdict("health", checks, endpoint_id)
    if summary is not None:
        parts += _health_latency(summary.probes, thresholds.max_p95_s)
        parts += _health_rates(summary, thresholds)
        parts += _health_workers(summary)
    return "\n".join(parts).rstrip() + "\n"


def _health_latency(probes: ProbeBlock, max_p95_s: float | None) -> list[str]:
    if not probes.requested:
        return []
    categories, values, rows = _percentile_groups([("probes", probes.latency_s)])
    alert = f" (line: alert above {max_p95_s:g} s)" if max_p95_s else ""
    chart = None
    if categories:
        line = _limit_lines([max_p95_s], len(categories))
        chart = XYChart(f"Probe latency percentiles, s{alert}", categories, values, "seconds", line)
    failures = f" Failures: {'; '.join(probes.failures)}" if probes.failures else ""
    parts = _section(
        "Latency (probes)",
        chart,
        _table(("", "p50", "p95", "p99"), rows),
        f"{probes.completed} of {probes.requested} probe(s) completed.{failures}",
    )
    latencies = probes.latencies
    if latencies and len(latencies) <= MAX_POINTS:
        each = _each_chart(f"Each completed probe's latency, s{alert}", latencies, [max_p95_s])
        parts += [each.mermaid(), ""]
    return parts


def _health_rates(summary: HealthSummary, thresholds: Thresholds) -> list[str]:
    success, error = summary.success_rate, summary.error_rate
    if success is None or error is None:
        return []
    chart = XYChart(
        f"Success and error rate, % ({summary.finished} finished jobs in RunPod's window)",
        ["success", "success alert below", "errors", "error alert above"],
        [success * 100, thresholds.min_success * 100, error * 100, thresholds.max_error_rate * 100],
        "percent",
        y_top=100,
    )
    jobs = summary.jobs
    return _section(
        "Success and error rate",
        chart,
        _table(
            (
                "success",
                "alert below",
                "error rate",
                "alert above",
                "completed",
                "failed",
                "retried",
            ),
            [
                (
                    percent(success),
                    percent(thresholds.min_success),
                    percent(error),
                    percent(thresholds.max_error_rate),
                    str(jobs.completed),
                    str(jobs.failed),
                    str(jobs.retried),
                )
            ],
        ),
    )


def _health_workers(summary: HealthSummary) -> list[str]:
    ups, minimum = summary.up_samples, summary.workers_min
    if not ups:
        return []
    return _section(
        "Workers",
        XYChart(
            f"Workers up (idle or running) per reading (line: workersMin {minimum})",
            [f"reading {i}" for i in range(1, len(ups) + 1)],
            [float(v) for v in ups],
            "workers",
            [[float(minimum)] * len(ups)],
        ),
        _table(
            ("reading", "workers up", "jobs waiting"),
            [
                (str(i), str(up), str(queue))
                for i, (up, queue) in enumerate(
                    zip(ups, summary.queue_samples, strict=False), start=1
                )
            ],
        ),
    )


def without_charts(
    command: str, checks: Sequence[Check], error: ChartError, *, endpoint_id: str | None = None
) -> str:
    """The summary when a chart cannot be drawn: the verdict and the checks, and why the
    charts are missing (the run's figures are in its ``--json`` document and its log)."""
    parts = _verdict(command, checks, endpoint_id)
    parts += [f"Charts left out: {error}.", ""]
    return "\n".join(parts).rstrip() + "\n"
