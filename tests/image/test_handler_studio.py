"""Studio features end to end: LoRAs per job, upscaling, seeds per output, progress updates.

Against the ComfyUI double (which lists and reads the worker's loras folder from disk) and
moto's S3 server behind a counting proxy, with the real handler and the RunPod job stand-in.
"""

from __future__ import annotations

import base64
import dataclasses
import errno
import hashlib
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from worker import handler as handler_module
from worker import loras, templates
from worker.handler import Progress, handler
from worker.r2 import R2Settings, make_client

from ops import lora as ops_lora
from tests.fakes.comfyui import ComfyUIDouble, png_size, tiny_png
from tests.fakes.runpod_jobs import DEFAULT_API_KEY, JobApiEmulator
from tests.fakes.s3_proxy import FaultProxy, fault_proxy
from tests.image.handler_support import PNG_B64, point_worker_at
from tests.image.lora_support import safetensors_bytes

MODELS = {
    "checkpoints": ["flux1-dev-fp8.safetensors"],
    "upscale_models": [templates.UPSCALE_MODEL],
    "diffusion_models": [
        "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors",
        "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors",
    ],
    "text_encoders": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"],
    "vae": ["wan_2.1_vae.safetensors"],
    "loras": ["wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors"],
}


@dataclasses.dataclass
class Studio:
    """The rig: ComfyUI double, the bucket (direct and through the proxy), the models folder."""

    comfy: ComfyUIDouble
    proxy: FaultProxy
    bucket: R2Settings
    models_dir: Path

    @property
    def loras_dir(self) -> Path:
        return self.models_dir / "loras"

    def gets(self, key: str) -> int:
        """GETs of ``key`` that reached the bucket (HEADs are not downloads)."""
        return sum(1 for method, path in self.proxy.seen if method == "GET" and key in path)

    def put(self, key: str, data: bytes, **extra: Any) -> None:
        make_client(self.bucket).put_object(Bucket=self.bucket.bucket, Key=key, Body=data, **extra)

    def upload(self, tmp: Path, name: str, data: bytes) -> str:
        """What `python -m ops lora upload` does; returns the key it prints."""
        path = tmp / name
        path.write_bytes(data)
        sha256 = ops_lora.check_file(path)
        return ops_lora.upload(
            make_client(self.bucket), self.bucket.bucket, path, sha256=sha256
        ).key


@pytest.fixture
def studio(
    monkeypatch: pytest.MonkeyPatch, r2_bucket: R2Settings, s3_endpoint: str, tmp_path: Path
) -> Iterator[Studio]:
    """Worker environment: R2 through a counting proxy, MODELS_DIR shared with the double."""
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    with (
        fault_proxy(s3_endpoint) as proxy,
        ComfyUIDouble(models=MODELS, models_dir=models_dir) as comfy,
    ):
        point_worker_at(monkeypatch, comfy, dataclasses.replace(r2_bucket, endpoint=proxy.url))
        monkeypatch.setenv("MODELS_DIR", str(models_dir))
        yield Studio(comfy, proxy, r2_bucket, models_dir)


def _chain(graph: dict[str, Any], node: str) -> list[tuple[str, float]]:
    found: list[tuple[str, float]] = []
    source = graph[node]["inputs"]["model"]
    while graph[source[0]]["class_type"] == "LoraLoaderModelOnly":
        inputs = graph[source[0]]["inputs"]
        found.insert(0, (inputs["lora_name"], inputs["strength_model"]))
        source = inputs["model"]
    return found


def _flux(prompt: str, *lora_entries: dict[str, Any], **params: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "template": "flux_txt2img",
        "params": {"prompt": prompt, "seed": 11, **params},
    }
    if lora_entries:
        job["loras"] = list(lora_entries)
    return job


