"""Model downloads: `python -m worker.models` vs `aria2c -x16` vs `curl`, verification included.

One run serves --files files of --size-mb from a local nginx (sendfile) and times, for each
tool: all files at once (ours: --parallel 3; aria2c: -x16 -s16 -j3 with sha-256 checksums;
curl: one process per file, then sha256sum), one file alone, and finishing that file from
a copy of its first half (ours: `<path>.partial`; aria2c: --continue; curl: -C -). nginx's
access log gives the bytes each phase really fetched.

    uv run python bench/downloads/run.py                     # 3 x 1 GB
    uv run python bench/downloads/run.py --size-mb 256       # quicker

Needs (Debian): nginx (nginx-light is enough), aria2, curl. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BLOCK = 16 * 2**20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_file(path: Path, size: int, seed: int) -> str:
    """Write ``size`` pseudo-random bytes; return their sha256."""
    noise = os.urandom(BLOCK)
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        written, block = 0, 0
        while written < size:
            piece = (seed.to_bytes(4, "big") + block.to_bytes(8, "big") + noise[12:])[
                : size - written
            ]
            handle.write(piece)
            digest.update(piece)
            written += len(piece)
            block += 1
    return digest.hexdigest()


def start_nginx(work: Path, www: Path, port: int) -> subprocess.Popen[bytes]:
    for sub in ("tmp", "logs"):
        (work / sub).mkdir(exist_ok=True)
    conf = work / "nginx.conf"
    temp = work / "tmp"
    conf.write_text(
        f"""
