"""The job path end to end on this machine, with local stand-ins: ``scripts/sandbox``.

Owns: starting, each in its own process on 127.0.0.1, the S3 stand-in for R2 (moto,
``tests/fakes/s3.py``), the ComfyUI double (``tests/fakes/comfyui.py``, with every model of
``image/models.toml`` installed) and RunPod's serverless job API stand-in
(``tests/fakes/runpod_jobs.py``) whose workers run the real handler
(``worker.handler:handler``) with the environment a RunPod worker gets; then running
``python -m ops smoke`` against them exactly as an operator would against RunPod, printing
its verdicts and the URLs of the objects the jobs wrote (presigned by the handler, valid while
the sandbox runs), and stopping every process on Ctrl-C or SIGTERM.

Deliberately a local stand-in, not RunPod: no GPU, no real ComfyUI or models (the double
writes small valid PNG/MP4 files), no Cloudflare. It shows the contract between app, job API,
handler, ComfyUI and R2 working, not image quality or cold-start times.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "comfyui-runpod-sandbox"
PREFIX = "sandbox/"
ENDPOINT_ID = "sandbox"
#: Credentials of the local stand-ins only (moto accepts any; the job API checks this one).
ACCESS_KEY, SECRET_KEY, API_KEY = "sandbox-access-key", "sandbox-secret-key", "sandbox-api-key"
#: What the ops CLI needs to reach the stand-ins (printed for the person to export).
OPS_ENV = (
    "RUNPOD_ENDPOINT_BASE_URL",
    "RUNPOD_API_KEY",
    "RUNPOD_COMFYUI_ENDPOINT_ID",
    "R2_ENDPOINT",
    "R2_BUCKET",
    "R2_ACCESS_KEY_ID",
    "R2_SECRET_ACCESS_KEY",
)
_URL = re.compile(r"http://127\.0\.0\.1:\d+(?:/v2)?")
_PID_FILE = re.compile(r"pid file (\S+?)\)")


class SandboxError(RuntimeError):
    """A stand-in did not come up; the message says which and why."""


def log(message: str) -> None:
    """One line for the person watching, on stderr."""
    sys.stderr.write(f"[sandbox] {message}\n")
    sys.stderr.flush()


def manifest_models(manifest: Path = ROOT / "image" / "models.toml") -> list[str]:
    """Every model file of the manifest as ``folder=file`` (the ComfyUI double's --model)."""
    document = tomllib.loads(manifest.read_text(encoding="utf-8"))
    models = []
    for model in document.get("model", []):
        folder, _, name = str(model["path"]).partition("/")
        models.append(f"{folder}={name}")
    return models


class Child:
    """One stand-in process: started, read until it says where it listens, stopped politely."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.name = name
        self.process = subprocess.Popen(
            list(argv), env=dict(env), stdout=subprocess.PIPE, text=True
        )
        self.first_line = ""

    def wait_for_line(self, pattern: re.Pattern[str], timeout_s: float) -> re.Match[str]:
        """Read stdout until ``pattern`` matches a line; then drain the rest in the background."""
        assert self.process.stdout is not None
        found: list[re.Match[str]] = []
        done = threading.Event()

        def read(stream: IO[str]) -> None:
            for line in stream:
                if not found and (match := pattern.search(line)):
                    self.first_line = line.strip()
                    found.append(match)
                    done.set()
            done.set()

        threading.Thread(target=read, args=(self.process.stdout,), daemon=True).start()
        # Its exit is watched too, not only its output: a process it started may hold the
        # pipe open after it died (the double's stand-in ComfyUI process does).
        deadline = time.monotonic() + timeout_s
        while not done.wait(0.2) and time.monotonic() < deadline:
            if self.process.poll() is not None:
                done.wait(1.0)  # let the reader take what it printed before dying
                break
        if not found:
            try:  # closed its output: it is exiting, collect the code
                code: int | None = self.process.wait(5 if done.is_set() else 0.1)
            except subprocess.TimeoutExpired:
                code = None
            state = f"exited with {code}" if code is not None else f"silent for {timeout_s:.0f} s"
            raise SandboxError(f"{self.name} did not start ({state}); its errors are above")
        return found[0]

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGINT (Python tools unwind their ``with`` blocks), then SIGTERM, then SIGKILL."""
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                return
            self.process.send_signal(signum)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                continue
            return


@contextmanager
def stand_ins(workdir: Path, *, workers: int) -> Iterator[dict[str, str]]:
    """Start S3, the ComfyUI double and the job API with the real handler; yield ops' env."""
    python = sys.executable
    base = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "image")]),
        "PYTHONUNBUFFERED": "1",
        "TMPDIR": str(workdir),
    }
    children: list[Child] = []
    try:
        s3 = Child("S3 stand-in", [python, "-m", "tests.fakes.s3"], base)
        children.append(s3)
        s3_url = s3.wait_for_line(_URL, 60).group(0)
        log(f"S3 stand-in for R2 (moto, pid {s3.process.pid}) at {s3_url}")
        r2 = {
            "R2_ENDPOINT": s3_url,
            "R2_BUCKET": BUCKET,
            "R2_ACCESS_KEY_ID": ACCESS_KEY,
            "R2_SECRET_ACCESS_KEY": SECRET_KEY,
            "R2_PREFIX": PREFIX,
        }
        _create_bucket(r2)

        # Port 0: the double binds a free port itself and prints it (a port picked here,
        # released and passed on could be taken by another process before the double binds).
        models = [arg for model in manifest_models() for arg in ("--model", model)]
        comfy = Child(
            "ComfyUI double",
            [python, "-m", "tests.fakes.comfyui", "--port", "0", *models],
            base,
        )
        children.append(comfy)
        comfy_url = comfy.wait_for_line(_URL, 60).group(0)
        # The double writes the PID of the process playing ComfyUI (the handler's liveness
        # check); without it the handler only sees the HTTP server.
        pid_file = _PID_FILE.search(comfy.first_line)
        log(f"ComfyUI double (pid {comfy.process.pid}) at {comfy_url}, {len(models) // 2} models")

        worker_env = {
            **base,
            **r2,
            "COMFY_URL": comfy_url,
            "COMFY_PID_FILE": pid_file.group(1) if pid_file else "",
        }
        for name in ("R2_PUBLIC_BASE_URL", "JOB_TIMEOUT_S", "INPUT_URL_ALLOW_HTTP"):
            worker_env.pop(name, None)
        options = ["--workers", str(workers), "--endpoint-id", ENDPOINT_ID, "--api-key", API_KEY]
        jobs = Child(
            "RunPod job API stand-in",
            [
                python,
                "-m",
                "tests.fakes.runpod_jobs",
                "--worker",
                "worker.handler:handler",
                *options,
            ],
            worker_env,
        )
        children.append(jobs)
        jobs_url = jobs.wait_for_line(_URL, 60).group(0)
        log(
            f"RunPod job API stand-in (pid {jobs.process.pid}) at {jobs_url}, "
            f"{workers} workers running the real handler (image/worker/handler.py)"
        )
        yield {
            **base,
            **r2,
            "RUNPOD_ENDPOINT_BASE_URL": jobs_url,
            "RUNPOD_API_KEY": API_KEY,
            "RUNPOD_COMFYUI_ENDPOINT_ID": ENDPOINT_ID,
        }
    finally:
        for child in reversed(children):
            child.stop()
        log("stopped every stand-in")


