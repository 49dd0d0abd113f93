"""The RunPod serverless handler: one job in, ComfyUI runs it, every output lands in R2.

Owns: the job contract of ``ARCHITECTURE.md`` (``{"workflow"}`` or ``{"template",
"params"}`` plus optional ``images`` and, for templates, ``loras``: style models from
``models.toml`` or the bucket, fetched through :mod:`worker.loras`), validating it before any
GPU time is spent, input
images (base64 or an https URL fetched by :mod:`worker.fetch`: public addresses only, every
redirect checked, one deadline; size- and pixel-limited) through ``/upload/image``, waiting
for a ComfyUI that is still starting, mapping every failure to one ``error_type`` with a
sentence a person can act on, a per-job timeout (downloads included) that interrupts
ComfyUI, and concurrent uploads of images, videos (core ``animated`` and VHS ``gifs``) and
audio to ``R2_PREFIX`` + ``jobs/<job id>/`` with presigned or public URLs, never over an
existing object. Returns URLs, never base64, so results stay far below RunPod's payload
limits, and with every output the seed and parameters that made it (per image of a batch:
the seed and its ``batch_index``, which re-run it alone). While a job runs, ComfyUI's
progress events (node, step/total) go to RunPod as progress updates (``progress_sink``,
``runpod.serverless.progress_update`` under the SDK), at most one per
``PROGRESS_INTERVAL_S`` plus one per stage. Settings are read per job from the environment;
no I/O happens at import.

Isolation: each run gets its own folder ``jobs/<job id>-<run>/`` in ComfyUI's input and
output folders (inputs are uploaded there, every literal ``filename_prefix`` is moved under
it; a save node whose prefix is linked gets the folder in an extra input instead), so a
repeated job never meets ComfyUI's cached outputs of an earlier one and fresh files are
always written; the run's inputs and outputs are deleted when it ends (success or not) where
the folders are local. File inputs of loader nodes must be plain relative names, and input
loaders (``LoadImage`` and friends) may only name this job's own images.

``python -m worker.handler`` starts the RunPod worker loop (``runpod.serverless.start``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import logging
import os
import re
import shutil
import struct
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import requests
from botocore.exceptions import BotoCoreError, ClientError

from worker import fetch, loras, manifest, templates
from worker.comfy import (
    ComfyClient,
    ComfyError,
    ComfyUnavailableError,
    ExecutionTimeoutError,
    PromptRejectedError,
    RunResult,
)
from worker.r2 import (
    MULTIPART_THRESHOLD,
    EtagMismatchError,
    R2ConfigError,
    R2Settings,
    content_type,
    create_object,
    create_or_match,
    make_client,
    object_headers,
    object_key,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("worker.handler")

ErrorType = Literal[
    "validation",
    "missing_model",
    "missing_node",
    "comfy_error",
    "out_of_memory",
    "timeout",
    "upload",
]
Kind = Literal["image", "video", "audio"]

MAX_NODES = 5000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,127}$")
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_INPUT_KEYS = frozenset({"workflow", "template", "params", "images", "loras", "comfy_org_api_key"})
#: Inputs of loader nodes that name a file in ComfyUI's input folder.
_FILE_INPUTS = frozenset(
    {"image", "audio", "video", "file", "path", "directory", "video_path", "audio_file"}
)
_ANNOTATION = re.compile(r"\[(input|output|temp)\]\s*$")
#: Inputs of loader nodes that are choices but not model files.
_NOT_MODEL_INPUTS = frozenset({"weight_dtype", "type", "device", "image", "audio"})


ProgressSink = Callable[[dict[str, Any], Any], None]
"""``(job, progress)``: the signature of ``runpod.serverless.progress_update``."""

#: Where progress updates go: :func:`main` points it at ``runpod.serverless.progress_update``;
#: the job stand-in of the tests at its own; None (the default) reports nothing.
progress_sink: ProgressSink | None = None


class JobFailureError(Exception):
    """A job ends with ``{"error", "error_type"}``; ``refresh`` asks RunPod for a new worker."""

    def __init__(self, error_type: ErrorType, message: str, *, refresh: bool = False) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.refresh = refresh

    def as_output(self) -> dict[str, Any]:
        """The handler's return value for this failure."""
        output: dict[str, Any] = {"error": self.message, "error_type": self.error_type}
        if self.refresh:
            output["refresh_worker"] = True
        return output