# -- LoRAs ----------------------------------------------------------------------------------
def test_a_flux_job_with_two_bucket_loras_runs_them_from_the_cache_and_reuses_it(
    studio: Studio, tmp_path: Path
) -> None:
    """Two LoRAs by key: the graph's model passes two LoraLoaderModelOnly nodes with those
    files and strengths; the files in the loras folder hold the bucket's bytes; a second job
    downloads nothing; an unknown key fails as validation naming it, before ComfyUI."""
    castle, ink = safetensors_bytes(1, floats=300), safetensors_bytes(2, floats=500)
    key_castle = studio.upload(tmp_path, "castle_style.safetensors", castle)  # sha256 metadata
    key_ink = "loras/ink/ink.safetensors"
    studio.put(key_ink, ink)  # a plain PUT: verified by its MD5 ETag
    job = _flux("a castle", {"key": key_castle, "strength": 0.6}, {"key": key_ink, "strength": 1.4})
    out = handler({"id": "lora-1", "input": job})
    assert "error" not in out, out
    graph = studio.comfy.prompts[-1]["prompt"]
    chain = _chain(graph, "6")
    assert [strength for _, strength in chain] == [0.6, 1.4]
    for (name, _), data in zip(chain, (castle, ink), strict=True):
        assert name.startswith("bucket/")
        assert (studio.loras_dir / name).read_bytes() == data
        assert ("loras", name, hashlib.sha256(data).hexdigest()) in studio.comfy.loaded_files
    assert (studio.gets(key_castle), studio.gets(key_ink)) == (1, 1)
    assert out["outputs"][0]["loras"] == [
        {"key": key_castle, "strength": 0.6, "sha256": hashlib.sha256(castle).hexdigest()},
        {"key": key_ink, "strength": 1.4},
    ]
    assert "lora_ms" in out["timings"]

    again = handler({"id": "lora-2", "input": _flux("a tower", *job["loras"])})
    assert "error" not in again, again
    assert _chain(studio.comfy.prompts[-1]["prompt"], "6") == chain
    assert (studio.gets(key_castle), studio.gets(key_ink)) == (1, 1)  # cache hit: HEAD only

    queued = len(studio.comfy.prompts)
    missing = "loras/nope/missing.safetensors"
    bad = handler({"id": "lora-3", "input": _flux("x", {"key": missing, "strength": 1.0})})
    assert bad["error_type"] == "validation"
    assert missing in bad["error"]
    assert len(studio.comfy.prompts) == queued


def test_lora_entries_are_checked_before_anything_runs(studio: Studio) -> None:
    """Bad keys, strengths, counts, experts and raw workflows are validation errors."""
    cases: list[tuple[dict[str, Any], str]] = [
        (_flux("x", {"key": "outputs/jobs/1/a.png"}), "must be an object key under loras/"),
        (_flux("x", {"key": "loras/../secret.safetensors"}), "must be an object key"),
        (_flux("x", {"key": "loras/a.safetensors", "strength": 2.5}), "from 0 to 2"),
        (_flux("x", {"key": "loras/a.safetensors", "name": "b"}), "exactly one of key"),
        (_flux("x", {"key": "loras/a.safetensors", "expert": "high"}), "only to WAN"),
        (_flux("x", *[{"name": "n"}] * 5), "at most 4"),
        (
            {"template": "upscale", "images": [{"name": "a.png", "image": PNG_B64}],
             "loras": [{"name": "x"}]},
            "takes no loras",
        ),
        (
            {"workflow": {"1": {"class_type": "EmptyImage", "inputs": {}}},
             "loras": [{"name": "x"}]},
            "only applies to a template",
        ),
    ]  # fmt: skip
    for payload, message in cases:
        out = handler({"id": "bad", "input": payload})
        assert out.get("error_type") == "validation", (payload, out)
        assert message in out["error"], (payload, out["error"])
    assert studio.comfy.prompts == []
    assert not any(method == "GET" for method, _ in studio.proxy.seen)


