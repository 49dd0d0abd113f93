"""Handler overhead per job, next to calling ComfyUI directly, in one run.

Run from the repository root:

    uv run python bench/handler/run.py [--jobs 20]

Two cases: one small PNG, and four 4 MB images. For each, the same graph is sent
(a) straight to ComfyUI by a minimal client (WebSocket, POST /prompt, wait for the done
signal, read the history: what any caller must do) and (b) through ``worker.handler.handler``
(validation, readiness probe, the same ComfyUI calls, /view downloads, uploads to S3, URLs).
Handler overhead = handler wall time - direct wall time. The upload share is reported apart
(``timings.upload_ms``), and uploads are also timed one at a time (UPLOAD_CONCURRENCY=1) to
show what concurrency buys. ComfyUI is the loopback double and S3 is moto on loopback: both
are stand-ins, so the figures measure the handler's own cost, not GPU or R2 network time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "image")]

# Imports after the path set-up: the worker package lives in image/, the doubles in tests/.
from worker.comfy import ComfyClient  # noqa: E402
from worker.handler import handler  # noqa: E402

from bench.handler.latency_proxy import latency_proxy  # noqa: E402
from tests.fakes.comfyui import ComfyUIDouble  # noqa: E402
from tests.fakes.s3 import moto_s3_server, new_bucket, settings_env  # noqa: E402

MIB = 1024 * 1024


def graph(batch: int) -> dict[str, Any]:
    """The weights-free graph: EmptyImage -> ImageInvert -> SaveImage."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": batch, "color": 0},
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "b"}},
    }


def direct(url: str, batch: int) -> float:
    """Seconds for a bare client to run the graph and read its history (no transfer)."""
    started = time.perf_counter()
    client = ComfyClient(url)
    client_id = uuid.uuid4().hex
    ws = client.connect(client_id)
    try:
        prompt_id = client.queue_prompt(
            graph(batch), client_id=client_id, prompt_id=str(uuid.uuid4())
        )
        client.follow(ws, prompt_id, deadline=time.monotonic() + 60)
    finally:
        ws.close()
    entry = client.history(prompt_id)
    if len(entry["outputs"]["3"]["images"]) != batch:
        raise RuntimeError(f"expected {batch} outputs, got {entry['outputs']}")
    return time.perf_counter() - started


def via_handler(batch: int) -> tuple[float, float, float]:
    """(seconds, upload seconds, own seconds) for the same graph through the handler.

    Own seconds = the handler's total minus ComfyUI's queue and run time and the uploads, all
    from the job's own ``timings``: validation, readiness probe, WebSocket, history, URLs.
    """
    started = time.perf_counter()
    result = handler({"id": f"bench-{uuid.uuid4().hex[:8]}", "input": {"workflow": graph(batch)}})
    elapsed = time.perf_counter() - started
    if "error" in result:
        raise RuntimeError(result)
    if len(result["outputs"]) != batch:
        raise RuntimeError(f"expected {batch} outputs, got {result['outputs']}")
    t = result["timings"]
    own = t["total_ms"] - t["queue_ms"] - t["run_ms"] - t["upload_ms"]
    return elapsed, t["upload_ms"] / 1000, own / 1000


def summarise(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered) * 1000:7.1f} {p90 * 1000:7.1f}"


def measure(
    name: str, comfy: ComfyUIDouble, batch: int, jobs: int, concurrency: str
) -> dict[str, list[float]]:
    os.environ["UPLOAD_CONCURRENCY"] = concurrency
    via_handler(batch)  # warm up: boto3 client, connection pools
    direct(comfy.url, batch)
    rows: dict[str, list[float]] = {
        "direct": [],
        "handler": [],
        "upload": [],
        "overhead": [],
        "own": [],
    }
    for _ in range(jobs):
        d = direct(comfy.url, batch)
        h, up, own = via_handler(batch)
        rows["direct"].append(d)
        rows["handler"].append(h)
        rows["upload"].append(up)
        rows["overhead"].append(h - d - up)
        rows["own"].append(own)
    print(f"\n{name} (UPLOAD_CONCURRENCY={concurrency}, {jobs} jobs)")
    print(f"{'':34} {'median':>7} {'p90':>7}  (ms)")
    labels: dict[str, str] = {
        "direct": "ComfyUI called directly",
        "handler": "through the handler",
        "upload": "  of which uploads (timings)",
        "overhead": "  handler - direct - uploads",
        "own": "  handler's own time (timings)",
    }
    for key, label in labels.items():
        print(f"{label:34} {summarise(rows[key])}")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument(
        "--rtt-ms",
        type=float,
        default=40.0,
        help="delay added to every S3 request in the second pass (a stand-in for R2's RTT)",
    )
    args = parser.parse_args(argv)
    cases: list[tuple[str, int, int | None, list[str]]] = [
        ("one image (small PNG)", 1, None, ["8"]),
        ("four 4 MB images", 4, 4 * MIB, ["8", "1"]),
    ]
    with moto_s3_server() as endpoint:
        bucket = new_bucket(endpoint, prefix="bench/")
        with latency_proxy(endpoint, args.rtt_ms / 1000) as delayed:
            for s3_url, note in ((endpoint, "S3 on loopback"), (delayed, f"+{args.rtt_ms:g} ms")):
                os.environ.update(settings_env(bucket))
                os.environ["R2_ENDPOINT"] = s3_url
                print(f"\n=== S3: {note} per request ===")
                for title, batch, size, concurrencies in cases:
                    with ComfyUIDouble(output_bytes=size) as comfy:
                        os.environ["COMFY_URL"] = comfy.url
                        os.environ["COMFY_PID_FILE"] = str(comfy.pid_file)
                        for concurrency in concurrencies:
                            measure(title, comfy, batch, args.jobs, concurrency)


if __name__ == "__main__":
    main()