def _env_number(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not lo <= value <= hi:
        raise JobFailureError(
            "validation",
            f"worker misconfigured: {name}={raw!r} must be a number in {lo:g}..{hi:g}; "
            "fix it in the endpoint's environment",
        )
    return value


@dataclass(frozen=True, kw_only=True)
class HandlerSettings:
    """What the handler reads from the worker environment, per job."""

    comfy_url: str = "http://127.0.0.1:8188"
    """``COMFY_URL``: ComfyUI's base URL."""
    pid_file: Path | None = Path("/tmp/comfyui.pid")  # noqa: S108 - start.sh writes it there
    """``COMFY_PID_FILE``: ComfyUI's PID, to tell "booting" from "dead" (empty: unknown)."""
    ready_timeout_s: float = 600.0
    """``COMFY_READY_TIMEOUT_S``: longest wait for a live ComfyUI to answer."""
    job_timeout_s: float = 600.0
    """``JOB_TIMEOUT_S``: longest run of one prompt, queue included; then interrupt."""
    url_expiry_s: int = 3600
    """``R2_URL_EXPIRY_S``: lifetime of presigned URLs (1 s .. 7 days)."""
    max_image_bytes: int = 20 * 1024 * 1024
    """``MAX_INPUT_IMAGE_BYTES``: largest decoded or downloaded input image."""
    max_images: int = 8
    """``MAX_INPUT_IMAGES``: most input images per job."""
    upload_concurrency: int = 8
    """``UPLOAD_CONCURRENCY``: outputs uploaded at once."""
    interrupt_grace_s: float = 10.0
    """``INTERRUPT_GRACE_S``: how long ComfyUI gets to stop after a timeout's interrupt
    before the worker is given up (``refresh_worker``)."""
    max_image_pixels: int = 50_000_000
    """``MAX_INPUT_PIXELS``: most pixels (width x height, read from the file header before
    anything decodes it) an input image may have."""
    allow_http_urls: bool = False
    """``INPUT_URL_ALLOW_HTTP``: also fetch plain ``http://`` image URLs (off: https only;
    the address rules hold either way)."""
    output_dir: Path | None = None
    """``COMFY_OUTPUT_DIR``: ComfyUI's output folder when it is local; uploaded outputs are
    deleted from it so a long-lived worker's disk does not fill up (unset: keep them)."""
    input_dir: Path | None = None
    """``COMFY_INPUT_DIR`` (default: ``input`` beside ``COMFY_OUTPUT_DIR``): ComfyUI's input
    folder when it is local; each run's inputs are deleted from it when the run ends."""
    comfy_org_api_key: str | None = field(default=None, repr=False)
    """``COMFY_ORG_API_KEY``: Comfy.org key for API nodes (a job's own key wins); never logged."""
    loras_dir: Path | None = None
    """``LORAS_DIR`` (default ``$MODELS_DIR/loras``): ComfyUI's loras folder on the models
    volume; bucket LoRAs are cached in its ``bucket/`` subfolder (unset: key LoRAs fail)."""
    lora_cache_max_bytes: int = 20 * 2**30
    """``LORA_CACHE_MAX_BYTES``: size the LoRA cache is trimmed to (least recently used go)."""
    lora_max_bytes: int = 2 * 2**30
    """``LORA_MAX_BYTES``: largest LoRA file a job may fetch."""
    progress_interval_s: float = 1.0
    """``PROGRESS_INTERVAL_S``: least time between two step updates (0: every event)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HandlerSettings:
        """Read the settings; a bad value is a ``validation`` failure naming the variable."""
        env = os.environ if env is None else env
        out = env.get("COMFY_OUTPUT_DIR", "").strip()
        output_dir = Path(out) if out else None
        pid_raw = env.get("COMFY_PID_FILE")
        pid_file = cls.pid_file if pid_raw is None else (Path(pid_raw) if pid_raw else None)
        return cls(
            comfy_url=(env.get("COMFY_URL", "").strip() or cls.comfy_url).rstrip("/"),
            pid_file=pid_file,
            ready_timeout_s=_env_number(env, "COMFY_READY_TIMEOUT_S", 600, 1, 86400),
            job_timeout_s=_env_number(env, "JOB_TIMEOUT_S", 600, 1, 86400),
            url_expiry_s=int(_env_number(env, "R2_URL_EXPIRY_S", 3600, 1, 604800)),
            max_image_bytes=int(
                _env_number(env, "MAX_INPUT_IMAGE_BYTES", 20 * 1024 * 1024, 1, 2**31)
            ),
            max_images=int(_env_number(env, "MAX_INPUT_IMAGES", 8, 0, 64)),
            upload_concurrency=int(_env_number(env, "UPLOAD_CONCURRENCY", 8, 1, 64)),
            interrupt_grace_s=_env_number(env, "INTERRUPT_GRACE_S", 10, 0.1, 600),
            max_image_pixels=int(
                _env_number(env, "MAX_INPUT_PIXELS", 50_000_000, 1, 1_000_000_000)
            ),
            allow_http_urls=env.get("INPUT_URL_ALLOW_HTTP", "").strip().lower()
            in {"1", "true", "yes"},
            output_dir=output_dir,
            input_dir=Path(raw)
            if (raw := env.get("COMFY_INPUT_DIR", "").strip())
            else (output_dir.parent / "input" if output_dir else None),
            comfy_org_api_key=env.get("COMFY_ORG_API_KEY", "").strip() or None,
            loras_dir=_loras_dir(env),
            lora_cache_max_bytes=int(
                _env_number(env, "LORA_CACHE_MAX_BYTES", 20 * 2**30, 2**20, 2**44)
            ),
            lora_max_bytes=int(_env_number(env, "LORA_MAX_BYTES", 2 * 2**30, 1, 2**40)),
            progress_interval_s=_env_number(env, "PROGRESS_INTERVAL_S", 1.0, 0, 3600),
        )


def _loras_dir(env: Mapping[str, str]) -> Path | None:
    if raw := env.get("LORAS_DIR", "").strip():
        return Path(raw)
    if raw := env.get("MODELS_DIR", "").strip():
        return Path(raw) / "loras"
    return None


@dataclass(frozen=True)
class InputImage:
    """One entry of ``images`` after decoding."""

    name: str
    data: bytes


@dataclass(frozen=True)
class JobRequest:
    """A validated job: the graph to queue and the images to upload first."""

    graph: dict[str, Any]
    images: tuple[InputImage, ...]
    template: str | None
    rendered: templates.Rendered | None = None
    """The template's rendering (None for a raw workflow)."""
    loras: tuple[loras.LoraSpec, ...] = ()


@dataclass(frozen=True)
class OutputFile:
    """One file ComfyUI reported in the history."""

    node_id: str
    filename: str
    subfolder: str
    folder_type: str
    kind: Kind
    index: int = 0
    """Its position in the node's list (for images, the position in the batch)."""


# -- input ---------------------------------------------------------------------------------
def _fail(message: str) -> JobFailureError:
    return JobFailureError("validation", message)


def _check_graph(graph: Any) -> dict[str, Any]:
    if not isinstance(graph, dict) or not graph:
        raise _fail("input.workflow must be a non-empty API-format graph {node_id: {...}}")
    if len(graph) > MAX_NODES:
        raise _fail(f"input.workflow has {len(graph)} nodes; at most {MAX_NODES} are accepted")
    for node_id, node in graph.items():
        if (
            not isinstance(node, dict)
            or not isinstance(node.get("class_type"), str)
            or not isinstance(node.get("inputs", {}), dict)
        ):
            raise _fail(
                f"input.workflow node {node_id!r} needs a string class_type and an inputs "
                "object; export the workflow with 'Save (API)' in ComfyUI"
            )
    return graph


def _image_names(raw: Any, max_images: int) -> list[tuple[str, str]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _fail("input.images must be a list of {name, image} objects")
    if len(raw) > max_images:
        raise _fail(f"input.images has {len(raw)} entries; at most {max_images} are accepted")
    entries: list[tuple[str, str]] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) - {"name", "image"}:
            raise _fail(f"input.images[{index}] must be an object with name and image only")
        name, image = item.get("name"), item.get("image")
        if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
            raise _fail(
                f"input.images[{index}].name {name!r} must be a plain file name "
                "(letters, digits, . _ - and spaces, no folders), e.g. input.png"
            )
        if not isinstance(image, str) or not image:
            raise _fail(f"input.images[{index}].image must be base64 data or an https URL")
        if name in (n for n, _ in entries):
            raise _fail(f"input.images has two entries named {name!r}")
        entries.append((name, image))
    return entries


def _template_params(template: templates.Template, raw: Any, names: list[str]) -> dict[str, Any]:
    """The template's params with its image parameter checked against ``images``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise templates.ParamError("input.params must be an object")
    params = dict(raw)
    if template.image_param is None:
        return params
    chosen = params.get(template.image_param)
    if chosen is None and len(names) == 1:
        params[template.image_param] = names[0]
    elif chosen is None:
        hint = f" and params.{template.image_param} naming one of them" if names else ""
        raise templates.ParamError(
            f"template {template.name} needs an input image: send images: "
            f'[{{"name": "input.png", "image": <base64 or https URL>}}]{hint}'
        )
    elif chosen not in names:
        raise templates.ParamError(
            f"params.{template.image_param} is {chosen!r} but images has "
            f"{', '.join(names) or 'no entries'}"
        )
    return params


def _lora_uses(
    template: templates.Template, specs: list[loras.LoraSpec]
) -> list[templates.LoraUse]:
    """The LoRAs as the graph takes them; bucket files get their names once fetched."""
    if specs and template.no_loras:
        raise templates.ParamError(f"template {template.name} takes no loras: {template.no_loras}")
    return [
        templates.LoraUse(
            loras.resolve_name(spec, manifest.manifest_path())
            if spec.name is not None
            else f"{loras.CACHE_SUBDIR}/pending-{spec.index}.safetensors",
            spec.strength,
            spec.targets,
        )
        for spec in specs
    ]


def parse_input(raw: Any, settings: HandlerSettings) -> tuple[JobRequest, list[tuple[str, str]]]:
    """Validate the job input; return the request (images not fetched yet) and image refs."""
    if not isinstance(raw, dict):
        raise _fail('input must be an object like {"template": "flux_txt2img", "params": {...}}')
    unknown = sorted(set(raw) - _INPUT_KEYS)
    if unknown:
        raise _fail(
            f"input has unknown field(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(_INPUT_KEYS))}"
        )
    has_workflow, has_template = "workflow" in raw, "template" in raw
    if has_workflow == has_template:
        raise _fail("input needs exactly one of workflow (an API-format graph) or template")
    entries = _image_names(raw.get("images"), settings.max_images)
    names = [name for name, _ in entries]
    if has_workflow:
        if "params" in raw:
            raise _fail("input.params only applies to a template; edit the workflow instead")
        if "loras" in raw:
            raise _fail(
                "input.loras only applies to a template; a workflow names its LoRAs in its "
                "own LoraLoaderModelOnly nodes"
            )
        # A copy: the run rewrites file names and prefixes in it, never the caller's object.
        return JobRequest(copy.deepcopy(_check_graph(raw["workflow"])), (), None), entries
    try:
        template = templates.get_template(raw["template"])
        params = _template_params(template, raw.get("params"), names)
        specs = loras.parse_loras(raw.get("loras"), template.lora_target_names)
        uses = _lora_uses(template, specs)
        rendered = templates.render(template, params, uses)
    except templates.ParamError as exc:
        raise _fail(str(exc)) from exc
    except loras.LoraError as exc:
        raise JobFailureError(exc.error_type, exc.message) from exc
    request = JobRequest(rendered.graph, (), template.name, rendered, tuple(specs))
    return request, entries


def image_size(data: bytes) -> tuple[int, int] | None:  # noqa: PLR0911 - one per format
    """(width, height) from a PNG, GIF, WebP or JPEG header; None when it has none."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data.startswith((b"GIF87a", b"GIF89a")) and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8 ":
            width, height = struct.unpack("<HH", data[26:30])
            return int(width) & 0x3FFF, int(height) & 0x3FFF
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(
                data[27:30], "little"
            )
        return None
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 9 <= len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:
            index += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):
            index += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return int(width), int(height)
        index += 2 + int.from_bytes(data[index + 2 : index + 4], "big")
    return None


