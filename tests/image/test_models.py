"""The model downloader against a local HTTP server with Range support and injected faults."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from worker import models

from tests.fakes.http_files import FakeFile, FileServer, file_server

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "image" / "models.toml"


def blob(size: int, seed: int = 1) -> bytes:
    """Deterministic, incompressible-looking bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}-{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def write_manifest(path: Path, server: FileServer, entries: list[dict[str, object]]) -> Path:
    """A models.toml with one [[model]] per dict; url defaults to the server's URL of name."""
    lines: list[str] = []
    for entry in entries:
        lines.append("[[model]]")
        fields = {"url": server.url(str(entry["name"])), "gated": False, **entry}
        fields.setdefault("path", f"diffusion_models/{entry['name']}")
        fields.setdefault("groups", ["g"])
        for key, value in fields.items():
            lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def models_run(tmp_path: Path) -> dict[str, Path]:
    """Where an in-process run keeps its models dir and manifest."""
    return {"dir": tmp_path / "models", "manifest": tmp_path / "models.toml"}


def run(manifest: Path, models_dir: Path, *extra: str, env: dict[str, str] | None = None) -> int:
    """``python -m worker.models`` in-process with fast retries."""
    argv = [
        "--manifest",
        str(manifest),
        "--models-dir",
        str(models_dir),
        "--groups",
        "g",
        "--backoff",
        "0.01",
        "--progress-interval",
        "0.05",
        *extra,
    ]
    return models.main(argv, env=env or {})


def test_unknown_group_is_a_usage_error(models_run: dict[str, Path]) -> None:
    """A misspelt group exits 2 instead of silently downloading nothing."""
    code = models.main(
        ["--manifest", str(MANIFEST), "--models-dir", str(models_run["dir"]), "--groups", "wan"],
        env={},
    )
    assert code == models.EXIT_USAGE


def test_download_verifies_and_publishes_with_a_stamp(models_run: dict[str, Path]) -> None:
    """A clean download lands at its path with the right bytes, a stamp and no .partial."""
    data = blob(300_000)
    with file_server({"a.bin": FakeFile(data)}) as server:
        manifest = write_manifest(models_run["manifest"], server, [{"name": "a.bin"}])
        status = models_run["dir"].parent / "status.json"
        code = run(manifest, models_run["dir"], "--status-file", str(status))
    target = models_run["dir"] / "diffusion_models" / "a.bin"
    assert code == 0
    assert target.read_bytes() == data
    assert not target.with_name("a.bin.partial").exists()
    stamp = json.loads((models_run["dir"] / ".verified/diffusion_models/a.bin.json").read_text())
    assert stamp["sha256"] == hashlib.sha256(data).hexdigest()
    assert stamp["verified_by"] == "sha256"
    document = json.loads(status.read_text())
    assert document["state"] == "done"
    assert document["models"][0]["state"] == "done"


def test_interrupted_download_resumes_with_range(models_run: dict[str, Path]) -> None:
    """A connection dropped mid-body is resumed from the bytes already on disk."""
    data = blob(3_000_000)
    fake = FakeFile(data, drop_after=2_500_000)
    with file_server({"r.bin": fake}) as server:
        manifest = write_manifest(models_run["manifest"], server, [{"name": "r.bin"}])
        code = run(manifest, models_run["dir"])
        gets = server.body_gets("r.bin")
    assert code == 0
    assert (models_run["dir"] / "diffusion_models/r.bin").read_bytes() == data
    assert len(gets) == 2
    assert gets[0].range is None
    assert gets[1].range is not None
    resumed_at = int(gets[1].range.removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 2_500_000


def test_partial_from_an_earlier_run_is_hashed_and_continued(
    models_run: dict[str, Path],
) -> None:
    """A .partial left by a killed run is continued, not restarted, and still verified."""
    data = blob(500_000)
    partial = models_run["dir"] / "diffusion_models/p.bin.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[:250_000])
    with file_server({"p.bin": FakeFile(data)}) as server:
        manifest = write_manifest(models_run["manifest"], server, [{"name": "p.bin"}])
        code = run(manifest, models_run["dir"])
        gets = server.body_gets("p.bin")
    assert code == 0
    assert [g.range for g in gets] == ["bytes=250000-"]
    assert (models_run["dir"] / "diffusion_models/p.bin").read_bytes() == data


def test_corrupted_byte_is_rejected_and_refetched(
    models_run: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A body that fails sha256 is discarded and fetched again; the bad bytes never publish."""
    data = blob(200_000)
    with file_server({"c.bin": FakeFile(data, corrupt_once=True)}) as server:
        manifest = write_manifest(models_run["manifest"], server, [{"name": "c.bin"}])
        with caplog.at_level(logging.WARNING, logger="worker.models"):
            code = run(manifest, models_run["dir"])
        gets = server.body_gets("c.bin")
    assert code == 0
    assert len(gets) == 2
    assert "sha256" in caplog.text
    assert (models_run["dir"] / "diffusion_models/c.bin").read_bytes() == data


def test_truncated_response_is_never_published(models_run: dict[str, Path]) -> None:
    """A body cut short with no retry left fails the run; nothing appears at the final path."""
    data = blob(200_000)
    fake = FakeFile(data, drop_after=50_000)
    with file_server({"t.bin": fake}) as server:
        manifest = write_manifest(models_run["manifest"], server, [{"name": "t.bin"}])
        code = models.main(
            [
                "--manifest",
                str(manifest),
                "--models-dir",
                str(models_run["dir"]),
                "--groups",
                "g",
                "--backoff",
                "0.01",
                "--retries",
                "0",
            ],
            env={},
        )
    assert code == models.EXIT_FAILED
    assert not (models_run["dir"] / "diffusion_models/t.bin").exists()


def test_server_errors_are_retried_until_success(models_run: dict[str, Path]) -> None:
    """Two 500s and a 503 are retried with backoff, then the file verifies."""
    data = blob(100_000)
    with file_server({"e.bin": FakeFile(data, fail_first=3)}) as server:
        server.files["e.bin"].fail_status = 503
        manifest = write_manifest(models_run["manifest"], server, [{"name": "e.bin"}])
        code = run(manifest, models_run["dir"])
    assert code == 0
    assert (models_run["dir"] / "diffusion_models/e.bin").read_bytes() == data


def test_gated_model_without_token_names_model_and_hf_token(
    models_run: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """401 on a gated model exits 4 with a message naming the model and HF_TOKEN."""
    with file_server({"gated.bin": FakeFile(blob(1000), token="hf_right")}) as server:
        manifest = write_manifest(
            models_run["manifest"], server, [{"name": "gated.bin", "gated": True}]
        )
        with caplog.at_level(logging.ERROR, logger="worker.models"):
            code = run(manifest, models_run["dir"])
    assert code == models.EXIT_AUTH
    assert "gated.bin" in caplog.text
    assert "HF_TOKEN" in caplog.text


def test_token_goes_to_the_hub_only_and_never_into_logs(
    models_run: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """HF_TOKEN is sent to the hub host, stripped on the CDN redirect, and never logged."""
    data = blob(100_000)
    with file_server({"g.bin": FakeFile(data, token="hf_secret_value")}) as server:
        manifest = write_manifest(models_run["manifest"], server, [{"name": "g.bin"}])
        env = {"HF_TOKEN": "hf_secret_value", "HF_ENDPOINT": server.base_url}
        with caplog.at_level(logging.DEBUG, logger="worker.models"):
            code = run(manifest, models_run["dir"], env=env)
        hub = [r for r in server.requests if r.path.startswith("/resolve/")]
        cdn = [r for r in server.requests if r.path.startswith("/cdn/")]
    assert code == 0
    assert all(r.authorization == "Bearer hf_secret_value" for r in hub)
    assert cdn
    assert all(r.authorization is None for r in cdn)
    assert "hf_secret_value" not in caplog.text
    assert "SECRET-SIGNATURE" not in caplog.text


def test_token_is_not_sent_to_other_hosts(models_run: dict[str, Path]) -> None:
    """Without HF_ENDPOINT naming it, a non-Hugging-Face host never sees the bearer."""
    with file_server({"o.bin": FakeFile(blob(1000))}) as server:
        manifest = write_manifest(models_run["manifest"], server, [{"name": "o.bin"}])
        code = run(manifest, models_run["dir"], env={"HF_TOKEN": "hf_secret_value"})
        seen = {r.authorization for r in server.requests}
    assert code == 0
    assert seen == {None}


def test_not_enough_disk_stops_before_downloading(models_run: dict[str, Path]) -> None:
    """When the announced sizes exceed free space, exit 3 without fetching any body."""
    huge = FakeFile(blob(1000), advertised_size=10**15)
    with file_server({"big.bin": huge}) as server:
        manifest = write_manifest(models_run["manifest"], server, [{"name": "big.bin"}])
        code = run(manifest, models_run["dir"])
        gets = server.body_gets("big.bin")
    assert code == models.EXIT_NO_SPACE
    assert [g for g in gets if "/cdn/" in g.path] == []


def test_verified_files_are_skipped_without_requests_or_rehash(
    models_run: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second run trusts the stamp: no HTTP request and no hashing of the file."""
    data = blob(100_000)
    with file_server({"s.bin": FakeFile(data)}) as server:
        manifest = write_manifest(models_run["manifest"], server, [{"name": "s.bin"}])
        assert run(manifest, models_run["dir"]) == 0
        before = len(server.requests)

        def no_hash(*_args: object, **_kwargs: object) -> None:
            raise AssertionError("re-hashed a stamped file")

        monkeypatch.setattr(models, "sha256_file", no_hash)
        assert run(manifest, models_run["dir"]) == 0
        assert len(server.requests) == before


def test_changed_file_loses_its_stamp_and_is_replaced(models_run: dict[str, Path]) -> None:
    """A published file altered on disk (size/mtime change) is re-verified and re-fetched."""
    data = blob(100_000)
    with file_server({"m.bin": FakeFile(data)}) as server:
        manifest = write_manifest(models_run["manifest"], server, [{"name": "m.bin"}])
        assert run(manifest, models_run["dir"]) == 0
        target = models_run["dir"] / "diffusion_models/m.bin"
        target.write_bytes(b"garbage" + data[7:])
        os.utime(target, ns=(1, 1))
        assert run(manifest, models_run["dir"]) == 0
    assert target.read_bytes() == data


def test_manifest_hash_disagreeing_with_hub_fails_loudly(models_run: dict[str, Path]) -> None:
    """A pinned sha256 the hub contradicts stops that model; nothing is published."""
    with file_server({"x.bin": FakeFile(blob(1000))}) as server:
        manifest = write_manifest(
            models_run["manifest"], server, [{"name": "x.bin", "sha256": "0" * 64}]
        )
        code = run(manifest, models_run["dir"])
    assert code == models.EXIT_FAILED
    assert not (models_run["dir"] / "diffusion_models/x.bin").exists()


def test_downloads_run_in_parallel_up_to_the_limit(models_run: dict[str, Path]) -> None:
    """With --parallel 3 three bodies stream at once; with --parallel 1 only one does."""
    names = [f"p{i}.bin" for i in range(4)]
    for parallel, expected in (("3", 3), ("1", 1)):
        files = {
            n: FakeFile(blob(400_000, seed=i), delay_per_chunk=0.02) for i, n in enumerate(names)
        }
        target_dir = models_run["dir"] / parallel
        with file_server(files) as server:
            manifest = write_manifest(models_run["manifest"], server, [{"name": n} for n in names])
            assert run(manifest, target_dir, "--parallel", parallel) == 0
            assert server.max_active == expected


def test_verify_only_reports_missing_then_accepts_downloaded(models_run: dict[str, Path]) -> None:
    """--verify-only exits 5 while a model is missing and 0 once it is verified, offline."""
    data = blob(10_000)
    with file_server({"v.bin": FakeFile(data)}) as server:
        manifest = write_manifest(models_run["manifest"], server, [{"name": "v.bin"}])
        assert run(manifest, models_run["dir"], "--verify-only") == models.EXIT_UNVERIFIED
        assert server.requests == []
        assert run(manifest, models_run["dir"]) == 0
        count = len(server.requests)
        assert run(manifest, models_run["dir"], "--verify-only") == 0
        assert len(server.requests) == count


def test_verify_only_hashes_unstamped_file_against_pinned_sha(models_run: dict[str, Path]) -> None:
    """A file copied in without a stamp passes --verify-only only if it matches the pin."""
    data = blob(10_000)
    manifest = models_run["manifest"]
    sha = hashlib.sha256(data).hexdigest()
    manifest.write_text(
        f'[[model]]\nname = "k"\nurl = "http://127.0.0.1:9/k"\npath = "vae/k"\n'
        f'sha256 = "{sha}"\ngroups = ["g"]\n'
    )
    target = models_run["dir"] / "vae/k"
    target.parent.mkdir(parents=True)
    target.write_bytes(data[:-1] + b"!")
    assert run(manifest, models_run["dir"], "--verify-only") == models.EXIT_UNVERIFIED
    target.write_bytes(data)
    assert run(manifest, models_run["dir"], "--verify-only") == 0


def test_shell_wrapper_runs_the_cli_like_a_pod_would(tmp_path: Path) -> None:
    """download_models.sh --help documents exit codes; --list honours MODEL_GROUPS."""
    script = REPO / "image" / "download_models.sh"
    env = {"PATH": os.environ["PATH"], "PYTHON": sys.executable, "MODEL_GROUPS": "flux_dev_fp8"}
    env["MODELS_DIR"] = str(tmp_path)
    helped = subprocess.run(
        [str(script), "--help"], env=env, capture_output=True, text=True, check=False
    )
    assert helped.returncode == 0
    assert "exit codes" in helped.stdout
    listed = subprocess.run(
        [str(script), "--list"], env=env, capture_output=True, text=True, check=False
    )
    assert listed.returncode == 0
    assert listed.stdout.split("\t")[1] == "checkpoints/flux1-dev-fp8.safetensors"


def test_redact_removes_signed_queries_and_secrets() -> None:
    """Error text from the HTTP stack loses query strings and the token."""
    text = "Max retries exceeded with url: /x?X-Amz-Signature=abc (https://cdn.h/x?sig=1 tok)"
    cleaned = models.redact(text, ["tok"])
    assert "abc" not in cleaned
    assert "sig=1" not in cleaned
    assert "tok" not in cleaned


def test_stalled_transfer_times_out_and_resumes(models_run: dict[str, Path]) -> None:
    """A server that stops sending mid-body hits the read timeout; the retry resumes."""
    data = blob(3_000_000)
    fake = FakeFile(data, stall_after=2_000_000, stall_seconds=3.0)
    with file_server({"st.bin": fake}) as server:
        manifest = write_manifest(models_run["manifest"], server, [{"name": "st.bin"}])
        code = run(manifest, models_run["dir"], "--read-timeout", "0.5")
        gets = server.body_gets("st.bin")
    assert code == 0
    assert (models_run["dir"] / "diffusion_models/st.bin").read_bytes() == data
    assert len(gets) == 2
    assert gets[1].range is not None


def test_stamp_survives_mtime_truncated_to_whole_seconds(
    models_run: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Models baked into an image come back with whole-second mtimes and stay trusted."""
    data = blob(10_000)
    with file_server({"b.bin": FakeFile(data)}) as server:
        manifest = write_manifest(models_run["manifest"], server, [{"name": "b.bin"}])
        assert run(manifest, models_run["dir"]) == 0
        target = models_run["dir"] / "diffusion_models/b.bin"
        seconds = target.stat().st_mtime_ns // 10**9
        os.utime(target, ns=(seconds * 10**9, seconds * 10**9))

        def no_hash(*_args: object, **_kwargs: object) -> None:
            raise AssertionError("re-hashed a stamped file")

        monkeypatch.setattr(models, "sha256_file", no_hash)
        assert run(manifest, models_run["dir"], "--verify-only") == 0


def test_verify_only_rechecks_a_touched_file_against_its_stamped_hash(
    models_run: dict[str, Path],
) -> None:
    """A file whose mtime changed is re-hashed against the stamp; a corrupted one fails."""
    data = blob(10_000)
    with file_server({"t.bin": FakeFile(data)}) as server:
        # No sha256 in the manifest: the hub's X-Linked-Etag verified it and the stamp kept it.
        manifest = write_manifest(models_run["manifest"], server, [{"name": "t.bin"}])
        assert run(manifest, models_run["dir"]) == 0
    target = models_run["dir"] / "diffusion_models/t.bin"
    os.utime(target, ns=(10**9, 10**9))
    assert run(manifest, models_run["dir"], "--verify-only") == 0
    target.write_bytes(data[:-1] + b"\x00")
    os.utime(target, ns=(2 * 10**9, 2 * 10**9))
    assert run(manifest, models_run["dir"], "--verify-only") == models.EXIT_UNVERIFIED


class _Hop:
    """A loopback server that records Authorization headers and answers with a script."""

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler], None]) -> None:
        self.authorizations: list[str | None] = []
        hop = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                hop.authorizations.append(self.headers.get("Authorization"))
                answer(self)

            do_GET = do_HEAD = _any  # noqa: N815 - stdlib names

            def log_message(self, *_: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_token_never_follows_a_redirect_to_another_port_of_the_same_host(
    models_run: dict[str, Path],
) -> None:
    """The hub (HF_ENDPOINT) redirecting to the same host name on another port: the HEAD
    probe and the GET both leave the bearer behind."""
    data = blob(3000)

    def serve(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if request.command == "GET":
            request.wfile.write(data)

    other = _Hop(serve)

    def bounce(request: BaseHTTPRequestHandler) -> None:
        request.send_response(302)
        request.send_header("Location", f"http://127.0.0.1:{other.port}/blob")
        request.send_header("Content-Length", "0")
        request.end_headers()

    hub = _Hop(bounce)
    try:
        url = f"http://127.0.0.1:{hub.port}/resolve/x.bin"
        models_run["manifest"].write_text(
            f'[[model]]\nname = "x.bin"\nurl = "{url}"\npath = "vae/x.bin"\ngroups = ["g"]\n'
            f'sha256 = "{hashlib.sha256(data).hexdigest()}"\n'
        )
        env = {"HF_TOKEN": "hf_secret_value", "HF_ENDPOINT": f"http://127.0.0.1:{hub.port}"}
        code = run(models_run["manifest"], models_run["dir"], env=env)
    finally:
        hub.close()
        other.close()
    assert code == 0
    assert set(hub.authorizations) == {"Bearer hf_secret_value"}
    assert other.authorizations
    assert set(other.authorizations) == {None}


def test_partial_without_a_known_sha256_is_fetched_again_not_resumed(
    models_run: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A .partial whose bytes nothing can verify (no sha256 anywhere) is never published."""
    data = blob(300_000)
    partial = models_run["dir"] / "diffusion_models/u.bin.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\xff" * 150_000)  # wrong bytes from an earlier, broken run
    with file_server({"u.bin": FakeFile(data, linked=False)}) as server:
        manifest = write_manifest(models_run["manifest"], server, [{"name": "u.bin"}])
        code = run(manifest, models_run["dir"])
        gets = server.body_gets("u.bin")
    assert code == 0
    assert [g.range for g in gets] == [None]
    assert (models_run["dir"] / "diffusion_models/u.bin").read_bytes() == data
    assert "starting over instead of resuming" in caplog.text


@pytest.mark.parametrize("path", ["", "diffusion_models/", ".", "loras/.", "  "])
def test_empty_or_folder_like_manifest_paths_are_refused(
    models_run: dict[str, Path], path: str
) -> None:
    """A path that names no file is a manifest error (exit 2), never a download."""
    with file_server({"e.bin": FakeFile(blob(10))}) as server:
        manifest = write_manifest(models_run["manifest"], server, [{"name": "e.bin", "path": path}])
        code = run(manifest, models_run["dir"])
        requests_seen = list(server.requests)
    assert code == models.EXIT_USAGE
    assert requests_seen == []
