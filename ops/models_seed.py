"""Fill the serverless endpoint's network volume with its models before traffic arrives.

Owns: ``ops models seed``. With a network volume, each serverless worker verifies the
models of ``MODEL_GROUPS`` in ``/runpod-volume/models`` before ComfyUI starts, downloads what
is missing (one worker at a time, under a file lock) and stamps what it verified, so later
workers find them and only read them. Seeding sends one small job with a long timeout right
after ``pulumi up``: the worker that starts for it does the download, and the job completes
only once every model is on the volume and verified. Traffic (smoke, canary, the app) then
meets workers that load models instead of downloading them. On a volume already filled the
job is an ordinary generation. Without a volume there is nothing to fill: a skip, not a
failure.
"""

from __future__ import annotations

from typing import Any, TypedDict

from ops.jobs import JobClient
from ops.report import Check, seconds
from ops.target import StackOutputs


class SeedSummary(TypedDict):
    """What the seeding job showed."""

    volumeId: str | None
    status: str | None
    latencyS: float | None
    delayS: float | None
    executionS: float | None
    workerId: str | None


def volume_id(outputs: StackOutputs) -> str | None:
    """The endpoint's models volume from the stack outputs (empty: none)."""
    value = outputs.get("volume_id")
    return None if value is None else str(value)


def seed(
    client: JobClient,
    volume: str | None,
    *,
    job_input: Any,
    timeout_s: float,
    poll_s: float,
) -> tuple[SeedSummary, Check]:
    """Send the seeding job and judge it."""
    empty = SeedSummary(
        volumeId=volume, status=None, latencyS=None, delayS=None, executionS=None, workerId=None
    )
    if volume is None:
        return empty, Check(
            "models on the volume",
            "skip",
            "the endpoint has no network volume (serverless.networkVolumeGb is 0): every cold "
            "worker downloads its models; nothing to seed",
        )
    outcome = client.run_and_wait(job_input, timeout_s=timeout_s, poll_s=poll_s)
    summary = SeedSummary(
        volumeId=volume,
        status=outcome.status,
        latencyS=round(outcome.latency_s, 3),
        delayS=None if outcome.delay_ms is None else outcome.delay_ms / 1000,
        executionS=None if outcome.execution_ms is None else outcome.execution_ms / 1000,
        workerId=outcome.worker_id,
    )
    if not outcome.ok:
        return summary, Check(
            "models on the volume",
            "fail",
            f"the seeding job did not complete: {outcome.reason()} (a worker whose download "
            "fails exits before taking the job: read its log in the RunPod console)",
            dict(summary),
        )
    return summary, Check(
        "models on the volume",
        "pass",
        f"volume {volume}: a worker verified the models of MODEL_GROUPS on it and served a job "
        f"in {seconds(outcome.latency_s)} (delayTime {seconds(summary['delayS'])}: its start, "
        "download included when the volume was empty)",
        dict(summary),
    )
