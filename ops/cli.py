"""The ``python -m ops`` command line: the rollout gates, the CI plumbing around them, jobs
and LoRAs.

Every command prints a table for people, or exactly one JSON document on stdout with
``--json``; progress and messages go to stderr. Exit codes: 0 every gate passed, 1 a gate
failed, 2 the command could not run (missing endpoint id or key, bad input).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ops import backend, deploy_plan, health_alert, stack_secrets, step_summary
from ops import canary as canary_mod
from ops import cost as cost_mod
from ops import health as health_mod
from ops import lora as lora_mod
from ops import models_seed as models_seed_mod
from ops import progress as progress_mod
from ops import promote as promote_mod
from ops import smoke as smoke_mod
from ops.jobs import Backoff, JobApiError, JobClient, JobOutcome
from ops.mainline import Mainline, MainlineError
from ops.promote import PromoteError, extract_digest, pin_digest
from ops.registry import Registry, RegistryError
from ops.report import (
    Check,
    all_passed,
    check_dicts,
    checks_table,
    emit_json,
    metrics_table,
    percent,
    seconds,
    stderr_console,
    stdout_console,
)
from ops.rollout_state import read_state, rollout_check
from ops.target import StackOutputs, Target, TargetError, resolve_target

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Rollout gates for the ComfyUI serverless endpoint (smoke, canary, health, cost) and "
    "the CI steps around them (models seed, promote, pin-digest, health-alert, stack-secrets).",
)

EndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoint-id",
        help="Serverless endpoint id. Else from --outputs, else RUNPOD_COMFYUI_ENDPOINT_ID.",
        show_default=False,
    ),
]
OutputsOpt = Annotated[
    str | None,
    typer.Option(
        "--outputs",
        help="`pulumi stack output --json` as a file, or - to read it from stdin.",
        show_default=False,
    ),
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        help="Job API base URL. Else RUNPOD_ENDPOINT_BASE_URL, else https://api.runpod.ai/v2.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
ProgressOpt = Annotated[
    bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr (TTY only).")
]
SummaryMdOpt = Annotated[
    Path | None,
    typer.Option(
        "--summary-md",
        help="Append a Markdown summary with charts to this file (e.g. $GITHUB_STEP_SUMMARY).",
        show_default=False,
    ),
]
PollOpt = Annotated[float, typer.Option(min=0, help="Seconds between /status polls.")]
InputOpt = Annotated[
    Path | None,
    typer.Option("--input", help="JSON file with the job `input` (default: a small txt2img)."),
]


def _die(command: str, message: str, *, as_json: bool) -> NoReturn:
    if as_json:
        emit_json({"command": command, "ok": False, "error": message})
    else:
        stderr_console().print(f"[bold red]ops {command}:[/] {message}")
    raise typer.Exit(2)


def _target(
    command: str,
    endpoint_id: str | None,
    outputs_source: str | None,
    base_url: str | None,
    *,
    as_json: bool,
) -> tuple[Target, StackOutputs]:
    """The endpoint from ``--endpoint-id``, ``--outputs`` and ``--base-url`` (and the
    environment), and the stack outputs; a usage error (exit 2) when it cannot be known."""
    try:
        outputs = StackOutputs.load(outputs_source)
        target = resolve_target(
            endpoint_id=endpoint_id, api_key=None, base_url=base_url, outputs=outputs
        )
    except TargetError as exc:
        _die(command, str(exc), as_json=as_json)
    return target, outputs


def _client(target: Target, *, backoff: Backoff | None = None, pool: int = 16) -> JobClient:
    return JobClient(
        base_url=target.base_url,
        endpoint_id=target.endpoint_id,
        api_key=target.api_key,
        backoff=backoff or Backoff(),
        pool_size=max(4, pool),
    )


def _read_input(command: str, path: Path, *, as_json: bool) -> Any:
    """The job ``input`` in a JSON file; a usage error (exit 2) naming the file otherwise."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _die(command, f"--input {path}: {exc}", as_json=as_json)


def _job_inputs(command: str, path: Path | None, *, as_json: bool) -> Callable[[int], Any]:
    """The input of the ``index``-th job: the ``--input`` file's, else the canary's small
    txt2img (a distinct seed per job)."""
    if path is None:
        return canary_mod.default_input
    custom = _read_input(command, path, as_json=as_json)
    return lambda _index: custom


def _progress(enabled: bool) -> Progress:
    console = stderr_console()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal),
    )


def _finish(
    command: str,
    document: dict[str, Any],
    checks: list[Check],
    *,
    as_json: bool,
    markdown: Callable[[], str] | None = None,
    summary_md: Path | None = None,
) -> None:
    ok = all_passed(checks)
    full = {"command": command, "ok": ok, **document, "checks": check_dicts(checks)}
    if summary_md is not None and markdown is not None:
        # Written before the verdict's exit code, so a failed gate still gets its charts.
        _append_summary(command, checks, markdown, summary_md, document.get("endpointId"))
    if as_json:
        emit_json(full)
    else:
        console = stdout_console()
        console.print(checks_table(f"ops {command}", checks))
        verdict = "[green]all gates passed[/]" if ok else "[bold red]a gate failed[/]"
        console.print(f"ops {command}: {verdict}")
    if not ok:
        raise typer.Exit(1)


def _append_summary(
    command: str,
    checks: list[Check],
    markdown: Callable[[], str],
    path: Path,
    endpoint_id: str | None,
) -> None:
    """Append the step summary to ``path``. Neither a chart that cannot be drawn (the
    summary then says so, under the verdict and the checks) nor an unwritable file costs
    the run its verdict: both are warnings on stderr."""
    warn = stderr_console().print
    try:
        text = markdown()
    except step_summary.ChartError as exc:
        warn(f"[yellow]ops {command}: --summary-md {path}: charts left out: {exc}[/]")
        text = step_summary.without_charts(command, checks, exc, endpoint_id=endpoint_id)
    try:
        with path.open("a", encoding="utf-8") as out:
            out.write(text + "\n")
    except OSError as exc:
        warn(f"[yellow]ops {command}: --summary-md {path}: {exc}[/]")


