"""Job LoRAs from the bucket: the worker's cache next to downloading per job, in one run.

Run from the repository root:

    uv run python bench/lora_cache/run.py [--mib 150] [--rounds 3] [--rtt-ms 40]

One LoRA of ``--mib`` MiB is uploaded with ``ops lora upload`` (sha256 metadata). Cases, each
``--rounds`` times:

- ours, cold: an empty cache; ``LoraSession.fetch`` (HEAD, GET with If-Match, sha256 while
  writing, verification, safetensors header check, atomic rename).
- ours, warm: the file is cached; the same call (HEAD + stat).
- ours, 4 jobs at once, cold: four sessions ask for the same key at the same moment.
- peer, per job: boto3's ``download_file`` (s3transfer, 10 threads) into a fresh file, what a
  worker without a cache does for every job; and four of those at once.

S3 is moto on loopback behind ``bench/handler/latency_proxy.py`` (+``--rtt-ms`` per request,
a stand-in for a RunPod data centre's round trip to R2). moto is CPU-bound Python on a
shared 2-core machine, so the absolute MB/s are the double's; the comparison in one run is
what the figures are for.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "image")]

# Imports after the path set-up: the worker package lives in image/, the doubles in tests/.
from worker import loras  # noqa: E402
from worker.r2 import make_client  # noqa: E402

from bench.handler.latency_proxy import latency_proxy  # noqa: E402
from ops import lora as ops_lora  # noqa: E402
from tests.fakes.s3 import moto_s3_server, new_bucket  # noqa: E402

MIB = 1024 * 1024


def lora_file(path: Path, mib: int) -> None:
    """A valid safetensors file of about ``mib`` MiB (one F16 tensor of varied bytes)."""
    size = mib * MIB
    header = json.dumps(
        {"w": {"dtype": "F16", "shape": [size // 2], "data_offsets": [0, size]}}
    ).encode()
    header += b" " * (-len(header) % 8)
    block = hashlib.sha256(b"lora").digest() * (MIB // 32)
    with path.open("wb") as handle:
        handle.write(len(header).to_bytes(8, "little") + header)
        for _ in range(mib):
            handle.write(block)


def timed(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


def parallel(action: object, count: int) -> float:
    threads = [threading.Thread(target=action) for _ in range(count)]  # type: ignore[arg-type]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def main() -> None:
    """Run every case and print median and max seconds per case."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per S3 request
    with (
        moto_s3_server() as endpoint,
        latency_proxy(endpoint, args.rtt_ms / 1000) as slow,
        tempfile.TemporaryDirectory() as tmp,
    ):
        bucket = new_bucket(endpoint)
        source = Path(tmp) / "style.safetensors"
        lora_file(source, args.mib)
        key = ops_lora.upload(make_client(bucket), bucket.bucket, source).key
        client = make_client(dataclasses.replace(bucket, endpoint=slow))
        results: dict[str, list[float]] = {}

        def record(name: str, seconds: float) -> None:
            results.setdefault(name, []).append(seconds)

        for round_number in range(args.rounds):
            cache = loras.LoraCache(
                Path(tmp) / f"loras-{round_number}", max_bytes=10 * 2**30, max_file_bytes=2**32
            )

            def fetch(cache: loras.LoraCache = cache) -> None:
                with cache.session() as session:
                    session.fetch(client, bucket.bucket, key, deadline=time.monotonic() + 600)

            record("ours, cold (download, verify, publish)", timed(fetch))
            record("ours, warm (cached: HEAD + stat)", timed(fetch))
            crowd = loras.LoraCache(
                Path(tmp) / f"crowd-{round_number}", max_bytes=10 * 2**30, max_file_bytes=2**32
            )
            record(
                "ours, 4 jobs at once, cold",
                parallel(lambda crowd=crowd: fetch(crowd), 4),
            )

            def download(round_number: int = round_number) -> None:
                target = Path(tmp) / f"peer-{round_number}-{threading.get_ident()}.safetensors"
                client.download_file(bucket.bucket, key, str(target))
                target.unlink()

            record("peer: download_file per job", timed(download))
            record("peer: 4 jobs at once, each download_file", parallel(download, 4))

    print(f"LoRA {args.mib} MiB, S3 = moto on loopback +{args.rtt_ms:g} ms per request, "
          f"{args.rounds} rounds")  # fmt: skip
    print(f"{'case':48} {'median':>8} {'max':>8}  (s)")
    for name, values in results.items():
        print(f"{name:48} {statistics.median(values):8.2f} {max(values):8.2f}")


if __name__ == "__main__":
    main()
