"""Sync latency and throughput: our daemon vs `rclone copy` vs the replaced inotifywait script.

One run, one local S3 server (moto, in its own process), three syncers one after another on
the same workload: N images of --image-mb written at a steady pace, then M videos of
--video-mb written in 8 MB chunks like an encoder. A poller lists the bucket every 50 ms and
records when each object first appears at its full size; latency = that moment minus the
moment the writer closed the file. Also checks every object's ETag against the local MD5.

    uv run python bench/sync/run.py                # 200 x 1 MB + 10 x 200 MB
    uv run python bench/sync/run.py --videos 3 --video-mb 50 --only ours   # a quick look

Needs (Debian): rclone, inotify-tools. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "image"))
from worker.r2 import expected_etag  # noqa: E402 - after the path setup above

KEY_ID = "bench-key"
SECRET = "bench-secret"  # noqa: S105 - a local double's credential
BUCKET = "bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            time.sleep(0.1)
        else:
            return proc, url
    raise RuntimeError("moto server did not start")


def client(url: str):
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        region_name="auto",
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=4,
        ),
    )


class Poller:
    """Lists the prefix every 50 ms; remembers when each key first had its expected size."""

    def __init__(self, url: str, prefix: str) -> None:
        self.s3 = client(url)
        self.prefix = prefix
        self.expected: dict[str, int] = {}
        self.seen: dict[str, float] = {}
        self.etags: dict[str, str] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=BUCKET, Prefix=self.prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"]
                    with self.lock:
                        if key not in self.seen and self.expected.get(key) == item["Size"]:
                            self.seen[key] = now
                            self.etags[key] = item["ETag"].strip('"')
            time.sleep(0.05)

    def wait(self, keys: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(k in self.seen for k in keys):
                    return True
            time.sleep(0.05)
        return False


def write_images(
    src: Path, count: int, size: int, pace: float, noise: bytes
) -> list[tuple[str, float, Path]]:
    out = []
    for index in range(count):
        path = src / f"ComfyUI_{index:05d}_.png"
        with path.open("wb") as handle:
            handle.write(index.to_bytes(8, "big") + noise[: size - 8])
        out.append((path.name, time.monotonic(), path))
        time.sleep(pace)
    return out


def write_videos(src: Path, count: int, size: int, noise: bytes) -> list[tuple[str, float, Path]]:
    out = []
    (src / "video").mkdir(exist_ok=True)
    chunk = 8 * 1024 * 1024
    for index in range(count):
        path = src / "video" / f"ComfyUI_{index:05d}_.mp4"
        with path.open("wb") as handle:
            handle.write(index.to_bytes(8, "big"))
            left = size - 8
            while left > 0:
                piece = noise[: min(chunk, left)]
                handle.write(piece)
                left -= len(piece)
        out.append((f"video/{path.name}", time.monotonic(), path))
    return out


def syncer(name: str, src: Path, url: str, prefix: str, state: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "R2_ENDPOINT": url,
        "R2_BUCKET": BUCKET,
        "R2_ACCESS_KEY_ID": KEY_ID,
        "R2_SECRET_ACCESS_KEY": SECRET,
        "R2_PREFIX": prefix,
        "PYTHON": sys.executable,
    }
    if name == "ours":
        env |= {"SYNC_DIR": str(src), "SYNC_STATE_DIR": str(state), "SYNC_STATUS_SECONDS": "600"}
        argv = [str(REPO / "image" / "r2_sync.sh")]
    elif name == "rclone":
        env |= {
            "RCLONE_CONFIG_BENCH_TYPE": "s3",
            "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
            "RCLONE_CONFIG_BENCH_ENDPOINT": url,
            "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": KEY_ID,
            "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": SECRET,
            "RCLONE_CONFIG_BENCH_REGION": "auto",
            "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
        }
        # Back-to-back passes with no sleep: the best latency a timer-driven copy can reach.
        env.pop("AWS_CA_BUNDLE", None)  # rclone refuses a custom CA bundle on plain HTTP
        copy = f"rclone copy --s3-no-check-bucket {src} bench:{BUCKET}/{prefix}"
        loop = f"while true; do {copy} 2>/dev/null; done"
        argv = ["bash", "-c", loop]
    else:
        env |= {"LEGACY_ROOT": str(src)}
        argv = [str(REPO / "bench" / "sync" / "legacy_sync.sh"), str(src)]
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def stats(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max": ordered[-1],
    }


def run_one(name: str, args: argparse.Namespace, url: str, work: Path, noise: bytes) -> dict:
    src, state = work / name, work / f"{name}-state"
    src.mkdir()
    prefix = f"{name}/"
    poller = Poller(url, prefix)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = syncer(name, src, url, prefix, state)
    time.sleep(2.0)  # let the watcher establish its watches (not part of any figure)
    # ours writes under R2_PREFIX + pods/<sync id>/ (the id is made at its first start).
    root = prefix + (f"pods/{(state / 'sync-id').read_text().strip()}/" if name == "ours" else "")
    result: dict = {"syncer": name}
    for kind, writer, count, size in (
        (
            "images",
            lambda: write_images(src, args.images, args.image_mb * 2**20, args.pace, noise),
            args.images,
            args.image_mb * 2**20,
        ),
        (
            "videos",
            lambda: write_videos(src, args.videos, args.video_mb * 2**20, noise),
            args.videos,
            args.video_mb * 2**20,
        ),
    ):
        if not count:
            continue
        with poller.lock:
            for index in range(count):
                key = root + (
                    f"ComfyUI_{index:05d}_.png"
                    if kind == "images"
                    else f"video/ComfyUI_{index:05d}_.mp4"
                )
                poller.expected[key] = size
        written = writer()
        keys = [root + rel for rel, _, _ in written]
        ok = poller.wait(keys, args.timeout)
        with poller.lock:
            lat = [
                poller.seen[root + rel] - closed
                for rel, closed, _ in written
                if root + rel in poller.seen
            ]
            last = max((poller.seen.get(k, 0.0) for k in keys), default=0.0)
            bad = sum(
                1
                for rel, _, path in written
                if root + rel in poller.etags
                and poller.etags[root + rel] != expected_etag(path)
                # Other tools use other part sizes; their multipart ETags are not comparable.
                and (name == "ours" or "-" not in poller.etags[root + rel])
            )
        first_close = min(closed for _, closed, _ in written)
        result[kind] = {
            "complete": ok,
            "arrived": len(lat),
            "of": count,
            **(stats(lat) if lat else {}),
            "throughput_MBps": (count * size / 2**20) / (last - first_close) if ok else None,
            "etag_mismatch": bad,
        }
        print(f"  {name} {kind}: {json.dumps(result[kind])}", flush=True)
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    time.sleep(0.5)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["cpu_seconds"] = round(
        (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1
    )
    poller.stop.set()
    poller.thread.join()
    shutil.rmtree(src)
    s3 = client(url)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--image-mb", type=int, default=1)
    parser.add_argument("--pace", type=float, default=0.02, help="seconds between images")
    parser.add_argument("--videos", type=int, default=10)
    parser.add_argument("--video-mb", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--only", default="ours,rclone,legacy")
    parser.add_argument("--json", type=Path, help="write results here")
    args = parser.parse_args()
    for tool in ("rclone", "inotifywait"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install -y rclone inotify-tools")
    moto, url = start_moto()
    try:
        client(url).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "auto"}
        )
        noise = os.urandom(max(args.image_mb, min(args.video_mb, 8)) * 2**20)
        results = []
        with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
            for name in args.only.split(","):
                print(f"== {name}", flush=True)
                results.append(run_one(name, args, url, Path(tmp), noise))
    finally:
        moto.terminate()
        moto.wait()
    print("\n| syncer | workload | p50 s | p99 s | max s | MB/s | arrived | CPU s (whole run) |")
    print("|---|---|---|---|---|---|---|---|")
    for res in results:
        for kind in ("images", "videos"):
            if kind not in res:
                continue
            r = res[kind]
            fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else "-"  # noqa: E731
            cells = [res["syncer"], kind, *(fmt(r.get(k)) for k in ("p50", "p99", "max"))]
            cells += [fmt(r.get("throughput_MBps")), f"{r['arrived']}/{r['of']}"]
            cells += [str(res["cpu_seconds"])]
            print("| " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