def _create_bucket(r2: Mapping[str, str]) -> None:
    if str(ROOT / "image") not in sys.path:
        sys.path.append(str(ROOT / "image"))  # the worker package, as in the image
    from worker.r2 import R2Settings, make_client  # noqa: PLC0415 - needs the path above

    settings = R2Settings.from_env(r2)
    make_client(settings).create_bucket(
        Bucket=settings.bucket, CreateBucketConfiguration={"LocationConstraint": "auto"}
    )


def run_smoke(env: Mapping[str, str], smoke_args: Sequence[str]) -> tuple[int, dict[str, Any]]:
    """``python -m ops smoke --json`` against the stand-ins; its exit code and report."""
    argv = [sys.executable, "-m", "ops", "smoke", "--json", "--no-progress", *smoke_args]
    log("running: python -m ops smoke " + " ".join(smoke_args))
    result = subprocess.run(
        argv, env=dict(env), stdout=subprocess.PIPE, text=True, check=False, timeout=900
    )
    try:
        report = json.loads(result.stdout)
    except ValueError:
        report = {"checks": []}
    return result.returncode, report


def print_report(
    code: int, report: Mapping[str, Any], env: Mapping[str, str], *, serving: bool = True
) -> list[str]:
    """The smoke's verdicts, then every generated object's URL; returns the URLs.

    ``serving``: the stand-ins keep running (no ``--once``), so the URLs work and the ops CLI
    can be tried against them; with ``--once`` they stop right after, and the text says so.
    """
    out = sys.stdout
    out.write("\nops smoke against the local stand-ins (not RunPod):\n")
    for check in report.get("checks", []):
        out.write(f"  {check['status'].upper():5} {check['name']}: {check['detail']}\n")
    urls = [
        str(item["url"])
        for check in report.get("checks", [])
        for item in check.get("data", {}).get("outputs", [])
        if item.get("url")
    ]
    served = "served while the sandbox runs" if serving else "--once: no longer served"
    out.write(f"\nsmoke exit code {code}; generated objects ({served}):\n")
    for url in urls:
        out.write(f"  {url}\n")
    if not serving:
        out.flush()
        return urls
    out.write(
        "\nTry the ops CLI yourself against the same stand-ins:\n"
        + "".join(f"  export {name}={env[name]}\n" for name in OPS_ENV)
        + "  scripts/uv run python -m ops canary --requests 8\n"
    )
    out.flush()
    return urls


def main(argv: Sequence[str] | None = None) -> int:
    """Start the stand-ins, run the smoke, print URLs, serve until Ctrl-C (or exit: --once)."""
    parser = argparse.ArgumentParser(
        prog="scripts/sandbox",
        description="The job path end to end with local stand-ins (not RunPod): "
        "S3, a ComfyUI double, RunPod's job API with the real handler, then ops smoke.",
    )
    parser.add_argument("--once", action="store_true", help="stop after the smoke (CI)")
    parser.add_argument("--workers", type=int, default=2, help="job API workers (default 2)")
    parser.add_argument(
        "smoke_args",
        nargs="*",
        default=["--video"],
        help="arguments for ops smoke after --, default --video (WAN 2.2 T2V too)",
    )
    args = parser.parse_args(argv)
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log(f"{signal.Signals(signum).name}: stopping")
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="comfyui-runpod-sandbox-") as workdir,
            stand_ins(Path(workdir), workers=args.workers) as env,
        ):
            if stop.is_set():
                return 130
            code, report = run_smoke(env, [*args.smoke_args, "--poll-interval", "0.2"])
            print_report(code, report, env, serving=not args.once)
            if args.once:
                return code
            log("the stand-ins keep running; Ctrl-C (or SIGTERM) stops everything")
            while not stop.wait(0.5):
                pass
    except SandboxError as error:
        log(str(error))
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
