"""What the content-addressed revision costs each `pulumi up` / preview: hashing image/.

Compares, in one run on the same tree, `components.worker_image.context_revision` (Docker's
.dockerignore rules via docker-py, file contents and executable bits) with two peers that
read the same files: `tar -cf - image | sha256sum` (a whole-context hash with no ignore
rules) and `git ls-files -s image | sha256sum` (git's index, which only works in a clean
checkout with history). Prints the median and p90 of --runs runs, in milliseconds.

    uv run python bench/context_hash/run.py [--runs 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from components.worker_image import context_files, context_revision  # noqa: E402


def timed(call: Callable[[], object], runs: int) -> list[float]:
    """Wall-clock milliseconds of each run."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def shell(command: str) -> Callable[[], object]:
    return lambda: subprocess.run(command, shell=True, cwd=ROOT, check=True, capture_output=True)  # noqa: S602


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--runs", type=int, default=30)
    cli.add_argument("--json", type=Path)
    args = cli.parse_args()
    image = ROOT / "image"
    files = context_files(image)
    size = sum((image / f).stat().st_size for f in files)
    contenders = {
        "context_revision (ours)": lambda: context_revision(image),
        "tar | sha256sum": shell("tar -cf - image | sha256sum"),
        "git ls-files -s | sha256sum": shell("git ls-files -s image | sha256sum"),
    }
    results = {}
    for name, call in contenders.items():
        samples = sorted(timed(call, args.runs))
        results[name] = {
            "median_ms": round(statistics.median(samples), 2),
            "p90_ms": round(samples[int(0.9 * (len(samples) - 1))], 2),
        }
    print(f"image/: {len(files)} files in the context, {size / 1024:.0f} KiB, {args.runs} runs")
    for name, figures in results.items():
        print(
            f"  {name:32} median {figures['median_ms']:7.2f} ms   p90 {figures['p90_ms']:7.2f} ms"
        )
    if args.json:
        args.json.write_text(json.dumps({"files": len(files), "bytes": size, **results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
