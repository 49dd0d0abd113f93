"""The rollout plan's testing checklist against a live endpoint.

Owns: txt2img, img2img, background removal (and WAN 2.2 T2V with ``--video``) through
``/run`` + ``/status``, checking each result against the job contract in
ARCHITECTURE.md; reading every returned key back from R2 with the app's read credentials;
a malformed request that must fail with a clean validation error; and the rollback state.
"""

from __future__ import annotations

import base64
import struct
import sys
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.jobs import JobClient, JobOutcome
from ops.report import Check

SMOKE_IMAGE_NAME = "ops_smoke_input.png"
SMOKE_PROMPT = "ops smoke test: a red cube on a white table, studio light"


def smoke_png(size: int = 64) -> bytes:
    """A small RGB gradient PNG, built in memory (no imaging library needed)."""
    rows = b"".join(
        b"\x00" + bytes(channel for x in range(size) for channel in (x * 4 % 256, y * 4 % 256, 128))
        for y in range(size)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@dataclass(frozen=True)
class SmokeCase:
    """One generation on the checklist."""

    name: str
    kind: str
    job_input: dict[str, Any]


def smoke_cases(*, video: bool) -> list[SmokeCase]:
    """The checklist's generations, smallest settings that still exercise each path."""
    image = {"name": SMOKE_IMAGE_NAME, "image": base64.b64encode(smoke_png()).decode()}
    cases = [
        SmokeCase("txt2img", "image", _prompted("flux_txt2img", width=512, height=512)),
        SmokeCase(
            "img2img",
            "image",
            {
                **_prompted("flux_img2img", image=SMOKE_IMAGE_NAME, strength=0.6),
                "images": [image],
            },
        ),
        SmokeCase(
            "background removal",
            "image",
            {
                "template": "remove_background",
                "params": {"image": SMOKE_IMAGE_NAME},
                "images": [image],
            },
        ),
    ]
    if video:
        wan = _prompted("wan22_t2v", width=480, height=272, frames=17, fps=16)
        cases.append(SmokeCase("wan22 t2v", "video", wan))
    return cases


def _prompted(template: str, **params: Any) -> dict[str, Any]:
    """A job input for ``template``: the smoke prompt, a fixed seed, ``params``, 4 steps."""
    return {
        "template": template,
        "params": {"prompt": SMOKE_PROMPT, "seed": 1234, **params, "steps": 4},
    }


#: A request the handler must reject with ``error_type: validation``.
MALFORMED_INPUT: dict[str, Any] = {"template": "ops_smoke_no_such_template", "params": {}}


def contract_problems(output: Any, kind: str) -> list[str]:
    """How a COMPLETED job's output breaks the job contract (empty when it does not)."""
    if not isinstance(output, dict):
        return [f"output is {type(output).__name__}, not an object"]
    items = output.get("outputs")
    if not isinstance(items, list) or not items:
        return ["output has no 'outputs'"]
    problems = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(f"outputs[{index}] is not an object")
            continue
        if not isinstance(item.get("key"), str) or not item["key"]:
            problems.append(f"outputs[{index}] has no R2 key")
        if not isinstance(item.get("url"), str) or not item["url"]:
            problems.append(f"outputs[{index}] has no url")
        size = item.get("bytes")
        if not isinstance(size, int) or size <= 0:
            problems.append(f"outputs[{index}] reports {size!r} bytes")
    if not any(isinstance(i, dict) and i.get("kind") == kind for i in items):
        problems.append(f"no output of kind {kind!r}")
    return problems


def generation_check(case: SmokeCase, outcome: JobOutcome) -> Check:
    """Verdict for one generation."""
    data = {
        "jobId": outcome.job_id,
        "status": outcome.status,
        "latencyS": round(outcome.latency_s, 3),
        "delayMs": outcome.delay_ms,
        "executionMs": outcome.execution_ms,
    }
    if not outcome.ok:
        data["errorType"] = outcome.error_type
        return Check(case.name, "fail", outcome.reason(), data)
    problems = contract_problems(outcome.output, case.kind)
    if problems:
        return Check(
            case.name, "fail", "output breaks the job contract: " + "; ".join(problems), data
        )
    items = outcome.output["outputs"]
    data["outputs"] = items
    keys = ", ".join(str(item.get("key")) for item in items)
    return Check(
        case.name, "pass", f"{len(items)} output(s) in {outcome.latency_s:.1f} s: {keys}", data
    )


def error_handling_check(outcome: JobOutcome) -> Check:
    """A malformed request must FAIL with a one-line validation error, not a crash."""
    name = "error handling"
    data = {"jobId": outcome.job_id, "status": outcome.status, "errorType": outcome.error_type}
    if outcome.ok:
        return Check(name, "fail", "a request naming an unknown template was accepted", data)
    if outcome.status != "FAILED":
        return Check(name, "fail", f"malformed request ended {outcome.reason()}", data)
    if outcome.error_type not in (None, "validation"):
        return Check(
            name,
            "fail",
            f"malformed request was not rejected as a validation error: {outcome.reason()}",
            data,
        )
    # A plain-string error with no error_type means the handler returned {"error": ...} and
    # the platform dropped the rest of the dict (unconfirmed whether RunPod keeps it).
    note = "" if outcome.error_type else " (no error_type reported)"
    return Check(name, "pass", f"rejected cleanly{note}: {outcome.error}", data)


#: Reads one object; returns its size and content type. Raises on any failure.
ObjectReader = Callable[[str], tuple[int, str | None]]


def r2_reader_from_env(env: Mapping[str, str]) -> tuple[ObjectReader | None, str | None]:
    """A reader over the app's read credentials in ``R2_*``; or None and why not."""
    image_dir = str(Path(__file__).resolve().parents[1] / "image")
    if image_dir not in sys.path:
        sys.path.append(image_dir)  # the shared R2 client lives in the worker package
    from worker.r2 import R2ConfigError, R2Settings, client_config, make_client  # noqa: PLC0415

    try:
        settings = R2Settings.from_env(env)
    except R2ConfigError as exc:
        return None, str(exc).split(". ")[0]
    client = make_client(
        settings, config=client_config(max_attempts=2, connect_timeout=5, read_timeout=30)
    )

    def read(key: str) -> tuple[int, str | None]:
        response = client.get_object(Bucket=settings.bucket, Key=key)
        size = 0
        for block in response["Body"].iter_chunks(1024 * 1024):
            size += len(block)
        return size, response.get("ContentType")

    return read, None


def r2_check(generations: list[Check], reader: ObjectReader | None, why_not: str | None) -> Check:
    """Read back every key the generations returned; sizes must match."""
    name = "R2 read-back"
    items = [item for check in generations for item in check.data.get("outputs", [])]
    if reader is None:
        return Check(name, "fail", f"cannot verify R2 uploads: {why_not} (or pass --skip-r2)")
    if not items:
        return Check(name, "skip", "no generation completed, nothing to read back")
    problems = []
    for item in items:
        key = str(item["key"])
        try:
            size, content_type = reader(key)
        except Exception as exc:  # noqa: BLE001 - every botocore failure is a finding here
            problems.append(f"{key}: {_describe_s3_error(exc)}")
            continue
        if size != item["bytes"]:
            problems.append(f"{key}: {size} bytes in R2, the job reported {item['bytes']}")
        expected_type = item.get("content_type")
        if expected_type and content_type and content_type != expected_type:
            problems.append(f"{key}: content type {content_type}, expected {expected_type}")
    data = {"keys": [str(item["key"]) for item in items], "problems": problems}
    if problems:
        return Check(
            name,
            "fail",
            f"{len(problems)} of {len(items)} object(s) unreadable or wrong: "
            + "; ".join(problems),
            data,
        )
    return Check(name, "pass", f"read back {len(items)} object(s), sizes match", data)


def _describe_s3_error(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code", "?")
        return f"{code} ({response.get('Error', {}).get('Message', '').strip() or 'no message'})"
    return f"{type(exc).__name__}: R2 unreachable or refused the request"


def run_generations(
    client: JobClient,
    *,
    video: bool,
    timeout_s: float,
    poll_s: float,
    on_done: Callable[[str], None] | None = None,
) -> tuple[list[Check], Check]:
    """Run the generation cases and the malformed request concurrently."""
    cases = smoke_cases(video=video)

    def one(job_input: Any, label: str) -> JobOutcome:
        outcome = client.run_and_wait(job_input, timeout_s=timeout_s, poll_s=poll_s)
        if on_done is not None:
            on_done(label)
        return outcome

    with ThreadPoolExecutor(max_workers=len(cases) + 1) as pool:
        futures = [pool.submit(one, case.job_input, case.name) for case in cases]
        malformed = pool.submit(one, MALFORMED_INPUT, "error handling")
        outcomes = [future.result() for future in futures]
        malformed_outcome = malformed.result()
    checks = [
        generation_check(case, outcome) for case, outcome in zip(cases, outcomes, strict=True)
    ]
    return checks, error_handling_check(malformed_outcome)