def test_loras_by_name_come_from_models_toml_and_missing_files_are_missing_model(
    studio: Studio,
) -> None:
    """A models.toml LoRA is named by its file; one not installed here is missing_model
    (ComfyUI's value_not_in_list); an unknown name is validation listing the known ones."""
    high = "wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise"
    out = handler({"id": "n1", "input": _flux("x", {"name": high, "strength": 0.5})})
    assert "error" not in out, out
    assert _chain(studio.comfy.prompts[-1]["prompt"], "6") == [(f"{high}.safetensors", 0.5)]
    low = "wan2.2_t2v_lightx2v_4steps_lora_v1.1_low_noise"
    out = handler({"id": "n2", "input": _flux("x", {"name": low})})
    assert out["error_type"] == "missing_model"
    assert f"{low}.safetensors" in out["error"]
    out = handler({"id": "n3", "input": _flux("x", {"name": "castle"})})
    assert out["error_type"] == "validation"
    assert "'castle' is not a LoRA in image/models.toml" in out["error"]
    assert high in out["error"]


def test_wan_jobs_take_loras_per_expert(studio: Studio, tmp_path: Path) -> None:
    """`expert: high` patches only the high-noise expert; the default patches both."""
    key = studio.upload(tmp_path, "motion.safetensors", safetensors_bytes(7))
    job = {
        "template": "wan22_t2v",
        "params": {"prompt": "a fox", "fast": False, "frames": 5, "width": 256, "height": 256},
        "loras": [{"key": key, "strength": 0.9, "expert": "high"}],
    }
    out = handler({"id": "wan-1", "input": job})
    assert "error" not in out, out
    graph = studio.comfy.prompts[-1]["prompt"]
    assert [s for _, s in _chain(graph, "5")] == [0.9]
    assert _chain(graph, "6") == []
    assert out["outputs"][0]["loras"][0]["expert"] == "high"


def test_a_damaged_or_foreign_lora_is_never_published(studio: Studio) -> None:
    """sha256 metadata that the bytes do not match: missing_model; bytes that are not
    safetensors: validation; neither leaves a file (or a partial) in the loras folder."""
    good = safetensors_bytes(3)
    studio.put("loras/x/damaged.safetensors", good + b"!", Metadata={"sha256": "0" * 64})
    out = handler({"id": "d1", "input": _flux("x", {"key": "loras/x/damaged.safetensors"})})
    assert out["error_type"] == "missing_model"
    assert "sha256" in out["error"]
    studio.put("loras/x/pickle.safetensors", b"PK\x03\x04 this is a zip of a pickle")
    out = handler({"id": "d2", "input": _flux("x", {"key": "loras/x/pickle.safetensors"})})
    assert out["error_type"] == "validation"
    assert "not a safetensors file" in out["error"]
    cache = studio.loras_dir / loras.CACHE_SUBDIR
    assert [p.name for p in cache.iterdir() if p.is_file()] == []
    assert list((cache / ".partial").iterdir()) == []
    assert studio.comfy.prompts == []


def _with_header(header: bytes, body: bytes = b"\0" * 8) -> bytes:
    return len(header).to_bytes(8, "little") + header + body


def test_a_crafted_safetensors_header_is_a_validation_error_not_a_crash(
    studio: Studio, tmp_path: Path
) -> None:
    """Offsets that are not integers, or a header nested past Python's recursion limit, are
    'not a safetensors file' (validation) for the worker and refused by `ops lora upload`."""
    crafted = {
        "strings": _with_header(b'{"t": {"dtype": "F32", "shape": [2], "data_offsets": ["0", 8]}}'),
        "floats": _with_header(b'{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0.5, 8]}}'),
        "bools": _with_header(b'{"t": {"dtype": "F32", "shape": [2], "data_offsets": [false, 8]}}'),
        "nested": _with_header(b"[" * 100_000 + b"]" * 100_000),
    }
    for name, data in crafted.items():
        key = f"loras/crafted/{name}.safetensors"
        studio.put(key, data)
        out = handler({"id": f"c-{name}", "input": _flux("x", {"key": key})})
        assert out.get("error_type") == "validation", (name, out)
        assert "not a safetensors file" in out["error"], (name, out["error"])
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data)
        with pytest.raises(ops_lora.LoraCommandError, match="not a valid safetensors file"):
            ops_lora.check_file(path)
    assert studio.comfy.prompts == []