daemon off;
user root;
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/logs/error.log;
events {{ worker_connections 1024; }}
http {{
  log_format bytes '$request_uri $status $bytes_sent';
  access_log {work}/logs/access.log bytes;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path {temp}/body;
  proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi;
  uwsgi_temp_path {temp}/uwsgi;
  scgi_temp_path {temp}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {www};
    location / {{ }}
  }}
}}
"""
    )
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(work)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            time.sleep(0.1)
        else:
            return proc
    raise RuntimeError("nginx did not start")


def served_bytes(log: Path, since: int) -> tuple[int, int]:
    """(bytes sent in log lines after offset ``since``, new offset)."""
    with log.open("rb") as handle:
        handle.seek(since)
        data = handle.read()
    total = sum(int(line.split()[-1]) for line in data.decode().splitlines() if line.strip())
    return total, since + len(data)


def run_ours(files: list[dict], out: Path, parallel: int) -> None:
    manifest = out.parent / "bench-models.toml"
    lines = []
    for item in files:
        lines += [
            "[[model]]",
            f'name = "{item["name"]}"',
            f'url = "{item["url"]}"',
            f'path = "{item["name"]}"',
            f"size = {item['size']}",
            f'sha256 = "{item["sha256"]}"',
            'groups = ["bench"]',
        ]
    manifest.write_text("\n".join(lines) + "\n")
    subprocess.run(
        [
            str(REPO / "image" / "download_models.sh"),
            "--manifest",
            str(manifest),
            "--models-dir",
            str(out),
            "--groups",
            "bench",
            "--parallel",
            str(parallel),
            "--progress-interval",
            "1000",
        ],
        env={**os.environ, "PYTHON": sys.executable},
        check=True,
        stderr=subprocess.DEVNULL,
    )


def run_aria2(files: list[dict], out: Path, resume: bool) -> None:
    spec = out.parent / "aria2-input.txt"
    spec.write_text(
        "".join(f"{f['url']}\n  out={f['name']}\n  checksum=sha-256={f['sha256']}\n" for f in files)
    )
    argv = ["aria2c", "-x16", "-s16", "-j3", "-k1M", "-q", "-d", str(out), "-i", str(spec)]
    argv += ["--check-integrity=true", "--allow-overwrite=true", "--auto-file-renaming=false"]
    if resume:
        argv.append("--continue=true")
    subprocess.run(argv, check=True)


def run_curl(files: list[dict], out: Path, resume: bool) -> None:
    procs = []
    for item in files:
        argv = ["curl", "-sS", "--fail", "-o", str(out / item["name"]), item["url"]]
        if resume:
            argv[1:1] = ["-C", "-"]
        procs.append(subprocess.Popen(argv))
    if any(p.wait() for p in procs):
        raise RuntimeError("curl failed")
    check = "".join(f"{f['sha256']}  {out / f['name']}\n" for f in files)
    subprocess.run(["sha256sum", "--quiet", "-c", "-"], input=check.encode(), check=True)


def timed(label: str, action, log: Path, offset: int) -> tuple[dict, int]:
    start = time.monotonic()
    action()
    elapsed = time.monotonic() - start
    fetched, offset = served_bytes(log, offset)
    print(f"  {label}: {elapsed:.2f}s, {fetched / 2**20:.0f} MiB fetched", flush=True)
    return {"seconds": round(elapsed, 2), "fetched_MiB": round(fetched / 2**20)}, offset


def bench_tool(
    tool: str, files: list[dict], *, work: Path, www: Path, log: Path, offset: int
) -> tuple[dict, int]:
    """All files, one file, and one file resumed from 50 % with ``tool``."""
    out = work / f"out-{tool}"
    row: dict = {}

    def fetch(selection: list[dict], resume: bool):
        if tool == "ours":
            return lambda: run_ours(selection, out, parallel=3)
        if tool == "aria2c":
            return lambda: run_aria2(selection, out, resume)
        return lambda: run_curl(selection, out, resume)

    for phase, selection in (("all", files), ("single", files[:1])):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        row[phase], offset = timed(phase, fetch(selection, False), log, offset)
    # Interrupted at 50 %: the first half is on disk where each tool resumes from.
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    first = files[0]
    partial = out / (first["name"] + (".partial" if tool == "ours" else ""))
    with (www / first["name"]).open("rb") as src, partial.open("wb") as dst:
        dst.write(src.read(first["size"] // 2))
    row["resume_50"], offset = timed("resume at 50%", fetch([first], True), log, offset)
    got = hashlib.sha256((out / first["name"]).read_bytes()).hexdigest()
    row["resume_verified"] = got == first["sha256"]
    shutil.rmtree(out, ignore_errors=True)
    return row, offset


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-downloads"))
    parser.add_argument("--only", default="ours,aria2c,curl")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    for tool in ("nginx", "aria2c", "curl", "sha256sum"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install -y nginx-light aria2 curl")
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    www = work / "www"
    www.mkdir(parents=True)
    work.chmod(0o755)
    size = args.size_mb * 2**20
    print(f"generating {args.files} x {args.size_mb} MiB ...", flush=True)
    port = free_port()
    files = []
    for index in range(args.files):
        name = f"model_{index}.safetensors"
        sha = make_file(www / name, size, index)
        files.append(
            {"name": name, "url": f"http://127.0.0.1:{port}/{name}", "size": size, "sha256": sha}
        )
    nginx = start_nginx(work, www, port)
    log = work / "logs" / "access.log"
    offset = 0
    results = {}
    try:
        for tool in args.only.split(","):
            print(f"== {tool}", flush=True)
            results[tool], offset = bench_tool(
                tool, files, work=work, www=www, log=log, offset=offset
            )
    finally:
        nginx.terminate()
        nginx.wait()
    total_mib = args.files * args.size_mb
    print(
        f"\n| tool | {args.files} x {args.size_mb} MiB s | MiB/s | 1 file s "
        "| resume at 50 % s | fetched on resume MiB |"
    )
    print("|---|---|---|---|---|---|")
    for tool, row in results.items():
        rate = total_mib / row["all"]["seconds"]
        print(
            f"| {tool} | {row['all']['seconds']:.2f} | {rate:.0f} | {row['single']['seconds']:.2f} "
            f"| {row['resume_50']['seconds']:.2f} | {row['resume_50']['fetched_MiB']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    shutil.rmtree(www, ignore_errors=True)


if __name__ == "__main__":
    main()