def _check_image(name: str, data: bytes, max_pixels: int) -> None:
    if not (
        data.startswith(b"\x89PNG\r\n\x1a\n")
        or data.startswith(b"\xff\xd8\xff")
        or data.startswith((b"GIF87a", b"GIF89a"))
        or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
    ):
        raise _fail(f"input image {name!r} is not a PNG, JPEG, WebP or GIF file")
    size = image_size(data)
    if size is None or 0 in size:
        raise _fail(f"input image {name!r} has no readable width and height in its header")
    width, height = size
    if width * height > max_pixels:
        raise _fail(
            f"input image {name!r} is {width}x{height} pixels, over the {max_pixels}-pixel "
            "limit (MAX_INPUT_PIXELS); send a smaller image"
        )


def _decode_base64(name: str, text: str, limit: int) -> bytes:
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    text = "".join(text.split())
    if len(text) * 3 // 4 > limit + 3:
        raise _fail(
            f"input image {name!r} is larger than {limit} bytes (MAX_INPUT_IMAGE_BYTES); "
            "send a smaller image or an https URL"
        )
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail(f"input image {name!r} is neither valid base64 nor an https URL") from exc
    if len(data) > limit:
        raise _fail(f"input image {name!r} is larger than {limit} bytes (MAX_INPUT_IMAGE_BYTES)")
    return data