def test_a_full_models_volume_fails_the_lora_as_missing_model_naming_the_cache(
    studio: Studio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills while a LoRA downloads (every other file of the cache in use, or the
    volume too small): missing_model naming the folder and the fix; nothing is published."""
    key = studio.upload(tmp_path, "big.safetensors", safetensors_bytes(14))
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if ".partial" in str(Path(f"/proc/self/fd/{fd}").readlink()):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = handler({"id": "full", "input": _flux("x", {"key": key})})
    assert out.get("error_type") == "missing_model", out
    assert "No space left on device" in out["error"]
    assert str(studio.loras_dir / loras.CACHE_SUBDIR) in out["error"]
    assert "LORA_CACHE_MAX_BYTES" in out["error"]
    cache = studio.loras_dir / loras.CACHE_SUBDIR
    assert [p.name for p in cache.iterdir() if p.is_file()] == []
    assert list((cache / ".partial").iterdir()) == []
    assert studio.comfy.prompts == []


def test_a_worker_without_a_models_folder_says_so(
    studio: Studio, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No MODELS_DIR and no LORAS_DIR: a key LoRA is missing_model naming the variables."""
    key = studio.upload(tmp_path, "a.safetensors", safetensors_bytes(4))
    monkeypatch.delenv("MODELS_DIR")
    out = handler({"id": "nodir", "input": _flux("x", {"key": key})})
    assert out["error_type"] == "missing_model"
    assert "MODELS_DIR" in out["error"]


def _cache(studio: Studio, **options: Any) -> loras.LoraCache:
    settings = {"max_bytes": 10**9, "max_file_bytes": 10**9} | options
    return loras.LoraCache(studio.loras_dir, **settings)


def _client(studio: Studio) -> Any:
    return make_client(dataclasses.replace(studio.bucket, endpoint=studio.proxy.url))


def test_parallel_jobs_asking_for_one_lora_download_it_once(studio: Studio) -> None:
    """Eight jobs at once want the same key: one GET, eight sessions on the same file."""
    data = safetensors_bytes(5, floats=200_000)  # 800 kB: the download takes a moment
    studio.put("loras/p/shared.safetensors", data)
    cache = _cache(studio)
    start = threading.Barrier(8)
    results: list[loras.CachedLora] = []
    errors: list[BaseException] = []

    def job() -> None:
        try:
            with cache.session() as session:
                start.wait()
                found = session.fetch(
                    _client(studio),
                    studio.bucket.bucket,
                    "loras/p/shared.safetensors",
                    deadline=time.monotonic() + 30,
                )
                results.append(found)
                assert found.path.read_bytes() == data
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=job) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert studio.gets("loras/p/shared.safetensors") == 1
    assert len({r.path for r in results}) == 1
    assert sorted(r.downloaded for r in results) == [False] * 7 + [True]


def test_a_lora_a_running_job_uses_is_shared_at_once_with_the_next_job(studio: Studio) -> None:
    """A job holding a cached LoRA (ComfyUI may still load it) does not make the next job on
    this worker (or another worker on the volume) wait for it to end: both use the file."""
    studio.put("loras/s/shared.safetensors", safetensors_bytes(12))
    cache = _cache(studio)
    client = _client(studio)
    with cache.session() as running:
        held = running.fetch(client, studio.bucket.bucket, "loras/s/shared.safetensors",
                             deadline=time.monotonic() + 30)  # fmt: skip
        assert held.downloaded
        started = time.monotonic()
        with cache.session() as next_job:
            again = next_job.fetch(client, studio.bucket.bucket, "loras/s/shared.safetensors",
                                   deadline=time.monotonic() + 2)  # fmt: skip
        assert time.monotonic() - started < 1.5
    assert (again.path, again.downloaded) == (held.path, False)
    assert studio.gets("loras/s/shared.safetensors") == 1


