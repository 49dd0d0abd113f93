"""The handler probed as an attacker or a retrying app would: every probe is refused as
``validation`` (or contained), no request reaches loopback or link-local addresses, a job
sees only its own inputs, and the same job twice succeeds twice.

Loopback servers stand in for the internet. Production fetches allow public addresses only;
these tests allow exactly the ``(127.0.0.1, port)`` of a server they mean to reach, through
``worker.fetch.ADDRESS_POLICY`` (code only: no environment variable can do that).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import json
import logging
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from worker import fetch
from worker.handler import OutputFile, Run, _upload_one, handler, image_size
from worker.r2 import R2Settings, make_client

from tests.fakes.comfyui import ComfyUIDouble, tiny_png
from tests.fakes.s3 import list_objects
from tests.image.handler_support import PNG, PNG_B64, WEIGHTS_FREE


class Server:
    """A loopback HTTP server whose answers a test scripts; it counts what reached it."""

    def __init__(self, answer: Any) -> None:
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits.append(self.path)
                answer(self)

            def log_message(self, *_: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers a test starts; closed at the end."""
    started: list[Server] = []
    yield started
    for server in started:
        server.close()


def serve(servers: list[Server], answer: Any) -> Server:
    server = Server(answer)
    servers.append(server)
    return server


def png_answer(body: bytes = PNG) -> Any:
    def answer(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "image/png")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return answer


def redirect_to(location: str) -> Any:
    def answer(request: BaseHTTPRequestHandler) -> None:
        request.send_response(302)
        request.send_header("Location", location)
        request.send_header("Content-Length", "0")
        request.end_headers()

    return answer


def allow(monkeypatch: pytest.MonkeyPatch, *ports: int) -> None:
    """Let fetches reach exactly these loopback ports."""
    monkeypatch.setattr(
        fetch,
        "ADDRESS_POLICY",
        fetch.AddressPolicy(allowed_for_tests=frozenset(("127.0.0.1", p) for p in ports)),
    )


@pytest.fixture
def worker_env(worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch) -> R2Settings:
    """The worker pointed at the double and a fresh bucket; http allowed for loopback tests."""
    monkeypatch.setenv("INPUT_URL_ALLOW_HTTP", "1")
    return worker_env


def url_job(url: str, job_id: str = "job-1") -> dict[str, Any]:
    return {
        "id": job_id,
        "input": {"template": "remove_background", "images": [{"name": "in.png", "image": url}]},
    }


# -- item 6: the handler fetches only what it should ---------------------------------------