def _download(name: str, url: str, settings: HandlerSettings, deadline: float) -> bytes:
    shown = fetch.safe_url(url)
    try:
        return fetch.fetch(
            url,
            limit=settings.max_image_bytes,
            deadline=deadline,
            allow_http=settings.allow_http_urls,
        )
    except fetch.TooLargeError as exc:
        raise _fail(
            f"input image {name!r} at {shown} is over the {settings.max_image_bytes}-byte "
            "limit (MAX_INPUT_IMAGE_BYTES)"
        ) from exc
    except fetch.FetchError as exc:
        # The same words for every network outcome: a job must not learn which ports answer.
        log.info("input image %r from %s not fetched: %s", name, shown, exc.reason)
        raise _fail(
            f"input image {name!r}: could not download {shown}; the URL must be https on a "
            "public address and answer 200 with the image within JOB_TIMEOUT_S"
        ) from None


def fetch_images(
    entries: list[tuple[str, str]], settings: HandlerSettings, *, deadline: float | None = None
) -> list[InputImage]:
    """Decode or download every input image, enforcing the size and pixel limits."""
    deadline = deadline if deadline is not None else time.monotonic() + settings.job_timeout_s
    images: list[InputImage] = []
    for name, source in entries:
        lowered = source[:8].lower()
        if lowered.startswith("https://") or (
            settings.allow_http_urls and lowered.startswith("http://")
        ):
            data = _download(name, source, settings, deadline)
        elif lowered.startswith("http://"):
            raise _fail(
                f"input image {name!r}: only https URLs are fetched, got {fetch.safe_url(source)}"
            )
        else:
            data = _decode_base64(name, source, settings.max_image_bytes)
        _check_image(name, data, settings.max_image_pixels)
        images.append(InputImage(name, data))
    return images


def _unsafe_path(value: str) -> bool:
    """True for a name ComfyUI would resolve outside the folder it belongs to."""
    return (
        value.startswith(("/", "~"))
        or "\\" in value
        or "\x00" in value
        or re.match(r"^[A-Za-z]:", value) is not None
        or ".." in value.split("/")
        or _ANNOTATION.search(value) is not None
    )


def check_file_inputs(graph: Mapping[str, Any], image_names: list[str]) -> None:
    """Refuse loader inputs that could reach files outside this job (``validation``).

    ComfyUI resolves them with its annotated-path helpers, which accept absolute paths,
    ``..`` and ``[input]``/``[output]``/``[temp]`` annotations. Input loaders may name the
    job's own images or files shipped in the input folder, never another run's ``jobs/``.
    """
    for node_id, node in graph.items():
        class_type = str(node.get("class_type", ""))
        inputs = node.get("inputs", {})
        prefix = inputs.get("filename_prefix")
        if isinstance(prefix, str) and (_unsafe_path(prefix) or not prefix.strip()):
            raise _fail(
                f"node {node_id} ({class_type}) filename_prefix {prefix!r} must be a relative "
                "name inside the output folder (no leading '/', no '..', no annotation)"
            )
        if "Load" not in class_type:
            continue
        for name, value in inputs.items():
            if not isinstance(value, str):
                continue
            where = f"node {node_id} ({class_type}) input {name}={value!r}"
            if _unsafe_path(value):
                raise _fail(
                    f"{where} is refused: file inputs must be plain relative names without "
                    "'..', a leading '/' or an [input]/[output]/[temp] annotation"
                )
            # Normalised as ComfyUI's os.path.join resolves it: "./jobs/x" is "jobs/x".
            first = os.path.normpath(value).split("/", 1)[0]
            if name in _FILE_INPUTS and value not in image_names and first == "jobs":
                listing = ", ".join(image_names) or "none"
                raise _fail(
                    f"{where} names another job's input; a job sees only its own images "
                    f"({listing}): send the file in input.images and name it here"
                )


# -- ComfyUI answers -----------------------------------------------------------------------
def _is_model_input(class_type: str, input_name: str) -> bool:
    return "Load" in class_type and input_name not in _NOT_MODEL_INPUTS


def _group_hint(filename: object) -> str:
    table = manifest.groups_by_file(manifest.manifest_path())
    groups = table.get(str(filename).rsplit("/", 1)[-1])
    return f" (model group {' or '.join(groups)})" if groups else " (not in models.toml)"


def rejection_failure(error: PromptRejectedError, comfy: ComfyClient) -> JobFailureError:
    """Turn a 400 from ``POST /prompt`` into the failure a person can act on."""
    body = error.body
    raw_top = body.get("error")
    top: dict[str, Any] = raw_top if isinstance(raw_top, dict) else {}
    kind = str(top.get("type", ""))
    message = str(top.get("message", error))
    details = str(top.get("details", ""))
    if kind == "missing_node_type" or (kind == "invalid_prompt" and "does not exist" in message):
        extra = top.get("extra_info") or {}
        class_type = extra.get("class_type")
        if not class_type:
            found = re.search(r"node (\S+) does not exist", message)
            class_type = found.group(1) if found else "?"
        return JobFailureError(
            "missing_node",
            f"this worker's ComfyUI has no node type {class_type} ({details or 'workflow'}): "
            "the custom node is not installed in the image; add and pin it in "
            "image/nodes.toml or use a workflow without it",
        )
    missing: list[str] = []
    other: list[str] = []
    for node_id, entry in (body.get("node_errors") or {}).items():
        class_type = str(entry.get("class_type", "?"))
        for problem in entry.get("errors", []):
            extra = problem.get("extra_info") or {}
            input_name = str(extra.get("input_name", ""))
            if problem.get("type") == "value_not_in_list" and _is_model_input(
                class_type, input_name
            ):
                installed = comfy.choices(class_type, input_name)
                wanted = extra.get("received_value", problem.get("details", "?"))
                listing = ", ".join(installed) if installed else "none"
                missing.append(
                    f"node {node_id} ({class_type}) wants {input_name}={wanted!r}"
                    f"{_group_hint(wanted)}; installed: {listing}"
                )
            else:
                other.append(
                    f"node {node_id} ({class_type}): {problem.get('message')}: "
                    f"{problem.get('details')}"
                )
    if missing:
        return JobFailureError(
            "missing_model",
            "model not installed on this worker: "
            + "; ".join(missing)
            + ". Add the model's group to MODEL_GROUPS (image/models.toml) or place the file "
            "in the volume's models/<folder>/",
        )
    if other:
        return _fail("ComfyUI rejected the workflow: " + "; ".join(other))
    return _fail(f"ComfyUI rejected the workflow: {message}{': ' + details if details else ''}")