def test_one_job_may_name_the_same_lora_twice(
    studio: Studio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same key for WAN's high and low expert (two strengths): one download, two
    LoRA nodes on the one cached file, and no wait on the job's own lock."""
    monkeypatch.setenv("JOB_TIMEOUT_S", "5")
    key = studio.upload(tmp_path, "both.safetensors", safetensors_bytes(13))
    job = {
        "template": "wan22_t2v",
        "params": {"prompt": "a fox", "fast": False, "frames": 5, "width": 256, "height": 256},
        "loras": [
            {"key": key, "strength": 1.0, "expert": "high"},
            {"key": key, "strength": 0.5, "expert": "low"},
        ],
    }
    started = time.monotonic()
    out = handler({"id": "twice", "input": job})
    assert "error" not in out, out
    assert time.monotonic() - started < 4
    graph = studio.comfy.prompts[-1]["prompt"]
    (high,), (low,) = _chain(graph, "5"), _chain(graph, "6")
    assert high[0] == low[0]
    assert (high[1], low[1]) == (1.0, 0.5)
    assert studio.gets(key) == 1


def test_the_cache_evicts_least_recently_used_files_but_never_one_in_use(studio: Studio) -> None:
    """Past max_bytes the oldest-used file goes; a file a running job holds stays."""
    blobs = {name: safetensors_bytes(n, floats=250) for n, name in enumerate("abcd")}
    for name, data in blobs.items():
        studio.put(f"loras/e/{name}.safetensors", data)
    size = len(blobs["a"])
    cache = _cache(studio, max_bytes=2 * size, grace_s=0)
    client = _client(studio)

    def use(name: str) -> loras.CachedLora:
        with cache.session() as session:
            deadline = time.monotonic() + 30
            return session.fetch(client, studio.bucket.bucket, f"loras/e/{name}.safetensors",
                                 deadline=deadline)  # fmt: skip

    first = use("a")
    second = use("b")
    time.sleep(0.02)
    assert use("a").downloaded is False  # a is now the most recently used
    time.sleep(0.02)
    third = use("c")  # over the limit: b (least recently used) goes
    assert sorted(p.name for p in cache.entries()) == sorted([first.path.name, third.path.name])
    assert not second.path.exists()
    with cache.session() as holding:  # a running job holds b ...
        held = holding.fetch(client, studio.bucket.bucket, "loras/e/b.safetensors",
                             deadline=time.monotonic() + 30)  # fmt: skip
        others = [path for path in cache.entries() if path != held.path]
        assert len(others) == 1  # fetching b evicted a, the least recently used
        os.utime(held.path, (time.time() - 60, time.time() - 60))  # ... b is the oldest ...
        fourth = use("d")  # ... so d's download evicts the next oldest, never b
        assert held.path.exists()
        assert sorted(p.name for p in cache.entries()) == sorted([held.path.name, fourth.path.name])


def test_an_object_replaced_mid_download_is_not_mixed_into_the_cache(studio: Studio) -> None:
    """GET carries If-Match of the version HEAD saw: a key re-uploaded in between fails the
    job (missing_model, send it again) instead of caching bytes of the wrong version."""
    studio.put("loras/r/moving.safetensors", safetensors_bytes(10))
    real = _client(studio)

    class ReplacedAfterHead:
        def head_object(self, **kwargs: Any) -> Any:
            answer = real.head_object(**kwargs)
            studio.put("loras/r/moving.safetensors", safetensors_bytes(11))
            return answer

        def get_object(self, **kwargs: Any) -> Any:
            return real.get_object(**kwargs)

    cache = _cache(studio)
    with cache.session() as session, pytest.raises(loras.LoraError) as failed:
        session.fetch(
            ReplacedAfterHead(),  # type: ignore[arg-type]
            studio.bucket.bucket,
            "loras/r/moving.safetensors",
            deadline=time.monotonic() + 30,
        )
    assert failed.value.error_type == "missing_model"
    assert "replaced while this job downloaded it" in failed.value.message
    assert cache.entries() == []


def test_lora_keys_in_the_job_contract_match_what_ops_uploads(tmp_path: Path) -> None:
    """The key `ops lora upload` makes passes the handler's key check."""
    path = tmp_path / "My Castle (v2).safetensors"
    path.write_bytes(safetensors_bytes(9))
    key = ops_lora.key_for(path, hashlib.sha256(path.read_bytes()).hexdigest())
    assert key.startswith("loras/")
    assert key.endswith("/My_Castle__v2.safetensors")
    assert loras.KEY_PATTERN.fullmatch(key)


# -- upscaling ------------------------------------------------------------------------------
def _png(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` (pixels are one row: enough here)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 4)) + chunk(b"IEND", b"")
    )  # fmt: skip


def test_upscale_runs_end_to_end_and_returns_an_image_url(studio: Studio) -> None:
    """The upscale template: the x4plus model for scale 4, an image in the bucket, a URL."""
    job = {"template": "upscale", "params": {"scale": 4},
           "images": [{"name": "sprite.png", "image": PNG_B64}]}  # fmt: skip
    out = handler({"id": "up-1", "input": job})
    assert "error" not in out, out
    graph = studio.comfy.prompts[-1]["prompt"]
    assert graph["2"]["inputs"]["model_name"] == "RealESRGAN_x4plus.safetensors"
    (output,) = out["outputs"]
    assert output["kind"] == "image"
    assert requests.get(output["url"], timeout=10).status_code == 200
    assert output["seed"] is None  # nothing random in an upscale
    assert output["params"] == {"image": "sprite.png", "scale": 4}


def test_upscale_refuses_an_input_too_big_for_the_factor(studio: Studio) -> None:
    """2049x2048 at 4x would exceed 8192x8192: validation before ComfyUI sees it."""
    big = base64.b64encode(_png(2049, 2048)).decode()
    job = {"template": "upscale", "params": {"scale": 4},
           "images": [{"name": "big.png", "image": big}]}  # fmt: skip
    out = handler({"id": "up-2", "input": job})
    assert out["error_type"] == "validation"
    assert "8196x8192" in out["error"]
    assert studio.comfy.prompts == []


def test_txt2img_with_upscale_chains_real_esrgan_after_the_decode(studio: Studio) -> None:
    """`"upscale": 2` on flux_txt2img: UpscaleModelLoader(x4plus) + ImageUpscaleWithModel,
    halved by ImageScaleBy, feed SaveImage; the output's params say so."""
    out = handler({"id": "up-3", "input": _flux("a chest", upscale=2)})
    assert "error" not in out, out
    graph = studio.comfy.prompts[-1]["prompt"]
    halve = graph[graph["8"]["inputs"]["images"][0]]
    assert (halve["class_type"], halve["inputs"]["scale_by"]) == ("ImageScaleBy", 0.5)
    upscale = graph[halve["inputs"]["image"][0]]
    assert upscale["class_type"] == "ImageUpscaleWithModel"
    loader = graph[upscale["inputs"]["upscale_model"][0]]
    assert loader["inputs"]["model_name"] == "RealESRGAN_x4plus.safetensors"
    assert out["outputs"][0]["params"]["upscale"] == 2


@pytest.mark.parametrize("scale", [2, 4])
def test_an_upscale_job_returns_exactly_scale_times_the_input_size(
    studio: Studio, scale: int
) -> None:
    """A 24x16 input comes back 48x32 at scale 2 (the x4 model's 96x64, halved) and 96x64
    at scale 4: the stored PNG's own header says so."""
    sprite = base64.b64encode(tiny_png(size=24, height=16)).decode()
    job = {"template": "upscale", "params": {"scale": scale},
           "images": [{"name": "sprite.png", "image": sprite}]}  # fmt: skip
    out = handler({"id": f"up-size-{scale}", "input": job})
    assert "error" not in out, out
    (output,) = out["outputs"]
    body = requests.get(output["url"], timeout=10).content
    assert png_size(body) == (24 * scale, 16 * scale)


# -- seeds ----------------------------------------------------------------------------------
def test_each_image_of_a_batch_names_its_seed_and_the_params_that_remake_it(
    studio: Studio,
) -> None:
    """batch_size 3, seed 99: three outputs, each seed 99 with batch_index 0..2; sending
    output 2's params back makes image 2 alone (LatentFromBatch at index 2, same seed)."""
    out = handler({"id": "seed-1", "input": _flux("coins", seed=99, batch_size=3)})
    assert "error" not in out, out
    outputs = out["outputs"]
    assert [(o["seed"], o["batch_index"]) for o in outputs] == [(99, 0), (99, 1), (99, 2)]
    assert all(o["template"] == "flux_txt2img" for o in outputs)
    params = outputs[2]["params"]
    assert (params["seed"], params["batch_index"], params["batch_size"]) == (99, 2, 1)
    again = handler({"id": "seed-2", "input": {"template": "flux_txt2img", "params": params}})
    assert "error" not in again, again
    graph = studio.comfy.prompts[-1]["prompt"]
    assert graph["6"]["inputs"]["seed"] == 99
    pick = graph[graph["6"]["inputs"]["latent_image"][0]]
    assert (pick["class_type"], pick["inputs"]["batch_index"]) == ("LatentFromBatch", 2)
    assert [(o["seed"], o["batch_index"]) for o in again["outputs"]] == [(99, 2)]


def test_a_random_seed_is_reported_and_raw_workflows_report_their_samplers_seed(
    studio: Studio,
) -> None:
    """Without a seed the drawn one comes back; a raw workflow's output carries its
    KSampler's literal seed; a graph with no sampler says None."""
    out = handler({"id": "seed-3", "input": {"template": "flux_txt2img",
                                             "params": {"prompt": "x"}}})  # fmt: skip
    seed = out["outputs"][0]["seed"]
    assert isinstance(seed, int)
    assert studio.comfy.prompts[-1]["prompt"]["6"]["inputs"]["seed"] == seed
    workflow = templates.render(
        templates.TEMPLATES["flux_txt2img"], {"prompt": "p", "seed": 1234}
    ).graph
    out = handler({"id": "seed-4", "input": {"workflow": workflow}})
    assert out["outputs"][0]["seed"] == 1234
    assert "params" not in out["outputs"][0]
    flat = {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "f"}},
    }  # fmt: skip
    out = handler({"id": "seed-5", "input": {"workflow": flat}})
    assert out["outputs"][0]["seed"] is None


# -- progress -------------------------------------------------------------------------------
def test_progress_updates_appear_in_status_while_the_job_runs(
    studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the RunPod job stand-in: /status of the running job shows the worker's latest
    update (stage, node, step/total); the finished job shows the result instead."""
    studio.comfy.node_seconds = 0.15
    monkeypatch.setenv("PROGRESS_INTERVAL_S", "0")
    with JobApiEmulator(handler, workers=1) as emulator:
        monkeypatch.setattr(handler_module, "progress_sink", emulator.progress_update)
        headers = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
        base = f"{emulator.base_url}/{emulator.endpoint_id}"
        job_id = requests.post(
            f"{base}/run", json={"input": _flux("a sword", steps=4)}, headers=headers, timeout=10
        ).json()["id"]
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            view = requests.get(f"{base}/status/{job_id}", headers=headers, timeout=10).json()
            if view["status"] == "COMPLETED":
                break
            if view["status"] == "IN_PROGRESS" and view.get("output"):
                seen.append(view["output"])
            time.sleep(0.05)
        assert view["status"] == "COMPLETED", view
        assert "outputs" in view["output"]
        updates = emulator.job(job_id).progress_updates
    stepping = [u for u in seen if u.get("node_type") == "KSampler" and "value" in u]
    assert stepping, seen
    assert stepping[-1]["max"] == 4
    assert {"node", "title", "percent", "nodes_done", "nodes_total", "elapsed_s"} <= set(
        stepping[-1]
    )
    stages = [u["stage"] for u in updates]
    assert stages[0] == "preparing"
    assert stages.index("queued") < stages.index("running") < stages.index("uploading")


def test_progress_is_throttled_but_every_stage_is_sent() -> None:
    """Steps closer than the interval are dropped; stage changes always go out; a sink that
    raises never fails the job."""
    now = [0.0]
    sent: list[Any] = []

    def sink(job: dict[str, Any], update: Any) -> None:
        sent.append(update)
        if update["stage"] == "uploading":
            raise RuntimeError("RunPod unreachable")

    graph = {"6": {"class_type": "KSampler", "_meta": {"title": "Sampler"}}}
    progress = Progress({"id": "j"}, sink, interval_s=1.0, clock=lambda: now[0])
    progress.stage("preparing", graph=graph)
    progress.comfy_event("execution_start", {})
    for step in range(1, 21):
        now[0] += 0.25
        progress.comfy_event("progress", {"value": step, "max": 20, "node": "6"})
    progress.stage("uploading", outputs=1)
    steps = [u["value"] for u in sent if "value" in u]
    assert steps == [4, 8, 12, 16, 20]
    assert [u["stage"] for u in sent if "value" not in u] == ["preparing", "running", "uploading"]
    assert sent[-2]["title"] == "Sampler"


@pytest.mark.parametrize(
    ("manifest_text", "problem"),
    [
        (
            '[[model]]\nurl = "https://x/y"\npath = "loras/a.safetensors"\ngroups = ["g"]\n',
            "missing name",
        ),
        ("[[model]\n", "cannot read model manifest"),
    ],
)
def test_a_broken_manifest_is_missing_model_naming_its_problem_not_an_unknown_name(
    tmp_path: Path, manifest_text: str, problem: str
) -> None:
    """LoRA names are read with the one manifest parser: a manifest it refuses fails the job
    as missing_model with the parser's words (the image is broken), never as the job's
    'unknown name' nor as a KeyError."""
    manifest = tmp_path / "models.toml"
    manifest.write_text(manifest_text)
    spec = loras.parse_loras([{"name": "castle"}], ["model"])[0]
    with pytest.raises(loras.LoraError) as caught:
        loras.resolve_name(spec, manifest)
    assert caught.value.error_type == "missing_model"
    assert problem in caught.value.message


def test_lora_names_are_read_from_the_manifest_once_not_per_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler resolves names on every job: models.toml is parsed once per path, and a
    manifest it refused is read again (a broken read is never kept)."""
    manifest = tmp_path / "models.toml"
    manifest.write_text("[[model]\n")
    reads: list[Path] = []
    real = loras.load_manifest

    def counting(path: Path) -> list[Any]:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(loras, "load_manifest", counting)
    spec = loras.parse_loras([{"name": "castle"}], ["model"])[0]
    with pytest.raises(loras.LoraError):
        loras.resolve_name(spec, manifest)
    manifest.write_text(
        '[[model]]\nname = "castle"\nurl = "https://x/y"\n'
        'path = "loras/castle.safetensors"\ngroups = ["g"]\n'
    )
    for _ in range(3):
        assert loras.resolve_name(spec, manifest) == "castle.safetensors"
    assert reads == [manifest, manifest]