VideoOpt = Annotated[bool, typer.Option("--video", help="Also run WAN 2.2 T2V.")]
SkipR2Opt = Annotated[
    bool, typer.Option("--skip-r2", help="Do not read returned keys back from R2.")
]
RollbackStackOpt = Annotated[
    str | None,
    typer.Option(help="Stack named in the rollback command (else the outputs' `stack`)."),
]
ExpectProviderOpt = Annotated[
    str | None,
    typer.Option(
        help="Fail unless the rollout flag names this provider (a rollback drill).",
        show_default=False,
    ),
]
SmokeTimeoutOpt = Annotated[
    float, typer.Option(min=0, help="Seconds to wait for each job (cold starts included).")
]


@app.command()
def smoke(
    *,
    endpoint_id: EndpointOpt = None,
    outputs: OutputsOpt = None,
    base_url: BaseUrlOpt = None,
    video: VideoOpt = False,
    skip_r2: SkipR2Opt = False,
    stack: RollbackStackOpt = None,
    expect_provider: ExpectProviderOpt = None,
    timeout: SmokeTimeoutOpt = 600.0,
    poll_interval: PollOpt = 2.0,
    as_json: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """The rollout plan's testing checklist against a live endpoint.

    txt2img, img2img, background removal (--video adds WAN 2.2 T2V), R2 read-back of every
    returned key, a malformed request that must fail cleanly, and the rollback state.

    R2 read-back uses R2_ENDPOINT, R2_BUCKET, R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY (the
    app's read credentials). The rollback state comes from the KV flag at ROLLOUT_FLAG_URL
    (bearer CLOUDFLARE_API_TOKEN) or the stack outputs; its absence is not a failure.
    """
    target, stack_outputs = _target("smoke", endpoint_id, outputs, base_url, as_json=as_json)
    with _progress(progress) as bar:
        task = bar.add_task("smoke", total=len(smoke_mod.smoke_cases(video=video)) + 1)
        generations, error_check = smoke_mod.run_generations(
            _client(target),
            video=video,
            timeout_s=timeout,
            poll_s=poll_interval,
            on_done=lambda _label: bar.advance(task),
        )
    checks = [
        *generations,
        error_check,
        _r2_read_back(generations, stack_outputs, skip=skip_r2),
        _rollback_state(stack_outputs, target, stack=stack, expected_provider=expect_provider),
    ]
    _finish("smoke", {"endpointId": target.endpoint_id}, checks, as_json=as_json)


def _r2_read_back(generations: list[Check], stack_outputs: StackOutputs, *, skip: bool) -> Check:
    """Every key the generations returned, read back with the app's credentials."""
    if skip:
        return Check("R2 read-back", "skip", "--skip-r2 given")
    reader, why_not = smoke_mod.r2_reader_from_env(stack_outputs.r2_env(os.environ))
    return smoke_mod.r2_check(generations, reader, why_not)


def _rollback_state(
    stack_outputs: StackOutputs,
    target: Target,
    *,
    stack: str | None,
    expected_provider: str | None,
) -> Check:
    """Where the flag sends traffic, and the command that would undo it."""
    state, problem = read_state(stack_outputs)
    return rollout_check(
        state,
        problem,
        tested_endpoint=target.endpoint_id,
        stack=stack or str(stack_outputs.get("stack") or "prod"),
        expected_provider=expected_provider,
    )


RequestsOpt = Annotated[int, typer.Option(min=1, help="How many jobs to send.")]
ConcurrencyOpt = Annotated[int, typer.Option(min=1, help="Jobs in flight at once.")]
CanaryMinSuccessOpt = Annotated[
    float, typer.Option(min=0, max=1, help="Gate: completed fraction (0.98 is 98 %).")
]
MaxWarmP95Opt = Annotated[
    float, typer.Option(min=0, help="Gate: warm p95 latency must be under this, s (0 disables).")
]
MinWarmOpt = Annotated[
    int, typer.Option(min=1, help="Gate: warm requests needed to judge warm p95.")
]
MaxColdP95Opt = Annotated[
    float, typer.Option(min=0, help="Gate: cold p95 latency, seconds (0 disables).")
]
CanaryIdleTimeoutOpt = Annotated[
    float,
    typer.Option(min=0, help="The endpoint's idle timeout, s: a worker idle longer starts cold."),
]
ColdThresholdOpt = Annotated[
    float,
    typer.Option(
        min=0,
        help="With workers warm before the run: delayTime (s) from which a worker's first "
        "request counts as cold.",
    ),
]
CanaryTimeoutOpt = Annotated[float, typer.Option(min=0, help="Seconds to wait for each job.")]
CanaryRetriesOpt = Annotated[int, typer.Option(min=0, help="Retries per request after a 429.")]
BackoffBaseOpt = Annotated[
    float, typer.Option(min=0, help="First 429 backoff (s) without Retry-After; doubles.")
]
MaxBackoffOpt = Annotated[float, typer.Option(min=0, help="Cap for one 429 wait, seconds.")]
ChartPoolOpt = Annotated[
    str, typer.Option(help="GPU pool whose price the --summary-md cost chart uses.")
]


@app.command()
def canary(
    *,
    endpoint_id: EndpointOpt = None,
    outputs: OutputsOpt = None,
    base_url: BaseUrlOpt = None,
    requests: RequestsOpt = 50,
    concurrency: ConcurrencyOpt = 5,
    input_file: InputOpt = None,
    min_success: CanaryMinSuccessOpt = 0.98,
    max_warm_p95: MaxWarmP95Opt = 10.0,
    min_warm: MinWarmOpt = 20,
    max_cold_p95: MaxColdP95Opt = 90.0,
    idle_timeout: CanaryIdleTimeoutOpt = 5.0,
    cold_threshold: ColdThresholdOpt = 10.0,
    timeout: CanaryTimeoutOpt = 300.0,
    poll_interval: PollOpt = 1.0,
    max_retries: CanaryRetriesOpt = 8,
    backoff_base: BackoffBaseOpt = 0.5,
    max_backoff: MaxBackoffOpt = 30.0,
    gpu_pool: ChartPoolOpt = "ADA_24",
    summary_md: SummaryMdOpt = None,
    as_json: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """The canary gate: N requests at concurrency C through /run + /status.

    Gates (the rollout plan's): success >= 98 %, warm p95 under 10 s over at least
    --min-warm warm requests (fewer fails), cold p95 <= 90 s. A request is cold when its
    worker started for it (not when it queued); without delayTime or workerId it is
    neither. Backs off on 429. Keep --concurrency at most the endpoint's workersMax, or
    warm latency includes queueing behind the canary's own requests.
    """
    target, _ = _target("canary", endpoint_id, outputs, base_url, as_json=as_json)
    _require_price(gpu_pool, as_json=as_json)
    gates = canary_mod.Gates(
        min_success=min_success,
        max_warm_p95_s=max_warm_p95 or None,
        min_warm=min_warm,
        max_cold_p95_s=max_cold_p95 or None,
        idle_timeout_s=idle_timeout,
        cold_threshold_s=cold_threshold,
    )
    backoff = Backoff(max_retries=max_retries, base_s=backoff_base, max_s=max_backoff)
    summary = _measure_canary(
        _client(target, backoff=backoff, pool=concurrency),
        gates,
        requests=requests,
        concurrency=concurrency,
        make_input=_job_inputs("canary", input_file, as_json=as_json),
        timeout_s=timeout,
        poll_s=poll_interval,
        progress=progress,
    )
    _finish_canary(target, summary, gates, gpu_pool=gpu_pool, as_json=as_json, to=summary_md)


def _require_price(gpu_pool: str, *, as_json: bool) -> None:
    """The summary's cost chart prices ``--gpu-pool``: a pool without a price is a usage
    error, before any request is sent."""
    if gpu_pool not in cost_mod.PRICES:
        _die(
            "canary", f"--gpu-pool {gpu_pool}: known {', '.join(cost_mod.PRICES)}", as_json=as_json
        )


def _measure_canary(
    client: JobClient,
    gates: canary_mod.Gates,
    *,
    requests: int,
    concurrency: int,
    make_input: Callable[[int], Any],
    timeout_s: float,
    poll_s: float,
    progress: bool,
) -> canary_mod.CanarySummary:
    """Read /health, send the requests (a progress bar, failures as they come), summarize."""
    warm_before = _warm_workers_before(client)
    started = time.monotonic()
    with _progress(progress) as bar:
        task = bar.add_task("canary", total=requests)

        def done(outcome: JobOutcome) -> None:
            bar.advance(task)
            if not outcome.ok:
                bar.console.print(f"[red]{outcome.job_id or '-'}[/] {outcome.reason()}")

        samples = canary_mod.run_canary(
            client,
            requests=requests,
            concurrency=concurrency,
            timeout_s=timeout_s,
            poll_s=poll_s,
            make_input=make_input,
            on_done=done,
        )
    return canary_mod.summarize(
        samples, gates=gates, wall_s=time.monotonic() - started, warm_workers_before=warm_before
    )


def _finish_canary(
    target: Target,
    summary: canary_mod.CanarySummary,
    gates: canary_mod.Gates,
    *,
    gpu_pool: str,
    as_json: bool,
    to: Path | None,
) -> None:
    """Judge the gates; print the figures and the verdict (and append them to ``to``)."""
    checks = canary_mod.evaluate(summary, gates)
    if not as_json:
        stdout_console().print(metrics_table("canary figures", _canary_rows(summary)))
    _finish(
        "canary",
        {"endpointId": target.endpoint_id, "gates": gates.as_json(), "summary": summary.as_json()},
        checks,
        as_json=as_json,
        markdown=lambda: step_summary.canary_markdown(
            summary, checks, gates=gates, endpoint_id=target.endpoint_id, gpu_pool=gpu_pool
        ),
        summary_md=to,
    )


def _warm_workers_before(client: JobClient) -> int | None:
    """Workers already up before the canary (None when /health cannot say)."""
    try:
        return canary_mod.warm_workers(client.health())
    except JobApiError:
        return None


def _canary_rows(summary: canary_mod.CanarySummary) -> list[tuple[str, str]]:
    def trio(block: canary_mod.Percentiles) -> str:
        return " / ".join(seconds(v) for v in (block.p50, block.p95, block.p99))

    warm, cold = summary.warm, summary.cold
    return [
        ("requests (completed / failed)", f"{summary.completed} / {summary.failed}"),
        ("success rate", percent(summary.success_rate)),
        ("latency p50 / p95 / p99", trio(summary.latency_s)),
        (f"warm ({warm.count}) p50 / p95 / p99", trio(warm.latency_s)),
        (f"cold ({cold.count}) p50 / p95 / p99", trio(cold.latency_s)),
        ("untimed (no delayTime or workerId)", str(summary.untimed)),
        ("cold start (estimated)", seconds(cold.cold_start_s)),
        ("delayTime p50 / p95 / p99", trio(summary.delay_s)),
        ("executionTime p50 / p95 / p99", trio(summary.execution_s)),
        ("429 answers absorbed", str(summary.throttled_429)),
        ("wall time", seconds(summary.wall_s)),
    ]


SamplesOpt = Annotated[int, typer.Option(min=1, help="Readings of /health.")]
IntervalOpt = Annotated[float, typer.Option(min=0, help="Seconds between readings.")]
HealthMinSuccessOpt = Annotated[
    float, typer.Option(min=0, max=1, help="Alert below this success rate (0.95 is 95 %).")
]
MaxErrorRateOpt = Annotated[
    float, typer.Option(min=0, max=1, help="Alert above this error rate (0.05 is 5 %).")
]
MinJobsOpt = Annotated[
    int, typer.Option(min=1, help="Finished jobs needed before the rate alerts judge.")
]
ProbesOpt = Annotated[
    int, typer.Option(min=0, help="Probe requests sent one by one to measure latency.")
]
MaxP95Opt = Annotated[
    float,
    typer.Option(min=0, help="Alert when the probes' p95 latency exceeds this, s (0: off)."),
]
MinLatencyJobsOpt = Annotated[
    int, typer.Option(min=1, help="Completed probes needed before the p95 alert judges.")
]
ProbeTimeoutOpt = Annotated[float, typer.Option(min=0, help="Seconds to wait for each probe.")]
WorkersMinOpt = Annotated[
    int | None,
    typer.Option(
        min=0, help="Alert when fewer workers are up in every reading.", show_default=False
    ),
]
WorkersMinFileOpt = Annotated[
    Path | None,
    typer.Option(
        help="Read workersMin (serverless.workersMin) from this stack file.",
        show_default=False,
    ),
]
MaxQueueOpt = Annotated[
    int | None, typer.Option(min=0, help="Alert when more jobs wait.", show_default=False)
]
HealthRetriesOpt = Annotated[
    int, typer.Option(min=0, help="Retries of /health on 429, 5xx or connection errors.")
]


@app.command()
def health(
    *,
    endpoint_id: EndpointOpt = None,
    outputs: OutputsOpt = None,
    base_url: BaseUrlOpt = None,
    samples: SamplesOpt = 3,
    interval: IntervalOpt = 10.0,
    min_success: HealthMinSuccessOpt = 0.95,
    max_error_rate: MaxErrorRateOpt = 0.05,
    min_jobs: MinJobsOpt = 20,
    probes: ProbesOpt = 0,
    max_p95: MaxP95Opt = 15.0,
    min_latency_jobs: MinLatencyJobsOpt = 5,
    probe_timeout: ProbeTimeoutOpt = 300.0,
    poll_interval: PollOpt = 1.0,
    workers_min: WorkersMinOpt = None,
    stack_file: WorkersMinFileOpt = None,
    max_queue: MaxQueueOpt = None,
    max_retries: HealthRetriesOpt = 3,
    summary_md: SummaryMdOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Health alerts: success and error rates, p95 latency, workers, queue.

    Alerts (exit 1) when success < 95 % or error rate > 5 % (each once --min-jobs jobs
    finished in RunPod's window), when the p95 latency of --probes requests exceeds 15 s
    (once --min-latency-jobs completed), when fewer workers than workersMin are up in every
    reading, or when the queue does not drain.
    """
    target, _ = _target("health", endpoint_id, outputs, base_url, as_json=as_json)
    thresholds = health_mod.Thresholds(
        min_success=min_success,
        max_error_rate=max_error_rate,
        max_p95_s=max_p95 or None,
        min_jobs=min_jobs,
        min_latency_jobs=min_latency_jobs,
        workers_min=_workers_min(workers_min, stack_file, as_json=as_json),
        max_queue=max_queue,
    )
    client = _client(target, backoff=Backoff(max_retries=max_retries, base_s=0.5, max_s=5.0))
    try:
        readings = health_mod.collect(
            client.health, samples=samples, interval_s=interval, sleep=time.sleep
        )
    except JobApiError as exc:
        unreachable = Check("reachability", "fail", f"/health unreachable: {exc}")
        _finish_health(target, None, [unreachable], thresholds, as_json=as_json, to=summary_md)
        return
    sent = health_mod.probe(client, count=probes, timeout_s=probe_timeout, poll_s=poll_interval)
    summary = health_mod.summarize(readings, sent, workers_min=thresholds.workers_min)
    checks = health_mod.evaluate(summary, thresholds)
    _finish_health(target, summary, checks, thresholds, as_json=as_json, to=summary_md)


def _workers_min(given: int | None, stack_file: Path | None, *, as_json: bool) -> int:
    """``--workers-min``, else the stack file's ``serverless.workersMin``, else 0."""
    if given is not None:
        return given
    try:
        return health_mod.workers_min_from_stack_file(stack_file) if stack_file else 0
    except (OSError, ValueError) as exc:
        _die("health", str(exc), as_json=as_json)


def _finish_health(
    target: Target,
    summary: health_mod.HealthSummary | None,
    checks: list[Check],
    thresholds: health_mod.Thresholds,
    *,
    as_json: bool,
    to: Path | None,
) -> None:
    """Print (and append to ``to``) one health run, with its summary when /health answered."""
    document: dict[str, Any] = {"endpointId": target.endpoint_id}
    if summary is not None:
        document["summary"] = summary.as_json()
    _finish(
        "health",
        document,
        checks,
        as_json=as_json,
        markdown=lambda: step_summary.health_markdown(
            summary, checks, thresholds=thresholds, endpoint_id=target.endpoint_id
        ),
        summary_md=to,
    )


@app.command("health-alert")
def health_alert_command(
    *,
    report: Annotated[
        Path, typer.Option(help="The `ops health --json` document (a missing one is an alert).")
    ] = Path("health.json"),
    repository: Annotated[
        str | None,
        typer.Option(
            help="owner/name of the repository (else GITHUB_REPOSITORY).", show_default=False
        ),
    ] = None,
    label: Annotated[str, typer.Option(help="Label of the alert issue.")] = health_alert.LABEL,
    run_url: Annotated[
        str | None,
        typer.Option(
            help="Link to this run (else built from GITHUB_* variables).", show_default=False
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Keep one `health-alert` issue in step with `ops health` (open, comment on change, close).

    Opens it on an alert, comments only when the failing checks change, closes it when
    healthy again.

    GitHub token from GITHUB_TOKEN (or GH_TOKEN); API from GITHUB_API_URL (default
    https://api.github.com); posts to HEALTH_WEBHOOK_URL, when set, on the same changes.
    """
    env = os.environ
    token = env.get("GITHUB_TOKEN", "").strip() or env.get("GH_TOKEN", "").strip()
    repo = repository or env.get("GITHUB_REPOSITORY", "").strip()
    if not token or not repo:
        _die(
            "health-alert",
            "set GITHUB_TOKEN and GITHUB_REPOSITORY (or --repository)",
            as_json=as_json,
        )
    api = env.get("GITHUB_API_URL", "").strip() or "https://api.github.com"
    link = run_url or _this_run_url(repo)
    state = health_alert.state_from_report(health_alert.read_report(report))
    try:
        outcome = health_alert.notify(
            state,
            health_alert.GitHubIssues(api_url=api.rstrip("/"), repository=repo, token=token),
            run_url=link,
            label=label,
            webhook=env.get("HEALTH_WEBHOOK_URL", "").strip() or None,
        )
    except health_alert.AlertError as exc:
        _die("health-alert", str(exc), as_json=as_json)
    if as_json:
        emit_json({"command": "health-alert", "ok": True, **outcome.__dict__})
    else:
        where = f" #{outcome.issue}" if outcome.issue else ""
        stdout_console().print(
            f"health-alert: {outcome.action}{where} ({', '.join(outcome.failing) or 'healthy'})"
        )


def _this_run_url(repository: str) -> str:
    """The GitHub Actions run this command runs in (from ``GITHUB_SERVER_URL`` and
    ``GITHUB_RUN_ID``)."""
    server = os.environ.get("GITHUB_SERVER_URL", "https://github.com")
    return f"{server}/{repository}/actions/runs/{os.environ.get('GITHUB_RUN_ID', '?')}"


CanaryJsonOpt = Annotated[
    str | None,
    typer.Option(help="`ops canary --json` output (file, or - for stdin) to take timings from."),
]
ExecutionOpt = Annotated[
    float | None, typer.Option(help="Execution time per generation, s.", show_default=False)
]
ColdStartOpt = Annotated[
    float | None, typer.Option(help="Worker start time, s.", show_default=False)
]
ColdFractionOpt = Annotated[
    float | None,
    typer.Option(help="Fraction of generations that hit a cold start.", show_default=False),
]
PricedPoolOpt = Annotated[str, typer.Option(help="GPU pool whose price applies.")]
GpuCountOpt = Annotated[int, typer.Option(min=1, help="GPUs per worker.")]
PricePerSecondOpt = Annotated[
    float | None, typer.Option(help="Override the flex $/GPU-second.", show_default=False)
]
PricesOpt = Annotated[
    str | None,
    typer.Option(
        help="JSON file of prices in $/GPU-second: {pool: flex} or {pool: \\[flex, active]}."
    ),
]
CostIdleTimeoutOpt = Annotated[float, typer.Option(min=0, help="Endpoint idle timeout, s.")]
MinWorkersOpt = Annotated[int, typer.Option(min=0, help="Always-on workers.")]
ImagesPerMonthOpt = Annotated[int, typer.Option(min=1, help="Volume for the projection.")]
MaxPerImageOpt = Annotated[
    float | None, typer.Option(help="Gate: max blended $ per generation.", show_default=False)
]


@app.command()
def cost(
    *,
    canary_json: CanaryJsonOpt = None,
    execution_s: ExecutionOpt = None,
    cold_start_s: ColdStartOpt = None,
    cold_fraction: ColdFractionOpt = None,
    gpu_pool: PricedPoolOpt = "ADA_24",
    gpu_count: GpuCountOpt = 1,
    price_per_s: PricePerSecondOpt = None,
    prices: PricesOpt = None,
    idle_timeout: CostIdleTimeoutOpt = 5.0,
    min_workers: MinWorkersOpt = 0,
    images_per_month: ImagesPerMonthOpt = 10_000,
    max_per_image: MaxPerImageOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cost per generation next to Scenario's per-image price (ops/cost.py).

    From measured execution and cold-start time (a canary's JSON or flags) and the GPU
    pool's per-second price, with a monthly projection for a given volume.
    """
    try:
        table = cost_mod.load_prices(prices)
        measured = cost_mod.measured_from(
            _read_json(canary_json),
            execution_s=execution_s,
            cold_start_s=cold_start_s,
            cold_fraction=cold_fraction,
        )
        inputs = cost_mod.CostInputs.at_pool(
            measured,
            gpu_pool,
            prices=table,
            price_per_s=price_per_s,
            gpu_count=gpu_count,
            idle_timeout_s=idle_timeout,
            min_workers=min_workers,
            images_per_month=images_per_month,
        )
    except (cost_mod.CostInputError, OSError, ValueError) as exc:
        _die("cost", str(exc), as_json=as_json)
    report = cost_mod.estimate(inputs)
    checks = cost_mod.evaluate(report, max_per_image=max_per_image)
    if not as_json:
        stdout_console().print(metrics_table("cost per generation", _cost_rows(report)))
    _finish("cost", {"report": report.as_json()}, checks, as_json=as_json)


def _read_json(source: str | None) -> Any:
    """The JSON document in a file, or on stdin for ``-``; None without a source."""
    if source is None:
        return None
    text = sys.stdin.read() if source == "-" else Path(source).read_text("utf-8")
    return json.loads(text)


def _cost_rows(report: cost_mod.CostReport) -> list[tuple[str, str]]:
    m, per, month = report.measured, report.per_generation, report.monthly
    save = report.savings_vs_scenario
    return [
        ("GPU pool", f"{report.pool} x{report.gpu_count} @ ${report.flex_per_second}/s"),
        (
            f"measured ({m.source})",
            f"exec {m.execution_s:.2f} s, cold start {m.cold_start_s:.2f} s, "
            f"cold {m.cold_fraction * 100:.1f} %",
        ),
        ("warm generation", f"${per.warm:.5f}"),
        ("extra per cold start (+ idle)", f"${per.cold_start_extra:.5f}"),
        ("blended per generation", f"${per.blended:.5f}"),
        ("Scenario per image", "${:.2f} - ${:.2f}".format(*cost_mod.SCENARIO_PER_IMAGE)),
        (f"RunPod / month ({month.images} images)", f"${month.runpod_total:.2f}"),
        ("  of which always-on workers", f"${month.runpod_always_on:.2f}"),
        ("Scenario / month", f"${month.scenario_low:.2f} - ${month.scenario_high:.2f}"),
        ("savings vs Scenario", f"{percent(save.low)} - {percent(save.high)}"),
    ]


@app.command("stack-secrets")
def stack_secrets_command(
    *,
    stack: Annotated[str, typer.Option(help="The stack: Pulumi.<stack>.yaml.")],
    check_only: Annotated[
        bool, typer.Option("--check-only", help="Only validate offline; run no pulumi command.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Set the stack's secrets from the job's environment (CI), after checking them offline.

    Each variable of docs/DEPLOYMENT.md's table (CLOUDFLARE_API_TOKEN, APP_GITHUB_TOKEN,
    RUNPOD_API_KEY, ...) that is set becomes `pulumi config set --secret <key>`, the value
    on stdin. First the stack file plus exactly those values must pass the program's own
    validation; a missing secret names the variable to provide.
    """
    from components.config import project_root  # noqa: PLC0415 - keeps `ops --help` light

    root = project_root()
    found = stack_secrets.problems(root, stack, os.environ)
    if found:
        _die_checks("stack-secrets", stack, found, as_json=as_json)
    keys: list[str] = []
    if not check_only:
        if shutil.which("pulumi") is None:
            _die(
                "stack-secrets",
                "the Pulumi CLI is not on PATH (scripts/pulumi-cli install)",
                as_json=as_json,
            )
        try:
            keys = stack_secrets.apply(stack, os.environ)
        except stack_secrets.SetError as exc:
            _die_checks("stack-secrets", stack, [str(exc)], as_json=as_json)
    if as_json:
        emit_json({"command": "stack-secrets", "ok": True, "stack": stack, "set": keys})
    else:
        what = f"set {', '.join(keys) or 'nothing'}" if not check_only else "configuration is valid"
        stdout_console().print(f"stack-secrets {stack}: {what}")


def _die_checks(command: str, stack: str, problems: list[str], *, as_json: bool) -> NoReturn:
    if as_json:
        emit_json({"command": command, "ok": False, "stack": stack, "problems": problems})
    else:
        lines = "\n".join(f"  - {p}" for p in problems)
        stderr_console().print(
            f"[bold red]ops {command}:[/] stack {stack!r}:\n{lines}", markup=True, highlight=False
        )
    raise typer.Exit(1)


@app.command("deploy-plan")
def deploy_plan_command(
    *,
    before: Annotated[str, typer.Option(help="The commit before the push (github.event.before).")],
    after: Annotated[str, typer.Option(help="The pushed commit (GITHUB_SHA).")],
    repo: Annotated[Path, typer.Option(help="The git repository.")] = Path(),
) -> None:
    """What a push to main deploys: `staging=`, `prod=`, `rollout_only=` lines for $GITHUB_OUTPUT.

    rollout_only: the push changed only rollout.provider / rollout.comfyuiPercent in
    Pulumi.prod.yaml (a rollback or a percentage step), which updates prod's flag at once
    (targeted at the flag's resources) without waiting for staging.
    """
    try:
        result = deploy_plan.plan(repo, before, after)
    except deploy_plan.GitError as exc:
        _die("deploy-plan", str(exc), as_json=False)
    stderr_console().print(f"deploy-plan: {result.reason}", highlight=False)
    sys.stdout.write(result.github_output())


@app.command("backend")
def backend_command(
    *,
    require_team: Annotated[
        bool,
        typer.Option(
            "--require-team", help="Fail on the local file backend (CI needs a shared one)."
        ),
    ] = False,
) -> None:
    """Print the state backend this checkout uses, as the Pulumi CLI picks it.

    PULUMI_BACKEND_URL, else Pulumi.yaml's backend.url (the team's, declared once), else the
    local file backend (one person).
    """
    from components.config import project_root  # noqa: PLC0415

    found = backend.declared(project_root())
    if require_team and found.local:
        _die(
            "backend",
            "Pulumi.yaml declares no team backend (backend.url) and PULUMI_BACKEND_URL is "
            "unset: CI cannot keep state on a runner's disk; declare the shared backend once "
            "in Pulumi.yaml (docs/DEPLOYMENT.md#3-state-backend-and-secrets-provider)",
            as_json=False,
        )
    sys.stdout.write(f"{found.url}\n")
    sys.stderr.write(f"state backend: {found.url} ({found.source})\n")


@app.command("pin-digest")
def pin_digest_command(
    *,
    stack_file: Annotated[Path, typer.Option(help="Stack file to edit.")] = Path(
        "Pulumi.prod.yaml"
    ),
    digest: Annotated[
        str | None,
        typer.Option(help="sha256:<hex> or image@sha256:<hex>.", show_default=False),
    ] = None,
    outputs: OutputsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Pin the digest of a passing gate record as image.digest in a stack file.

    By default the newest passing record in GHCR (what staging's smoke and canary wrote);
    --digest or staging's --outputs (imageDigest) name one, which must have a passing
    record too. Registry credentials: GHCR_TOKEN. The file's comments are kept.
    """
    try:
        registry = Registry.from_env(promote_mod.image_repository(stack_file))
        if digest is None and outputs is None:
            record = promote_mod.latest_passing(registry)
        else:
            record = promote_mod.verify(registry, _digest_to_pin(digest, outputs))
        result = pin_digest(stack_file, record.digest)
    except (PromoteError, TargetError, RegistryError) as exc:
        _die("pin-digest", str(exc), as_json=as_json)
    if as_json:
        emit_json(
            {
                "command": "pin-digest",
                "ok": True,
                **result.__dict__,
                "runUrl": record.document.get("runUrl"),
            }
        )
    else:
        what = "pinned" if result.changed else "already pinned"
        stdout_console().print(
            f"{result.file}: {result.key} {what} to {result.digest} "
            f"(passed staging: {record.document.get('runUrl')})"
        )


def _digest_to_pin(digest: str | None, outputs: str | None) -> str:
    if digest is not None:
        return extract_digest(digest)
    found = StackOutputs.load(outputs).get("image_digest")
    if not found:
        raise PromoteError(
            "no digest: pass --digest or pipe staging's `pulumi stack output --json` "
            "into --outputs - (output imageDigest)"
        )
    return extract_digest(str(found))


JobInputOpt = Annotated[
    Path,
    typer.Option(
        "--input",
        help="JSON file with the job `input`, e.g. a template with params and loras.",
    ),
]
WebhookOpt = Annotated[
    str | None,
    typer.Option(help="URL RunPod POSTs the finished job to.", show_default=False),
]
JobTimeoutOpt = Annotated[float, typer.Option(min=0, help="Seconds to wait for the job.")]


@app.command()
def job(
    *,
    input_file: JobInputOpt,
    endpoint_id: EndpointOpt = None,
    outputs: OutputsOpt = None,
    base_url: BaseUrlOpt = None,
    webhook: WebhookOpt = None,
    timeout: JobTimeoutOpt = 600.0,
    poll_interval: PollOpt = 2.0,
    as_json: JsonOpt = False,
) -> None:
    """Run one job and follow it: the worker's progress on stderr, the outputs on stdout.

    Shows each progress update the worker sends while the job runs (stage, node, step,
    nodes done); prints every output with its key, URL and seed. Exit 1 if the job fails.
    """
    job_input = _read_input("job", input_file, as_json=as_json)
    target, _ = _target("job", endpoint_id, outputs, base_url, as_json=as_json)
    progress = _ProgressLines()
    outcome = _client(target).run_and_wait(
        job_input, timeout_s=timeout, poll_s=poll_interval, webhook=webhook, on_status=progress.show
    )
    if as_json:
        emit_json(
            {
                "command": "job",
                "ok": outcome.ok,
                "jobId": outcome.job_id,
                "status": outcome.status,
                "error": outcome.error,
                "errorType": outcome.error_type,
                "output": outcome.output,
                "progress": progress.updates(),
            }
        )
    else:
        _print_job(outcome)
    if not outcome.ok:
        raise typer.Exit(1)


class _ProgressLines:
    """A running job's progress updates: each new one printed on stderr, all kept."""

    def __init__(self) -> None:
        self.console = stderr_console()
        self.seen: list[dict[str, Any]] = []

    def show(self, view: dict[str, Any]) -> None:
        """Print ``view`` (a ``/status`` body) unless it says what the last update said."""
        line = progress_mod.describe(view)
        if not self.seen or line != progress_mod.describe(self.seen[-1]):
            self.console.print(
                f"[dim]{view.get('id', '')}[/] {escape(line)}", highlight=False, soft_wrap=True
            )
        if view.get("output") is not None:
            self.seen.append(view)

    def updates(self) -> list[Any]:
        """Every progress update the worker sent, in order."""
        return [view["output"] for view in self.seen]


def _print_job(outcome: JobOutcome) -> None:
    """The job's outputs as a table for people (and why it failed)."""
    results = outcome.output.get("outputs", []) if isinstance(outcome.output, dict) else []
    rows = [
        (
            f"{item.get('kind', '?')} {item.get('key', '')}",
            f"seed {item.get('seed')}"
            + (f", batch_index {item['batch_index']}" if "batch_index" in item else "")
            + f"  {item.get('url', '')}",
        )
        for item in results
        if isinstance(item, dict)
    ]
    stdout_console().print(metrics_table(f"job {outcome.job_id}: {outcome.status}", rows))
    if not outcome.ok:
        stdout_console().print(f"[bold red]ops job:[/] {outcome.reason()}")


lora_app = typer.Typer(
    no_args_is_help=True,
    help="The studio's LoRAs in the output bucket (keys under loras/).",
)
app.add_typer(lora_app, name="lora")


def _lora_target(command: str, outputs: str | None, *, as_json: bool) -> tuple[Any, str]:
    try:
        env = StackOutputs.load(outputs).r2_env(os.environ)
        settings = lora_mod.settings_from(env)
    except (TargetError, lora_mod.LoraCommandError) as exc:
        _die(command, str(exc), as_json=as_json)
    r2, _ = lora_mod.worker_modules()
    return r2.make_client(settings), settings.bucket


@lora_app.command("upload")
def lora_upload(
    file: Annotated[Path, typer.Argument(help="The LoRA, a .safetensors file.")],
    *,
    name: Annotated[
        str | None,
        typer.Option(help="File name in the key (default: the file's).", show_default=False),
    ] = None,
    strength: Annotated[
        float, typer.Option(min=0.0, max=2.0, help="Strength in the printed job snippet.")
    ] = 0.8,
    outputs: OutputsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload a LoRA under loras/<sha256 prefix>/ with its sha256; print the job snippet.

    Uses R2_ENDPOINT, R2_BUCKET, R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY (a token that may
    write the bucket); endpoint and bucket may come from --outputs. The same file again is
    reported as already uploaded; nothing is ever overwritten.
    """
    try:
        sha256 = lora_mod.check_file(file)
    except lora_mod.LoraCommandError as exc:
        _die("lora upload", str(exc), as_json=as_json)
    client, bucket = _lora_target("lora upload", outputs, as_json=as_json)
    try:
        done = lora_mod.upload(client, bucket, file, sha256=sha256, name=name)
    except lora_mod.LoraCommandError as exc:
        _die("lora upload", str(exc), as_json=as_json)
    except Exception as exc:  # noqa: BLE001 - every botocore failure ends the command the same way
        if as_json:
            emit_json(
                {"command": "lora upload", "ok": False, "error": lora_mod.describe_error(exc)}
            )
        else:
            stderr_console().print(f"[bold red]ops lora upload:[/] {lora_mod.describe_error(exc)}")
        raise typer.Exit(1) from None
    snippet = {"loras": [done.snippet(strength)]}
    if as_json:
        emit_json(
            {
                "command": "lora upload",
                "ok": True,
                "key": done.key,
                "sha256": done.sha256,
                "bytes": done.bytes,
                "created": done.created,
                "snippet": snippet,
            }
        )
        return
    what = "uploaded" if done.created else "already uploaded"
    console = stdout_console()
    console.print(
        f"{what} {done.key} ({done.bytes} bytes, sha256 {done.sha256})",
        markup=False,
        soft_wrap=True,
    )
    console.print("use it in a job input (FLUX or wan22_t2v templates):", markup=False)
    console.print(json.dumps(snippet), markup=False, highlight=False, soft_wrap=True)


@lora_app.command("list")
def lora_list(*, outputs: OutputsOpt = None, as_json: JsonOpt = False) -> None:
    """List the LoRAs under loras/ with size, sha256 and the key a job sends.

    Uses the R2_* variables (the app's read token is enough), or --outputs.
    """
    client, bucket = _lora_target("lora list", outputs, as_json=as_json)
    try:
        found = lora_mod.list_loras(client, bucket)
    except Exception as exc:  # noqa: BLE001 - every botocore failure ends the command the same way
        _die("lora list", lora_mod.describe_error(exc), as_json=as_json)
    if as_json:
        emit_json(
            {
                "command": "lora list",
                "ok": True,
                "bucket": bucket,
                "loras": [entry.__dict__ for entry in found],
            }
        )
        return
    rows = [
        (entry.key, f"{entry.bytes} bytes, sha256 {entry.sha256 or '(not recorded)'}")
        for entry in found
    ]
    stdout_console().print(metrics_table(f"LoRAs in {bucket} ({len(found)})", rows))


promote_app = typer.Typer(
    no_args_is_help=True,
    help="Promotion by gate record: record what staging passed, verify, open the PR.",
)
app.add_typer(promote_app, name="promote")


@promote_app.command("record")
def promote_record(
    *,
    outputs: Annotated[
        Path, typer.Option(help="staging's `pulumi stack output --json` (imageRef, imageDigest).")
    ],
    smoke: Annotated[Path, typer.Option(help="`ops smoke --json` of this run.")],
    canary: Annotated[Path, typer.Option(help="`ops canary --json` of this run.")],
    run_url: Annotated[
        str | None, typer.Option(help="This run's URL (else from GITHUB_*).", show_default=False)
    ] = None,
    commit: Annotated[
        str | None, typer.Option(help="The commit tested (else GITHUB_SHA).", show_default=False)
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the gate record of the digest staging just tested, if smoke and canary passed.

    Stored in GHCR next to the image as the tag sha256-<hex>.gates (GHCR_TOKEN with
    packages: write). Writing it again for the same digest is harmless.
    """
    env = os.environ
    try:
        stack_outputs = StackOutputs.load(str(outputs))
        tested = extract_digest(str(stack_outputs.get("image_digest") or ""))
        repository = _repository_of(str(stack_outputs.get("image_ref") or ""))
        documents = [json.loads(path.read_text(encoding="utf-8")) for path in (smoke, canary)]
        link = run_url or _this_run_url(env.get("GITHUB_REPOSITORY", "?"))
        record = promote_mod.build_record(
            tested,
            repository=repository,
            smoke=documents[0],
            canary=documents[1],
            run_url=link,
            commit=commit or env.get("GITHUB_SHA", ""),
        )
        registry = Registry.from_env(repository.split("/", 1)[1])
        tag = promote_mod.write_record(registry, record)
    except (PromoteError, TargetError, RegistryError, OSError, ValueError) as exc:
        _die("promote record", str(exc), as_json=as_json)
    if as_json:
        emit_json({"command": "promote record", "ok": True, "digest": tested, "tag": tag})
    else:
        stdout_console().print(f"gate record {registry.host}/{registry.repository}:{tag} written")


def _repository_of(image_ref: str) -> str:
    """``host/owner/name`` of ``host/owner/name@sha256:...``."""
    name = image_ref.split("@", 1)[0]
    if name.count("/") < 2:
        raise PromoteError(
            f"imageRef {image_ref!r} is not <registry>/<owner>/<name>@sha256:<hex>: pass "
            "staging's `pulumi stack output --json`"
        )
    return name


@promote_app.command("verify")
def promote_verify(
    *,
    stack_file: Annotated[
        Path, typer.Option(help="The stack file whose image.digest is checked.")
    ] = Path("Pulumi.prod.yaml"),
    as_json: JsonOpt = False,
) -> None:
    """Refuse a pinned digest that has no passing gate record or that GHCR does not have.

    The prod deploy runs this before `pulumi up`; exit 1 says which is missing.
    """
    try:
        pinned = promote_mod.pinned_digest(stack_file)
        registry = Registry.from_env(promote_mod.image_repository(stack_file))
        record = promote_mod.verify(registry, pinned)
    except promote_mod.PromotionRefusedError as exc:
        _die_checks("promote verify", stack_file.name, [str(exc)], as_json=as_json)
    except (PromoteError, RegistryError, OSError) as exc:
        _die("promote verify", str(exc), as_json=as_json)
    document = {"digest": record.digest, "runUrl": record.document.get("runUrl")}
    if as_json:
        emit_json({"command": "promote verify", "ok": True, **document})
    else:
        stdout_console().print(
            f"{record.digest}: in {registry.host}/{registry.repository}, passed staging "
            f"({record.document.get('runUrl')})"
        )


@promote_app.command("open-pr")
def promote_open_pr(
    *,
    stack_file: Annotated[Path, typer.Option(help="Stack file to pin the digest in.")] = Path(
        "Pulumi.prod.yaml"
    ),
    digest: Annotated[
        str | None,
        typer.Option(help="A digest with a passing record (else the newest).", show_default=False),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Open (or update) the pull request pinning a passing digest in the stack file.

    Built from origin/main, never from the working tree; re-running for the same digest
    updates the same branch and opens no second pull request (gh, GH_TOKEN).
    """
    try:
        registry = Registry.from_env(promote_mod.image_repository(stack_file))
        record = (
            promote_mod.verify(registry, digest) if digest else promote_mod.latest_passing(registry)
        )
        key = f"{promote_mod.project_name(stack_file)}:{promote_mod.CONFIG_KEY}"
        short = record.digest.removeprefix("sha256:")[:12]
        proposal = Mainline(Path.cwd()).propose(
            str(stack_file),
            lambda text: promote_mod.set_key(text, key, record.digest)[0],
            message=f"Promote image {record.digest} to prod",
            mode="pr",
            branch=f"promote/{short}",
            title=f"Promote image {short} to prod",
            body=(
                f"Pins `image.digest` in `{stack_file}` to `{record.digest}`, which passed "
                f"staging's `ops smoke` and `ops canary` ({record.document.get('runUrl')}); "
                "its gate record is the GHCR tag "
                f"`{promote_mod.record_tag(record.digest)}`. Merging deploys prod after the "
                "`production` environment's reviewers approve. Roll back by reverting this "
                "PR. See docs/rollout.md."
            ),
        )
    except (PromoteError, RegistryError, MainlineError) as exc:
        _die("promote open-pr", str(exc), as_json=as_json)
    document = {
        "digest": record.digest,
        "changed": proposal.changed,
        "url": proposal.url,
        "existing": proposal.existing,
    }
    if as_json:
        emit_json({"command": "promote open-pr", "ok": True, **document})
    elif not proposal.changed:
        stdout_console().print(f"main already pins {record.digest}: nothing to promote")
    else:
        verb = "updated" if proposal.existing else "opened"
        stdout_console().print(f"{verb} {proposal.url} pinning {record.digest}")


models_app = typer.Typer(no_args_is_help=True, help="The endpoint's models on its network volume.")
app.add_typer(models_app, name="models")


@models_app.command("seed")
def models_seed(
    *,
    endpoint_id: EndpointOpt = None,
    outputs: OutputsOpt = None,
    base_url: BaseUrlOpt = None,
    volume_id: Annotated[
        str | None,
        typer.Option(
            help="The models volume (else the comfyuiNetworkVolumeId output).", show_default=False
        ),
    ] = None,
    input_file: InputOpt = None,
    timeout: Annotated[
        float, typer.Option(min=0, help="Seconds to wait: a first fill downloads every model.")
    ] = 3600.0,
    poll_interval: PollOpt = 5.0,
    as_json: JsonOpt = False,
) -> None:
    """Fill the endpoint's network volume before traffic: one job whose worker verifies (and
    on an empty volume downloads) the models of MODEL_GROUPS onto the volume.

    Run right after `pulumi up`; a filled volume makes it an ordinary generation. No volume:
    a skip.
    """
    target, stack_outputs = _target("models seed", endpoint_id, outputs, base_url, as_json=as_json)
    job_input = _job_inputs("models seed", input_file, as_json=as_json)(0)
    volume = volume_id or models_seed_mod.volume_id(stack_outputs)
    summary, check = models_seed_mod.seed(
        _client(target), volume, job_input=job_input, timeout_s=timeout, poll_s=poll_interval
    )
    _finish(
        "models seed",
        {"endpointId": target.endpoint_id, "summary": summary},
        [check],
        as_json=as_json,
    )


def main() -> None:
    """Run the CLI."""
    app(prog_name="python -m ops")