def execution_failure(result: RunResult) -> JobFailureError:
    """Turn an ``execution_error`` event into ``out_of_memory`` or ``comfy_error``."""
    data = result.error or {}
    text = str(data.get("exception_message", "")).strip()
    exc_type = str(data.get("exception_type", ""))
    where = f"node {data.get('node_id')} ({data.get('node_type')})"
    if "out of memory" in text.lower() or "OutOfMemory" in exc_type:
        return JobFailureError(
            "out_of_memory",
            f"the GPU ran out of memory in {where}: run on a larger GPU pool "
            "(48 GB or 80 GB class) or lower width, height, frames or batch size",
        )
    first_line = text.splitlines()[0] if text else "no message"
    return JobFailureError(
        "comfy_error", f"ComfyUI failed in {where}: {exc_type or 'error'}: {first_line[:500]}"
    )


def collect_outputs(entry: Mapping[str, Any]) -> list[OutputFile]:
    """Every saved file in a history entry: images, animated videos, VHS gifs, audio."""
    found: list[OutputFile] = []
    for node_id, ui in (entry.get("outputs") or {}).items():
        if not isinstance(ui, dict):
            continue
        animated = ui.get("animated") or []
        for key in ("images", "gifs", "video", "audio"):
            for index, item in enumerate(ui.get(key) or []):
                if not isinstance(item, dict) or "filename" not in item:
                    continue
                if item.get("type", "output") != "output":
                    continue  # previews and temp files are not results
                filename = str(item["filename"])
                kind: Kind
                if key == "audio":
                    kind = "audio"
                elif key in {"gifs", "video"} or (index < len(animated) and animated[index]):
                    kind = "video"
                else:
                    guessed = content_type(filename)
                    kind = "video" if guessed.startswith("video/") else "image"
                found.append(
                    OutputFile(
                        node_id=str(node_id),
                        filename=filename,
                        subfolder=str(item.get("subfolder") or ""),
                        folder_type="output",
                        kind=kind,
                        index=index,
                    )
                )
    return found


# -- R2 ------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _s3(settings: R2Settings) -> S3Client:
    # Building a boto3 client costs tens of milliseconds; reuse one per settings value.
    return make_client(settings)


def _url(settings: R2Settings, client: S3Client, key: str, expiry: int) -> str:
    if settings.public_base_url:
        return f"{settings.public_base_url}/{quote(key)}"
    return client.generate_presigned_url(
        "get_object", Params={"Bucket": settings.bucket, "Key": key}, ExpiresIn=expiry
    )


@dataclass(frozen=True)
class Run:
    """Where one run of a job keeps its files: ``jobs/<job key>-<8 hex>`` in input/output."""

    job_key: str
    """The job id made safe for keys (``jobs/<job key>/`` in R2)."""
    folder: str
    """``jobs/<job key>-<token>``: this run's subfolder of ComfyUI's input and output."""

    @classmethod
    def new(cls, job_id: str) -> Run:
        """A run with a fresh token (two runs of one job id never share a folder)."""
        key = _UNSAFE_KEY_CHARS.sub("_", job_id) or "job"
        return cls(job_key=key, folder=f"jobs/{key}-{uuid.uuid4().hex[:8]}")

    def relative(self, item: OutputFile) -> str:
        """The output's path below the run folder (what its key ends with)."""
        subfolder = item.subfolder
        if subfolder == self.folder or subfolder.startswith(self.folder + "/"):
            subfolder = subfolder[len(self.folder) :].lstrip("/")
        return f"{subfolder}/{item.filename}" if subfolder else item.filename


#: An input no node declares, set on save nodes whose ``filename_prefix`` is linked.
RUN_INPUT = "worker_run"


def isolate_outputs(graph: dict[str, Any], run: Run) -> None:
    """Move every ``filename_prefix`` under the run folder.

    A repeated prompt would otherwise be answered from ComfyUI's execution cache with the
    file names of the earlier run (already uploaded and deleted); a new prefix changes the
    save node's cache key, so it runs again and writes fresh files. A prefix linked from
    another node is computed inside ComfyUI and cannot be moved: such a save node gets the
    run folder in an input it does not declare (:data:`RUN_INPUT`). ComfyUI's cache key
    holds every input of a node (``comfy_execution/caching.py``), while validation and
    execution pass only declared inputs (``execution.py``), so the node runs again, unchanged.
    """
    for node in graph.values():
        inputs = node.get("inputs", {})
        prefix = inputs.get("filename_prefix")
        if isinstance(prefix, str):
            inputs["filename_prefix"] = f"{run.folder}/{prefix.strip().lstrip('/')}"
        elif prefix is not None:
            inputs[RUN_INPUT] = run.folder


def _upload_one(
    item: OutputFile,
    *,
    comfy_url: str,
    r2: R2Settings,
    run: Run,
    expiry: int,
) -> dict[str, Any]:
    client = _s3(r2)
    relative = run.relative(item)
    key = object_key(r2.prefix, f"jobs/{run.job_key}/{relative}")
    headers = object_headers(item.filename)
    comfy = ComfyClient(comfy_url, session=requests.Session())
    with tempfile.SpooledTemporaryFile(max_size=MULTIPART_THRESHOLD) as buffer:
        try:
            size = comfy.download(item.filename, item.subfolder, item.folder_type, buffer)
        except ComfyError as exc:
            raise JobFailureError("comfy_error", f"could not read output: {exc}") from exc
        lock = threading.Lock()

        def read_at(offset: int, length: int) -> bytes:
            with lock:
                buffer.seek(offset)
                return buffer.read(length)

        try:
            key = _put(client, r2.bucket, key, read_at, size=size, headers=headers, run=run)
        except (BotoCoreError, ClientError, EtagMismatchError) as exc:
            code = (
                exc.response.get("Error", {}).get("Code", "error")
                if isinstance(exc, ClientError)
                else type(exc).__name__
            )
            raise JobFailureError(
                "upload",
                f"could not store {relative} in R2 bucket {r2.bucket} ({code}); check "
                "R2_ENDPOINT, R2_BUCKET and the worker token's write permission",
            ) from exc
    return {
        "node_id": item.node_id,
        "filename": item.filename,
        "kind": item.kind,
        "key": key,
        "url": _url(r2, client, key, expiry),
        "bytes": size,
        "content_type": headers["ContentType"],
    }