def test_redirect_to_loopback_is_refused_and_never_followed(
    comfy: ComfyUIDouble,
    worker_env: R2Settings,
    servers: list[Server],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An allowed server answering 302 to another loopback port: that port sees nothing."""
    internal = serve(servers, png_answer())
    bouncer = serve(servers, redirect_to(f"{internal.url}/admin"))
    allow(monkeypatch, bouncer.port)
    result = handler(url_job(f"{bouncer.url}/a.png"))
    assert result["error_type"] == "validation", result
    assert bouncer.hits == ["/a.png"]
    assert internal.hits == []
    assert comfy.uploads == []


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://10.0.0.1/",
        "http://localhost:{port}/x.png",
        "http://127.0.0.1:{port}/x.png",
        "http://[::1]:{port}/x.png",
    ],
)
def test_private_link_local_and_metadata_addresses_are_refused(
    target: str,
    comfy: ComfyUIDouble,
    worker_env: R2Settings,
    servers: list[Server],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Named directly or through a redirect, such hosts are refused before any connection."""
    canary = serve(servers, png_answer())
    bouncer = serve(servers, redirect_to(target.format(port=canary.port)))
    allow(monkeypatch, bouncer.port)
    for url in (target.format(port=canary.port), f"{bouncer.url}/go"):
        started = time.monotonic()
        result = handler(url_job(url))
        assert result["error_type"] == "validation", (url, result)
        assert time.monotonic() - started < 5  # refused, not timed out against an address
    assert canary.hits == []
    assert comfy.prompts == []


def test_errors_do_not_tell_an_open_port_from_a_closed_one(
    worker_env: R2Settings, servers: list[Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A port that answers (404), one that is closed, one not allowed: the same words."""

    def not_found(request: BaseHTTPRequestHandler) -> None:
        request.send_response(404)
        request.send_header("Content-Length", "0")
        request.end_headers()

    open_port = serve(servers, not_found)
    closed = Server(png_answer())
    closed.close()
    allow(monkeypatch, open_port.port, closed.port)
    texts = []
    for port in (open_port.port, closed.port, 9):
        result = handler(url_job(f"http://127.0.0.1:{port}/x.png"))
        texts.append(result["error"].replace(str(port), "<port>"))
    assert texts[0] == texts[1] == texts[2]
    assert "could not download" in texts[0]


def test_query_strings_never_appear_in_errors_or_logs(
    worker_env: R2Settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Presigned URLs carry their signature in the query: it is redacted everywhere."""
    allow(monkeypatch)
    secret = "X-Amz-Signature=0123456789abcdef0123456789abcdef"
    for url in (
        f"https://127.0.0.1:9/img.png?{secret}",
        f"http://user:pass@127.0.0.1:9/img.png?{secret}",
    ):
        result = handler(url_job(url))
        assert result["error_type"] == "validation"
        assert secret not in result["error"]
        assert "pass@" not in result["error"]
        assert "?<redacted>" in result["error"]
    monkeypatch.delenv("INPUT_URL_ALLOW_HTTP")
    result = handler(url_job(f"http://example.com/a.png?{secret}"))
    assert "only https" in result["error"]
    assert secret not in result["error"]
    assert not any(secret in record.getMessage() for record in caplog.records)


def test_a_url_with_spaces_is_fetched_and_its_query_never_logged(
    comfy: ComfyUIDouble,
    worker_env: R2Settings,
    servers: list[Server],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Apps send URLs with spaces unencoded: they are percent-encoded (as requests did), not
    refused by http.client with an error text that quoted the query into the worker log."""
    server = serve(servers, png_answer())
    allow(monkeypatch, server.port)
    caplog.set_level(logging.INFO)
    secret = "X-Amz-Signature=0123456789abcdef"
    result = handler(url_job(f"{server.url}/in put.png?{secret} x"))
    assert not any(secret in record.getMessage() for record in caplog.records)
    assert "error" not in result, result
    assert server.hits == ["/in%20put.png?X-Amz-Signature=0123456789abcdef%20x"]


def test_a_slow_server_cannot_outlast_the_job_timeout(
    worker_env: R2Settings, servers: list[Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One byte every 0.2 s: the download ends at JOB_TIMEOUT_S, not when the body does."""

    def drip(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Length", str(len(PNG) + 1000))
        request.end_headers()
        try:
            for byte in PNG + bytes(1000):
                request.wfile.write(bytes([byte]))
                request.wfile.flush()
                time.sleep(0.2)
        except OSError:
            return

    slow = serve(servers, drip)
    allow(monkeypatch, slow.port)
    monkeypatch.setenv("JOB_TIMEOUT_S", "2")
    started = time.monotonic()
    result = handler(url_job(f"{slow.url}/slow.png"))
    assert result["error_type"] == "validation", result
    assert time.monotonic() - started < 4


def test_a_server_dripping_its_headers_cannot_outlast_the_job_timeout(
    worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each header byte arrives within the socket timeout, so only the deadline's watchdog
    ends the request: at JOB_TIMEOUT_S, not after the 10 s per-read timeout or later."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        with contextlib.suppress(OSError):
            client, _ = listener.accept()
            with client:
                client.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 600:
                    if stop.is_set():
                        return
                    client.sendall(bytes([byte]))
                    time.sleep(0.05)

    threading.Thread(target=drip, daemon=True).start()
    allow(monkeypatch, listener.getsockname()[1])
    monkeypatch.setenv("JOB_TIMEOUT_S", "2")
    started = time.monotonic()
    try:
        result = handler(url_job(f"http://127.0.0.1:{listener.getsockname()[1]}/slow.png"))
    finally:
        stop.set()
        listener.close()
    assert result["error_type"] == "validation", result
    assert time.monotonic() - started < 4


def test_each_redirect_hop_is_checked_and_a_good_chain_still_works(
    comfy: ComfyUIDouble,
    worker_env: R2Settings,
    servers: list[Server],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A CDN-style redirect between two allowed hosts is followed; too many hops are not."""
    origin = serve(servers, png_answer())
    hop = serve(servers, redirect_to(f"{origin.url}/final.png"))
    allow(monkeypatch, origin.port, hop.port)
    result = handler(url_job(f"{hop.url}/start.png"))
    assert "error" not in result, result
    loop = serve(servers, redirect_to("/again"))
    allow(monkeypatch, loop.port)
    result = handler(url_job(f"{loop.url}/again", job_id="job-2"))
    assert result["error_type"] == "validation"
    assert len(loop.hits) == fetch.MAX_REDIRECTS + 1


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate (and key) for IP 127.0.0.1, in PEM files under ``folder``."""
    # cryptography comes with moto (a test dependency that requires it).
    from cryptography import x509  # noqa: PLC0415 - only this helper needs it
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_https_on_the_default_port_sends_the_host_a_presigned_url_was_signed_for(
    comfy: ComfyUIDouble,
    worker_env: R2Settings,
    servers: list[Server],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """``https://host/...`` is fetched with ``Host: host``, not ``host:443``: SigV4 presigned
    URLs sign the host without the default port and S3-compatible stores compare it as sent."""
    seen: list[tuple[str, str]] = []

    def answer(request: BaseHTTPRequestHandler) -> None:
        seen.append((request.headers.get("Host", ""), request.path))
        png_answer()(request)

    server = serve(servers, answer)
    cert_file, key_file = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
    monkeypatch.setattr(fetch.certifi, "where", lambda: str(cert_file))
    allow(monkeypatch, 443)
    connect = socket.create_connection

    def to_test_server(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        if address == ("127.0.0.1", 443):  # the URL's default port, served by the test server
            address = ("127.0.0.1", server.port)
        return connect(address, *args, **kwargs)

    monkeypatch.setattr(fetch.socket, "create_connection", to_test_server)
    result = handler(url_job("https://127.0.0.1/in.png?X-Amz-Signature=abcd"))
    assert "error" not in result, result
    assert seen == [("127.0.0.1", "/in.png?X-Amz-Signature=abcd")]


def test_the_address_policy_cannot_be_loosened_from_the_environment() -> None:
    """Production policy is public-only; only code (a test) can add exact pairs."""
    assert fetch.ADDRESS_POLICY == fetch.PUBLIC_ONLY
    assert fetch.PUBLIC_ONLY.allowed_for_tests == frozenset()
    for text in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "100.64.0.1", "::1", "fe80::1"):
        assert not fetch.is_public(fetch.ipaddress.ip_address(text)), text
    for text in ("::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "0.0.0.0"):
        assert not fetch.is_public(fetch.ipaddress.ip_address(text)), text
    assert fetch.is_public(fetch.ipaddress.ip_address("1.1.1.1"))
    source = Path(fetch.__file__).read_text()
    assert "os.environ" not in source
    assert "getenv" not in source


@pytest.mark.parametrize(
    "host", ["[::127.0.0.1]", "[::a9fe:a9fe]", "[::10.0.0.1]", "[fec0::1]", "[5f00::1]"]
)
def test_ipv4_compatible_and_other_reserved_ipv6_forms_are_never_connected_to(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``::127.0.0.1`` (IPv4-compatible: automatic 6in4 tunnels route it to the embedded
    IPv4 host), deprecated site-local and reserved IPv6 are refused before any connection."""
    attempts: list[Any] = []
    monkeypatch.setattr(fetch.socket, "create_connection", lambda *a, **k: attempts.append(a))
    with pytest.raises(fetch.FetchError, match="refused address"):
        fetch.fetch(f"https://{host}/x.png", limit=100, deadline=time.monotonic() + 5)
    assert attempts == []


# -- item 7: jobs are isolated -------------------------------------------------------------


def test_a_job_cannot_read_another_jobs_input(
    comfy: ComfyUIDouble, worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inputs live in a per-run folder, are deleted at the end, and cannot be named later."""
    monkeypatch.setenv("COMFY_OUTPUT_DIR", str(comfy.output_dir))
    monkeypatch.setenv("COMFY_INPUT_DIR", str(comfy.input_dir))
    first = handler(
        {
            "id": "victim",
            "input": {
                "template": "remove_background",
                "images": [{"name": "secret.png", "image": PNG_B64}],
            },
        }
    )
    assert "error" not in first, first
    stored = comfy.prompts[0]["prompt"]["1"]["inputs"]["image"]
    assert stored.startswith("jobs/victim-")
    assert list(comfy.input_dir.rglob("secret.png")) == []  # deleted when the job ended
    graph = json.loads(json.dumps(WEIGHTS_FREE))
    graph["4"] = {"class_type": "LoadImage", "inputs": {"image": stored}}
    graph["5"] = {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "x"}}
    result = handler({"id": "thief", "input": {"workflow": graph}})
    assert result["error_type"] == "validation", result
    assert "another job" in result["error"]


@pytest.mark.parametrize(
    "name",
    [
        "jobs/victim-1234abcd/secret.png",
        "./jobs/victim-1234abcd/secret.png",
        ".//jobs/victim-1234abcd/secret.png",
        "././jobs/victim-1234abcd/secret.png",
    ],
)
def test_another_runs_input_cannot_be_named_in_any_spelling(
    name: str, comfy: ComfyUIDouble, worker_env: R2Settings
) -> None:
    """A run still in progress (or kept on a remote input folder) has its inputs under
    ``jobs/``; ComfyUI resolves ``./jobs/...`` to the same file, so every spelling is refused."""
    victim = comfy.input_dir / "jobs" / "victim-1234abcd"
    victim.mkdir(parents=True)
    (victim / "secret.png").write_bytes(PNG)
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "o"}},
    }
    result = handler({"id": "thief", "input": {"workflow": graph}})
    assert result["error_type"] == "validation", result
    assert "another job" in result["error"]
    assert comfy.prompts == []


@pytest.mark.parametrize(
    "name",
    [
        "/etc/passwd",
        "../output/t_00001_.png",
        "t_00001_.png [output]",
        "example.png [input]",
        "sub/../../x.png",
        "C:\\\\x.png",
    ],
)
def test_raw_workflow_file_inputs_that_escape_are_refused(
    name: str, comfy: ComfyUIDouble, worker_env: R2Settings
) -> None:
    """Absolute, ``..`` and annotated names, which ComfyUI itself accepts, never reach it."""
    (comfy.output_dir / "t_00001_.png").write_bytes(PNG)
    (comfy.input_dir / "example.png").write_bytes(PNG)
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "o"}},
    }
    result = handler({"id": "j", "input": {"workflow": graph}})
    assert result["error_type"] == "validation", result
    assert comfy.prompts == []


def test_save_prefix_that_leaves_the_output_folder_is_refused(
    comfy: ComfyUIDouble, worker_env: R2Settings
) -> None:
    """filename_prefix "../../x" fails validation before ComfyUI runs anything."""
    graph = json.loads(json.dumps(WEIGHTS_FREE))
    graph["3"]["inputs"]["filename_prefix"] = "../../planted"
    result = handler({"id": "j", "input": {"workflow": graph}})
    assert result["error_type"] == "validation"
    assert comfy.prompts == []


def test_names_with_a_trailing_newline_are_refused(rejecting_env: ComfyUIDouble) -> None:
    """``ok.png\\n`` no longer slips past the name check (``$`` before a newline)."""
    result = handler(
        {
            "id": "j",
            "input": {
                "template": "remove_background",
                "images": [{"name": "ok.png\n", "image": PNG_B64}],
            },
        }
    )
    assert result["error_type"] == "validation"
    assert "plain file name" in result["error"]


def _png_claiming(width: int, height: int) -> bytes:
    real = tiny_png()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return real[:8] + ihdr + real[33:]


def test_a_header_claiming_huge_dimensions_is_refused_before_decoding(
    comfy: ComfyUIDouble, worker_env: R2Settings
) -> None:
    """A 60000x60000 PNG header (a decompression bomb) never reaches ComfyUI."""
    bomb = base64.b64encode(_png_claiming(60000, 60000)).decode()
    result = handler(
        {
            "id": "j",
            "input": {
                "template": "remove_background",
                "images": [{"name": "b.png", "image": bomb}],
            },
        }
    )
    assert result["error_type"] == "validation"
    assert "60000x60000" in result["error"]
    assert "MAX_INPUT_PIXELS" in result["error"]
    assert comfy.uploads == []


def test_image_size_reads_every_supported_header() -> None:
    """PNG, GIF, JPEG (SOF after APP segments) and the three WebP flavours."""
    assert image_size(_png_claiming(640, 480)) == (640, 480)
    assert image_size(b"GIF89a" + struct.pack("<HH", 320, 200) + bytes(10)) == (320, 200)
    jpeg = (
        b"\xff\xd8\xff\xe0"
        + struct.pack(">H", 16)
        + bytes(14)
        + b"\xff\xc0"
        + struct.pack(">HBHH", 17, 8, 1080, 1920)
        + bytes(12)
    )
    assert image_size(jpeg) == (1920, 1080)
    vp8x = b"RIFF" + bytes(4) + b"WEBPVP8X" + bytes(8) + (4095).to_bytes(3, "little") * 2
    assert image_size(vp8x) == (4096, 4096)
    assert image_size(b"not an image") is None


# -- item 8: repeated jobs work --------------------------------------------------------------


def test_the_same_job_twice_on_a_warm_worker_succeeds_twice(
    comfy: ComfyUIDouble, worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ComfyUI's cache answers the repeat; the handler still returns fresh files and keys."""
    monkeypatch.setenv("COMFY_OUTPUT_DIR", str(comfy.output_dir))
    job = {"template": "flux_txt2img", "params": {"prompt": "a potion", "seed": 7}}
    first = handler({"id": "app-request-1", "input": job})
    second = handler({"id": "app-request-2", "input": job})
    assert "error" not in first, first
    assert "error" not in second, second
    (one,), (two,) = first["outputs"], second["outputs"]
    assert one["key"].startswith("test/jobs/app-request-1/")
    assert two["key"].startswith("test/jobs/app-request-2/")
    stored = list_objects(worker_env)
    assert {one["key"], two["key"]} <= set(stored)
    messages = comfy.history()[second["prompt_id"]]["status"]["messages"]
    cached_nodes = next(data["nodes"] for kind, data in messages if kind == "execution_cached")
    assert cached_nodes  # the sampler and everything before it came from the cache


def test_the_same_job_twice_succeeds_when_its_save_prefix_is_linked(
    comfy: ComfyUIDouble, worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filename_prefix that comes from another node cannot be moved under the run folder;
    the save node still runs again on the repeat (no cache hit naming deleted files)."""
    monkeypatch.setenv("COMFY_OUTPUT_DIR", str(comfy.output_dir))
    workflow = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "PrimitiveString", "inputs": {"value": "sprites/hero"}},
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["1", 0], "filename_prefix": ["2", 0]},
        },
    }
    first = handler({"id": "linked-1", "input": {"workflow": workflow}})
    second = handler({"id": "linked-2", "input": {"workflow": workflow}})
    assert "error" not in first, first
    assert "error" not in second, second
    (one,), (two,) = first["outputs"], second["outputs"]
    assert one["key"] == "test/jobs/linked-1/sprites/hero_00001_.png"
    assert two["key"] == "test/jobs/linked-2/sprites/hero_00001_.png"
    assert {one["key"], two["key"]} <= set(list_objects(worker_env))
    messages = comfy.history()[second["prompt_id"]]["status"]["messages"]
    cached_nodes = next(data["nodes"] for kind, data in messages if kind == "execution_cached")
    assert "3" not in cached_nodes  # the save node ran again ...
    assert {"1", "2"} <= set(cached_nodes)  # ... and only it: its inputs still come from cache
    assert workflow["3"]["inputs"] == {"images": ["1", 0], "filename_prefix": ["2", 0]}


def test_the_same_job_id_run_twice_never_overwrites_its_first_outputs(
    comfy: ComfyUIDouble, worker_env: R2Settings
) -> None:
    """RunPod retrying a job id: the second run's different bytes get their own key."""
    first = handler({"id": "retried", "input": {"workflow": WEIGHTS_FREE}})
    comfy.output_bytes = 5000  # the retry renders something else
    second = handler({"id": "retried", "input": {"workflow": WEIGHTS_FREE}})
    (one,), (two,) = first["outputs"], second["outputs"]
    assert one["key"] != two["key"]
    client = make_client(worker_env)
    body = client.get_object(Bucket=worker_env.bucket, Key=one["key"])["Body"].read()
    assert len(body) == one["bytes"] != two["bytes"]


def test_outputs_that_are_not_media_are_stored_as_downloads(
    comfy: ComfyUIDouble, worker_env: R2Settings
) -> None:
    """A page or SVG a custom node saved is uploaded as an attachment, never as a web page;
    media keep their type (the allowlist the sync daemon uses)."""
    run = Run.new("j")
    (comfy.output_dir / run.folder).mkdir(parents=True)
    for name, body in (
        ("page.html", b"<script>x()</script>"),
        ("i.svg", b"<svg/>"),
        ("a.png", PNG),
    ):
        (comfy.output_dir / run.folder / name).write_bytes(body)
    client = make_client(worker_env)
    for name, kind, wanted in (
        ("page.html", "image", ("application/octet-stream", "attachment")),
        ("i.svg", "image", ("application/octet-stream", "attachment")),
        ("a.png", "image", ("image/png", None)),
    ):
        item = OutputFile(
            node_id="9", filename=name, subfolder=run.folder, folder_type="output", kind=kind
        )
        record = _upload_one(item, comfy_url=comfy.url, r2=worker_env, run=run, expiry=60)
        head = client.head_object(Bucket=worker_env.bucket, Key=record["key"])
        assert (head["ContentType"], head.get("ContentDisposition")) == wanted, name
        assert record["content_type"] == wanted[0]
        assert record["key"] == f"test/jobs/j/{name}"