def _put(
    client: S3Client,
    bucket: str,
    key: str,
    read_at: Any,
    *,
    size: int,
    headers: Mapping[str, str],
    run: Run,
) -> str:
    """Store the output at ``key``, never over other bytes; return the key used.

    A key taken by the same bytes counts as done (a retried request); one taken by other
    bytes (RunPod re-running a job id) moves this run's copy under ``<run token>/``.
    """
    stored = create_or_match(
        client, bucket=bucket, key=key, read_at=read_at, size=size, headers=headers
    )
    if stored is not None:
        return key
    prefix, _, name = key.rpartition(f"jobs/{run.job_key}/")
    key = f"{prefix}jobs/{run.job_key}/{run.folder.rsplit('-', 1)[1]}/{name}"
    create_object(client, bucket=bucket, key=key, read_at=read_at, size=size, headers=headers)
    return key


def remove_local_outputs(items: list[OutputFile], output_dir: Path | None) -> None:
    """Delete uploaded files from ComfyUI's local output folder (never outside it)."""
    if output_dir is None:
        return
    root = output_dir.resolve()
    for item in items:
        path = (root / item.subfolder / item.filename).resolve()
        if root in path.parents:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not delete uploaded output %s: %s", path, exc)


def remove_run_folder(root: Path | None, run: Run) -> None:
    """Delete this run's folder under ``root`` (ComfyUI's input or output), if local."""
    if root is None:
        return
    folder = root / run.folder
    if folder.is_dir() and not folder.is_symlink():
        shutil.rmtree(folder, ignore_errors=True)


def upload_outputs(
    items: list[OutputFile],
    *,
    settings: HandlerSettings,
    r2: R2Settings,
    run: Run,
) -> list[dict[str, Any]]:
    """Upload every output concurrently; return the contract's output records in order."""
    if not items:
        return []
    workers = max(1, min(settings.upload_concurrency, len(items)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upload") as pool:
        futures = [
            pool.submit(
                _upload_one,
                item,
                comfy_url=settings.comfy_url,
                r2=r2,
                run=run,
                expiry=settings.url_expiry_s,
            )
            for item in items
        ]
        return [future.result() for future in futures]


# -- the job -------------------------------------------------------------------------------
def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _rename_inputs(graph: dict[str, Any], renamed: Mapping[str, str]) -> None:
    for node in graph.values():
        inputs = node.get("inputs", {})
        for name, value in inputs.items():
            if isinstance(value, str) and value in renamed:
                inputs[name] = renamed[value]


def check_template_images(request: JobRequest, images: list[InputImage]) -> None:
    """Apply the template's rule on its input image's size (e.g. the upscale output cap)."""
    rendered = request.rendered
    if request.template is None or rendered is None:
        return
    template = templates.get_template(request.template)
    wanted = rendered.values.get(template.image_param or "")
    for image in images:
        size = image_size(image.data) if image.name == wanted else None
        if size is not None:
            try:
                templates.check_image(template, rendered.values, *size)
            except templates.ParamError as exc:
                raise _fail(str(exc)) from exc


@contextlib.contextmanager
def _lora_files(
    request: JobRequest, settings: HandlerSettings, r2: R2Settings, deadline: float
) -> Iterator[dict[int, loras.CachedLora]]:
    """Fetch the job's bucket LoRAs into the cache and name them in the graph.

    Yields index -> cached file; the files stay locked against eviction until the block ends.
    """
    wanted = [spec for spec in request.loras if spec.key is not None]
    if not wanted:
        yield {}
        return
    if settings.loras_dir is None:
        raise JobFailureError(
            "missing_model",
            "this worker has no LoRA folder for bucket LoRAs: set MODELS_DIR (the endpoint "
            "does with a network volume) or LORAS_DIR in its environment",
        )
    cache = loras.LoraCache(
        settings.loras_dir,
        max_bytes=settings.lora_cache_max_bytes,
        max_file_bytes=settings.lora_max_bytes,
    )
    try:
        with cache.session() as session:
            fetched = {
                spec.index: session.fetch(
                    _s3(r2), r2.bucket, str(spec.key), deadline=deadline, index=spec.index
                )
                for spec in wanted
            }
            lora_nodes = request.rendered.lora_nodes if request.rendered else ()
            for node_id, index in lora_nodes:
                if index in fetched:
                    request.graph[node_id]["inputs"]["lora_name"] = fetched[index].lora_name
            yield fetched
    except loras.LoraError as exc:
        raise JobFailureError(exc.error_type, exc.message) from exc


def _run(job: Mapping[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    job_id = str(job.get("id") or uuid.uuid4())
    settings = HandlerSettings.from_env()
    deadline = started + settings.job_timeout_s
    progress = Progress(job, progress_sink, interval_s=settings.progress_interval_s)
    try:
        r2 = R2Settings.from_env()
    except R2ConfigError as exc:
        raise JobFailureError("upload", str(exc)) from exc
    request, entries = parse_input(job.get("input"), settings)
    extra_data = _comfy_org_extra_data(job.get("input"), settings)
    check_file_inputs(request.graph, [name for name, _ in entries])
    progress.stage("preparing", graph=request.graph)
    images = fetch_images(entries, settings, deadline=deadline)
    check_template_images(request, images)
    run = Run.new(job_id)
    try:
        lora_started = time.monotonic()
        with _lora_files(request, settings, r2, deadline) as fetched:
            lora_ms = _ms(time.monotonic() - lora_started)
            output = _run_in(
                run,
                request,
                images,
                settings=settings,
                r2=r2,
                started=started,
                extra_data=extra_data,
                progress=progress,
            )
        output["outputs"] = [
            {**record, **describe_output(request, item, fetched)}
            for record, item in zip(output["outputs"], output.pop("_items"), strict=True)
        ]
        if request.loras:
            output["timings"]["lora_ms"] = lora_ms
        return output
    finally:
        remove_run_folder(settings.input_dir, run)
        remove_run_folder(settings.output_dir, run)


def describe_output(
    request: JobRequest, item: OutputFile, fetched: Mapping[int, loras.CachedLora]
) -> dict[str, Any]:
    """What made this output: its seed, and for a template the params that make it again.

    A batch's images share one seed: image N is re-made alone by that seed with
    ``batch_index`` N. A raw workflow's output gets the literal seed of the sampler it comes
    from (None when there is none or several disagree).
    """
    rendered = request.rendered
    if rendered is None:
        described: dict[str, Any] = {"seed": graph_seed(request.graph, item.node_id)}
        if item.kind == "image":
            described["batch_index"] = item.index
        return described
    params = templates.output_params(rendered, item.index)
    described = {"seed": params.get("seed"), "template": request.template, "params": params}
    if "batch_index" in params:
        described["batch_index"] = params["batch_index"]
    if request.loras:
        described["loras"] = [_lora_echo(spec, fetched.get(spec.index)) for spec in request.loras]
    return described


def _lora_echo(spec: loras.LoraSpec, cached: loras.CachedLora | None) -> dict[str, Any]:
    echo = spec.echo()
    if cached is not None and cached.sha256:
        echo["sha256"] = cached.sha256  # the exact bytes, should the key be re-uploaded
    return echo


#: Inputs that hold a sampler's noise seed (core KSampler, KSamplerAdvanced, RandomNoise,
#: SamplerCustom, and the custom samplers of the pinned nodes).
_SEED_INPUTS = frozenset({"seed", "noise_seed"})


def graph_seed(graph: Mapping[str, Any], node_id: str) -> int | None:
    """The one literal seed among the ancestors of ``node_id`` (None: none, or several)."""
    seen: set[str] = set()
    stack = [node_id]
    seeds: set[int] = set()
    while stack:
        current = stack.pop()
        if current in seen or not isinstance(graph.get(current), dict):
            continue
        seen.add(current)
        inputs = graph[current].get("inputs", {})
        if inputs.get("add_noise") == "disable":  # KSamplerAdvanced continuing a run
            inputs = {k: v for k, v in inputs.items() if k != "noise_seed"}
        for name, value in inputs.items():
            if name in _SEED_INPUTS and isinstance(value, int) and not isinstance(value, bool):
                seeds.add(value)
            elif isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                stack.append(value[0])
    return seeds.pop() if len(seeds) == 1 else None


class Progress:
    """One job's progress updates: each stage at once, ComfyUI's events at most every
    ``interval_s`` (RunPod shows the latest as the job's ``output`` while it runs)."""

    def __init__(
        self,
        job: Mapping[str, Any],
        sink: ProgressSink | None,
        *,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job = dict(job)
        self.sink = sink
        self.interval_s = interval_s
        self.clock = clock
        self.started = clock()
        self.graph: Mapping[str, Any] = {}
        self.state: dict[str, Any] = {"stage": "preparing"}
        self.node: str | None = None
        self.nodes_done = 0
        self.nodes_total = 0
        self.last_sent: float | None = None
        #: Every update sent (for tests and logs).
        self.sent: list[dict[str, Any]] = []

    def stage(self, name: str, *, graph: Mapping[str, Any] | None = None, **data: Any) -> None:
        """Enter a stage (preparing, queued, running, uploading); always sent."""
        if graph is not None:
            self.graph = graph
            self.nodes_total = len(graph)
        self.state = {"stage": name, **data}
        self._send(force=True)

    def comfy_event(self, kind: str, data: Mapping[str, Any]) -> None:
        """Observe a ComfyUI WebSocket event of the job's prompt."""
        if kind == "execution_start":
            self.stage("running", nodes_done=0, nodes_total=self.nodes_total)
        elif kind == "execution_cached":
            cached = data.get("nodes") or []
            self.nodes_total = max(0, len(self.graph) - len(cached))
        elif kind == "executing" and data.get("node") is not None:
            if self.node is not None:
                self.nodes_done += 1
            self.node = str(data["node"])
            self._running(value=None, maximum=None)
        elif kind == "progress":
            self.node = str(data.get("node") or self.node)
            self._running(value=data.get("value"), maximum=data.get("max"))

    def _running(self, *, value: Any, maximum: Any) -> None:
        node = self.graph.get(self.node or "") or {}
        state: dict[str, Any] = {
            "stage": "running",
            "node": self.node,
            "node_type": node.get("class_type"),
            "title": (node.get("_meta") or {}).get("title"),
            "nodes_done": self.nodes_done,
            "nodes_total": self.nodes_total,
        }
        if isinstance(value, int | float) and isinstance(maximum, int | float) and maximum:
            state.update(value=value, max=maximum, percent=round(100 * value / maximum))
        self.state = state
        self._send(force=False)

    def _send(self, *, force: bool) -> None:
        now = self.clock()
        if not force and self.last_sent is not None and now - self.last_sent < self.interval_s:
            return
        self.last_sent = now
        update = {**self.state, "elapsed_s": round(now - self.started, 1)}
        self.sent.append(update)
        if self.sink is None:
            return
        try:
            self.sink(self.job, update)
        except Exception:  # progress is best effort; the job goes on
            log.exception("progress update for job %s failed", self.job.get("id"))


@dataclass(frozen=True)
class _Executed:
    """A prompt ComfyUI ran to the end, with the moments the job's timings come from."""

    result: RunResult
    waited_s: float
    """How long ComfyUI took to become ready."""
    prepared: float
    """``time.monotonic()`` when inputs were uploaded and the graph was ready to queue."""


def _prepare_and_execute(
    comfy: ComfyClient,
    run: Run,
    request: JobRequest,
    images: list[InputImage],
    *,
    settings: HandlerSettings,
    extra_data: dict[str, str] | None,
    deadline: float,
    progress: Progress,
) -> _Executed:
    """Wait for ComfyUI, upload the job's images, isolate its outputs and run the graph."""
    try:
        waited = comfy.wait_until_ready(settings.ready_timeout_s)
        renamed: dict[str, str] = {}
        for image in images:
            renamed[image.name] = comfy.upload_image(image.name, image.data, subfolder=run.folder)
        _rename_inputs(request.graph, renamed)
        isolate_outputs(request.graph, run)
        prepared = time.monotonic()
        result = _execute(
            comfy, request.graph, settings, extra_data, deadline=deadline, progress=progress
        )
    except ComfyUnavailableError as exc:
        raise JobFailureError("comfy_error", str(exc), refresh=True) from exc
    except PromptRejectedError as exc:
        raise rejection_failure(exc, comfy) from exc
    except ComfyError as exc:
        raise JobFailureError("comfy_error", f"ComfyUI failed: {exc}") from exc
    return _Executed(result=result, waited_s=waited, prepared=prepared)


def _saved_outputs(comfy: ComfyClient, result: RunResult) -> list[OutputFile]:
    """The files a successful run saved (from its history entry); a failed run raises."""
    if result.error is not None:
        raise execution_failure(result)
    if result.interrupted:
        raise JobFailureError("comfy_error", "the run was interrupted inside ComfyUI")
    try:
        entry = comfy.history(result.prompt_id)
    except ComfyUnavailableError as exc:
        raise JobFailureError("comfy_error", str(exc), refresh=True) from exc
    except ComfyError as exc:
        raise JobFailureError("comfy_error", f"could not read the results: {exc}") from exc
    items = collect_outputs(entry)
    if not items:
        raise JobFailureError(
            "comfy_error",
            "the workflow finished but saved no files: add a SaveImage, SaveVideo, "
            "VHS_VideoCombine (save_output true) or SaveAudio node",
        )
    return items


def _timings(
    executed: _Executed, *, started: float, upload_started: float, done: float
) -> dict[str, int]:
    """The job result's ``timings`` (milliseconds)."""
    result = executed.result
    ran_from = result.started_at or result.queued_at
    return {
        "queue_ms": _ms(ran_from - result.queued_at),
        "run_ms": _ms((result.finished_at or upload_started) - ran_from),
        "upload_ms": _ms(done - upload_started),
        "comfy_wait_ms": _ms(executed.waited_s),
        "prepare_ms": _ms(executed.prepared - started),
        "total_ms": _ms(done - started),
    }


def _run_in(
    run: Run,
    request: JobRequest,
    images: list[InputImage],
    *,
    settings: HandlerSettings,
    r2: R2Settings,
    started: float,
    extra_data: dict[str, str] | None,
    progress: Progress,
) -> dict[str, Any]:
    comfy = ComfyClient(settings.comfy_url, pid_file=settings.pid_file)
    executed = _prepare_and_execute(
        comfy,
        run,
        request,
        images,
        settings=settings,
        extra_data=extra_data,
        deadline=started + settings.job_timeout_s,
        progress=progress,
    )
    items = _saved_outputs(comfy, executed.result)
    upload_started = time.monotonic()
    progress.stage("uploading", outputs=len(items))
    outputs = upload_outputs(items, settings=settings, r2=r2, run=run)
    done = time.monotonic()
    remove_local_outputs(items, settings.output_dir)
    return {
        "outputs": outputs,
        "_items": items,  # described by _run, then dropped
        "prompt_id": executed.result.prompt_id,
        "timings": _timings(executed, started=started, upload_started=upload_started, done=done),
    }


def _comfy_org_extra_data(raw: Any, settings: HandlerSettings) -> dict[str, str] | None:
    """``extra_data`` carrying the job's ``comfy_org_api_key`` (else ``COMFY_ORG_API_KEY``).

    ComfyUI hands ``api_key_comfy_org`` to API nodes and keeps it out of its history.
    """
    key = raw.get("comfy_org_api_key") if isinstance(raw, dict) else None
    if key is not None and (not isinstance(key, str) or not key.strip()):
        raise _fail("input.comfy_org_api_key must be a non-empty string (a Comfy.org API key)")
    key = key.strip() if key else settings.comfy_org_api_key
    return {"api_key_comfy_org": key} if key else None


def _execute(
    comfy: ComfyClient,
    graph: dict[str, Any],
    settings: HandlerSettings,
    extra_data: dict[str, str] | None = None,
    *,
    deadline: float,
    progress: Progress | None = None,
) -> RunResult:
    client_id = uuid.uuid4().hex
    prompt_id = str(uuid.uuid4())
    ws = comfy.connect(client_id)  # before POST /prompt: events go only to this client
    try:
        comfy.queue_prompt(graph, client_id=client_id, prompt_id=prompt_id, extra_data=extra_data)
        queued_at = time.monotonic()
        if progress is not None:
            progress.stage("queued")
        try:
            return comfy.follow(
                ws,
                prompt_id,
                deadline=deadline,
                queued_at=queued_at,
                on_event=progress.comfy_event if progress is not None else None,
            )
        except ExecutionTimeoutError:
            comfy.interrupt(prompt_id)
            stopped = True
            try:
                comfy.follow(ws, prompt_id, deadline=time.monotonic() + settings.interrupt_grace_s)
            except ComfyError:
                stopped = False
            raise JobFailureError(
                "timeout",
                f"ComfyUI did not finish within JOB_TIMEOUT_S={settings.job_timeout_s:g} s; "
                "the run was interrupted. Raise JOB_TIMEOUT_S or lower steps, frames or size",
                refresh=not stopped,
            ) from None
    finally:
        ws.close()


def handler(job: dict[str, Any]) -> dict[str, Any]:
    """RunPod entry point: run one job; return the outputs or ``{"error", "error_type"}``."""
    job_id = str(job.get("id", "?"))
    try:
        output = _run(job)
    except JobFailureError as failure:
        log.warning("job %s failed (%s): %s", job_id, failure.error_type, failure.message)
        return failure.as_output()
    log.info(
        "job %s done: %d output(s), timings %s", job_id, len(output["outputs"]), output["timings"]
    )
    return output


def main() -> None:
    """Start the RunPod serverless worker loop with :func:`handler`."""
    import runpod  # noqa: PLC0415 - the SDK starts threads and reads argv; only load it here

    global progress_sink  # noqa: PLW0603 - the one place the SDK is wired in
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    progress_sink = runpod.serverless.progress_update
    runpod.serverless.start({"handler": handler})


if __name__ == "__main__":
    main()
